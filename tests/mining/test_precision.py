"""mining.precision (DEEPMINER_PRECISION) and mixed precision in training, the mining pass and the FCN.

No GPU here: bf16 autocast forced on the CPU stands in for a GPU's bf16/fp16 autocast, checked against the
fp32 run on the same seeded data. The same check on a GPU is ``bench/gpu.py`` (fp32 and auto, one run).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from mining.cam import fcn_forward
from mining.devices import to_device
from mining.influence import select_units
from mining.networks import build_network, feature_extractor
from mining.pipeline import run_mining_pass
from mining.precision import FP32, Precision, select_precision
from mining.training import TrainConfig, TrainingRun, TrainResult, evaluate, train, train_one_epoch
from tests.mining.test_training import _tiny_net, _toy_patches

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
BF16 = Precision("bf16", "cpu")
SEEDED = TrainConfig.from_scratch(epochs=2, batch_size=32)


def test_auto_is_fp32_on_the_cpu_and_bf16_else_fp16_on_a_gpu() -> None:
    assert select_precision("auto", CPU) == FP32
    assert select_precision("", CPU).name == "fp32"
    assert select_precision("AUTO", CUDA, bf16_supported=lambda: True) == Precision("bf16", "cuda")
    assert select_precision("auto", CUDA, bf16_supported=lambda: False) == Precision("fp16", "cuda")
    assert select_precision("bf16", CPU) == BF16  # forced: CPU autocast has bf16
    assert select_precision("fp32", CUDA) == Precision("fp32", "cuda")
    with pytest.raises(ValueError, match="must be one of"):
        select_precision("int8", CPU)


def test_only_fp16_scales_the_loss() -> None:
    assert not FP32.grad_scaler().is_enabled()
    assert not BF16.grad_scaler().is_enabled()
    assert Precision("fp16", "cpu").grad_scaler().is_enabled()


def test_fp32_and_auto_on_the_cpu_leave_autocast_off() -> None:
    layer = torch.nn.Linear(4, 2)
    for precision in (FP32, select_precision("auto", CPU)):
        with precision.autocast():
            assert not torch.is_autocast_enabled("cpu")
            assert layer(torch.ones(1, 4)).dtype == torch.float32
    with BF16.autocast():
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16


def test_to_device_leaves_a_batch_already_there_untouched() -> None:
    batch = torch.arange(6, dtype=torch.uint8)
    assert to_device(batch, CPU) is batch  # no copy, no pinning on a CPU worker


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_to_device_copies_to_the_gpu_through_pinned_memory() -> None:
    batch = torch.arange(6, dtype=torch.uint8)
    moved = to_device(batch, CUDA)
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), batch)


def _seeded_train(precision: Precision) -> tuple[TrainResult, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_network("resnet18", 3).model
    train_x, train_y = _toy_patches(192, seed=1)
    val_x, val_y = _toy_patches(60, seed=2)
    return train(model, train_x, train_y, val_x, val_y, SEEDED, precision=precision), model


@pytest.fixture(scope="module")
def fp32_run() -> Iterator[tuple[TrainResult, torch.nn.Module]]:
    # One intra-op thread (as the one_thread fixture, for the module): 20x faster for 16-px patches here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _seeded_train(FP32)
    torch.set_num_threads(threads)


def test_bf16_training_reaches_the_fp32_validation_auc(fp32_run) -> None:
    """The CPU stand-in for the GPU check: the same seeded run in bf16 autocast picks a best epoch within 0.05
    of fp32's malignant validation AUC (the runs drift apart step by step, so single epochs and weights are
    not compared)."""
    fp32, _ = fp32_run
    bf16, _ = _seeded_train(BF16)
    assert fp32.best_val_auc is not None and fp32.best_val_auc >= 0.95
    assert bf16.best_val_auc == pytest.approx(fp32.best_val_auc, abs=0.05)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in bf16.history)


def test_bf16_mining_selects_the_fp32_units_and_tallies_in_float32(fp32_run) -> None:
    """The CPU stand-in for the GPU check: mining the fp32 run's best network in bf16 autocast selects the
    at least 18 of the 20 units per class that fp32 selects (near-equal frequencies may swap), keeps at least 90% of each unit's top patches, and its thresholds
    (float32) and probabilities stay within bf16's rounding of the fp32 ones."""
    result, model = fp32_run
    model.load_state_dict(result.best_state)
    extractor = feature_extractor(model)
    patches = _toy_patches(240, seed=3)[0]
    patches = F.interpolate(patches[:, None].float(), size=64).round().to(torch.uint8)[:, 0]  # 2 x 2 maps
    passes = {p.name: run_mining_pass(extractor, patches, model.fc.weight, precision=p) for p in (FP32, BF16)}
    fp32, bf16 = passes["fp32"], passes["bf16"]
    selected = [select_units(m.influence.frequency, m.influence.influence_sum) for m in (fp32, bf16)]
    assert all(len(units) == 20 for units in selected[0].values())
    overlap = {c: len(set(units) & set(selected[1][c])) for c, units in selected[0].items()}
    assert min(overlap.values()) >= 18
    shared = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(fp32.topk.ids, bf16.topk.ids, strict=True))
    assert shared / fp32.topk.ids.numel() >= 0.9
    assert bf16.topk.scores.dtype == torch.float32 and bf16.topk.thresholds().dtype == torch.float32
    assert not torch.equal(bf16.topk.thresholds(), fp32.topk.thresholds())  # bf16 did run
    scale = fp32.topk.thresholds().abs().max()
    assert (bf16.topk.thresholds() - fp32.topk.thresholds()).abs().max() <= 0.05 * scale
    assert abs(bf16.probs - fp32.probs).max() <= 0.01


def test_fcn_in_bf16_gives_float32_maps_close_to_fp32(fp32_run) -> None:
    _, model = fp32_run
    x = torch.randn(1, 3, 64, 96)
    fp32, bf16 = fcn_forward(model, x), fcn_forward(model, x, BF16)
    assert bf16.features.dtype == bf16.logits.dtype == bf16.probabilities.dtype == torch.float32
    assert (bf16.probabilities - fp32.probabilities).abs().max() <= 0.02


def test_fp16_training_steps_through_the_loss_scaler(one_thread) -> None:
    """fp16 (a GPU without bf16) scales the loss; forced on the CPU the scaler runs the same way."""
    model = _tiny_net()
    images, labels = _toy_patches(64, seed=1)
    run = TrainingRun.start(model, TrainConfig.from_scratch(epochs=1, batch_size=16), 64, precision=Precision("fp16"))
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_one_epoch(run, images, labels, 1)
    assert run.scaler.is_enabled() and run.step == 4
    assert run.scaler.get_scale() > 0 and torch.isfinite(torch.tensor(loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_training_and_evaluation_run_the_network_in_the_chosen_precision(one_thread) -> None:
    model = _tiny_net()
    seen: list[torch.dtype] = []
    model[-1].register_forward_hook(lambda _module, _inputs, output: seen.append(output.dtype))
    images, labels = _toy_patches(32, seed=1)
    run = TrainingRun.start(model, TrainConfig.from_scratch(epochs=1, batch_size=16), 32, precision=BF16)
    train_one_epoch(run, images, labels, 1)
    validation = evaluate(model, images, labels, ["0", "1", "2"], precision=BF16)
    assert seen == [torch.bfloat16] * 3  # two training steps of 16, one evaluation batch (of up to 128)
    assert validation.probs.dtype == "float32"
