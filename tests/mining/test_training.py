"""mining.training: the training loop, its schedule, sampler and augmentation, and prediction."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict

import numpy as np
import pytest
import torch

from mining.networks import build_network
from mining.progress import Cancelled
from mining.training import (
    TrainConfig,
    TrainingRun,
    TrainResult,
    balanced_order,
    dihedral,
    evaluate,
    learning_rate,
    predict,
    random_dihedral,
    random_shift,
    train,
    train_one_epoch,
    validation_aucs,
)

SIDE = 16


def _toy_patches(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 16, 16) noisy patches and int64 (n,) labels: 0 bright square, 1 dark, 2 stripes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(90, 130, (n, SIDE, SIDE), generator=g)
    for i, label in enumerate(labels.tolist()):
        y, x = torch.randint(0, SIDE - 6, (2,), generator=g).tolist()
        if label == 0:
            images[i, y : y + 6, x : x + 6] = 240
        elif label == 1:
            images[i] -= 70
        else:
            images[i, ::2] += 100
    return images.to(torch.uint8), labels


def _toy_run(config: TrainConfig, **kwargs: object) -> tuple[TrainResult, torch.nn.Module]:
    torch.manual_seed(config.seed)
    model = build_network("resnet18", 3).model
    train_x, train_y = _toy_patches(192, seed=1)
    val_x, val_y = _toy_patches(60, seed=2)
    return train(model, train_x, train_y, val_x, val_y, config, **kwargs), model  # type: ignore[arg-type]


TOY = TrainConfig.from_scratch(epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def toy_run() -> tuple[TrainResult, torch.nn.Module, list[tuple[int, int, str]]]:
    calls: list[tuple[int, int, str]] = []
    result, model = _toy_run(TOY, progress=lambda *call: calls.append(call))
    return result, model, calls


def test_training_separates_a_toy_task(toy_run) -> None:
    result, _, _ = toy_run
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert result.best_val_auc is not None and result.best_val_auc >= 0.95
    assert history[result.best_epoch - 1]["val_auc"]["malignant"] == result.best_val_auc
    assert result.best_val_auc == max(h["val_auc"]["malignant"] for h in history)
    assert set(history[0]["val_auc"]) == {"normal", "benign", "malignant"}
    assert result.val_probs.shape == (60, 3)
    json.dumps(history)  # stored as JSON in the database


def test_best_state_reproduces_the_best_epochs_validation_probabilities(toy_run) -> None:
    result, model, _ = toy_run
    model.load_state_dict(result.best_state)
    np.testing.assert_allclose(predict(model, _toy_patches(60, seed=2)[0]), result.val_probs, atol=1e-5)
    assert all(t.device.type == "cpu" for t in result.best_state.values())


def test_progress_counts_steps_and_reports_the_loss(toy_run) -> None:
    _, _, calls = toy_run
    steps = 3 * (192 // 32)
    assert calls[-1][:2] == (steps, steps)
    assert all(total == steps for _, total, _ in calls)
    assert calls[0][0] == 5 and calls[0][2].startswith("epoch 1/3 · batch 5/6 · loss ")


def test_same_seed_gives_the_same_history() -> None:
    config = TrainConfig.from_scratch(epochs=2, batch_size=48)
    first, _ = _toy_run(config)
    second, _ = _toy_run(config)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in first.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in second.history]
    assert all(torch.equal(first.best_state[k], second.best_state[k]) for k in first.best_state)


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )


def test_train_is_train_one_epoch_then_evaluate_each_epoch() -> None:
    config = TrainConfig.from_scratch(epochs=2, batch_size=32)
    train_x, train_y = _toy_patches(96, seed=1)
    val_x, val_y = _toy_patches(30, seed=2)
    result = train(_tiny_net(), train_x, train_y, val_x, val_y, config)

    model = _tiny_net()
    torch.manual_seed(config.seed)
    run = TrainingRun.start(model, config, len(train_x))
    for epoch, record in enumerate(result.history, start=1):
        assert train_one_epoch(run, train_x, train_y, epoch) == record["train_loss"]
        validation = evaluate(model, val_x, val_y, ["normal", "benign", "malignant"], batch_size=config.eval_batch_size)
        assert (validation.loss, validation.aucs, validation.macro_auc) == (
            record["val_loss"],
            record["val_auc"],
            record["val_macro_auc"],
        )
    assert validation.probs.shape == (30, 3)
    assert run.step == 2 * (96 // 32)


def test_cancelling_after_the_first_progress_call_raises() -> None:
    asked: list[str] = []
    with pytest.raises(Cancelled):
        _toy_run(
            TrainConfig.from_scratch(epochs=2, batch_size=32, progress_every=1),
            progress=lambda done, total, message: asked.append(message),
            cancelled=lambda: bool(asked),
        )
    assert len(asked) == 1


def test_warmup_then_cosine_schedule_by_hand() -> None:
    config = TrainConfig.from_scratch(lr=1e-3, warmup_fraction=0.05)
    total = 200  # warm-up: round(0.05 * 200) = 10 steps
    assert learning_rate(0, total, config) == pytest.approx(1e-4)  # 1e-3 * 1/10
    assert learning_rate(9, total, config) == pytest.approx(1e-3)  # last warm-up step reaches lr
    assert learning_rate(10, total, config) == pytest.approx(1e-3)  # cosine starts at its top
    assert learning_rate(105, total, config) == pytest.approx(5e-4)  # halfway through 190 cosine steps
    # Last step: 189/190 of the way down, 1e-3 * (1 + cos(pi * 189/190)) / 2 = 6.83e-8.
    assert learning_rate(199, total, config) == pytest.approx(1e-3 * (1 - math.cos(math.pi / 190)) / 2)
    assert learning_rate(199, total, config) == pytest.approx(6.834e-8, rel=1e-3)


def test_fine_tune_preset_is_the_papers_constant_sgd() -> None:
    config = TrainConfig.fine_tune()
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay, config.batch_size) == (
        "sgd",
        1e-4,
        0.9,
        1e-4,
        32,
    )
    assert {learning_rate(step, 100, config) for step in (0, 50, 99)} == {1e-4}
    assert json.loads(json.dumps(asdict(config)))["optimizer"] == "sgd"


def test_balanced_sampler_draws_classes_equally_from_90_5_5() -> None:
    labels = torch.tensor([0] * 900 + [1] * 50 + [2] * 50)
    drawn = balanced_order(labels, 30_000, torch.Generator().manual_seed(0))
    shares = Counter(labels[drawn].tolist())
    assert all(abs(shares[c] / 30_000 - 1 / 3) < 0.02 for c in range(3))
    assert len(set(drawn[labels[drawn] == 1].tolist())) == 50  # every minority sample gets used


def _symmetries(image: torch.Tensor) -> list[torch.Tensor]:
    rotations = [torch.rot90(image, k, (0, 1)) for k in range(4)]
    return rotations + [r.flip(1) for r in rotations]


def test_dihedral_codes_give_the_eight_symmetries_and_keep_the_pixels() -> None:
    image = torch.arange(25, dtype=torch.uint8).view(5, 5)  # no symmetry of its own
    out = dihedral(image.expand(8, 5, 5), torch.arange(8))
    assert {tuple(o.flatten().tolist()) for o in out} == {tuple(s.flatten().tolist()) for s in _symmetries(image)}
    assert all(torch.equal(o.flatten().sort().values, image.flatten()) for o in out)
    assert torch.equal(out[0], image)
    assert torch.equal(out[1], image.flip(1)) and torch.equal(out[4], image.T)


def test_random_dihedral_uses_all_eight_symmetries() -> None:
    image = torch.arange(25, dtype=torch.uint8).view(5, 5)
    out = random_dihedral(image.expand(200, 5, 5), torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


def test_flip_symmetries_only_mirror_left_right() -> None:
    image = torch.arange(25, dtype=torch.uint8).view(5, 5)
    out = random_dihedral(image.expand(200, 5, 5), torch.Generator().manual_seed(0), "flip")
    seen = {tuple(o.flatten().tolist()) for o in out}
    assert seen == {tuple(image.flatten().tolist()), tuple(image.flip(1).flatten().tolist())}
    with pytest.raises(ValueError, match="symmetries must be one of"):
        random_dihedral(image[None], torch.Generator(), "rotate")


def test_random_shift_rolls_the_batch_by_at_most_its_share() -> None:
    batch = torch.arange(2 * 16 * 16, dtype=torch.int64).view(2, 16, 16)
    seen = set()
    for seed in range(40):
        out = random_shift(batch, torch.Generator().manual_seed(seed), 0.125)  # k = 2
        dy, dx = torch.randint(-2, 3, (2,), generator=torch.Generator().manual_seed(seed)).tolist()
        assert torch.equal(out, torch.roll(batch, (dy, dx), (-2, -1)))  # one shift for the whole batch
        seen.add((dy, dx))
    assert len(seen) > 10 and all(abs(dy) <= 2 and abs(dx) <= 2 for dy, dx in seen)
    generator = torch.Generator().manual_seed(0)
    assert random_shift(batch, generator, 0.0) is batch  # no shift: no draw either
    assert torch.equal(
        torch.randint(0, 9, (3,), generator=generator),
        torch.randint(0, 9, (3,), generator=torch.Generator().manual_seed(0)),
    )


def test_predict_gives_probabilities_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = build_network("resnet18", 3).model
    probs = predict(model, _toy_patches(10, seed=3)[0], batch_size=4)
    assert probs.shape == (10, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert not model.training


def test_auc_of_a_class_missing_from_validation_is_none() -> None:
    labels = np.array([0, 0, 2, 2])
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.3, 0.1, 0.6]])
    assert validation_aucs(labels, probs, ["normal", "benign", "malignant"]) == {
        "normal": 1.0,
        "benign": None,
        "malignant": 1.0,
    }


def test_bad_inputs_are_refused() -> None:
    x, y = _toy_patches(6, seed=0)
    model = build_network("resnet18", 3).model
    with pytest.raises(ValueError, match="uint8"):
        train(model, x.float(), y, x, y)
    with pytest.raises(ValueError, match=r"labels must be int64 in \[0, 3\)"):
        train(model, x, y + 1, x, y)
