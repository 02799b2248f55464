"""mining.training's resume: a seeded run stopped after an epoch and resumed from that epoch's TrainingState
(through its file form) ends with the weights, history and best epoch of the uninterrupted run."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mining.progress import Cancelled
from mining.training import TrainConfig, TrainResult, train
from mining.training_state import TrainingState
from tests.mining.test_training import _tiny_net, _toy_patches

CONFIG = TrainConfig.from_scratch(epochs=4, batch_size=16, progress_every=1)


def _run(**kwargs: object) -> tuple[TrainResult, torch.nn.Module]:
    model = _tiny_net()
    train_x, train_y = _toy_patches(64, seed=1)
    val_x, val_y = _toy_patches(30, seed=2)
    return train(model, train_x, train_y, val_x, val_y, kwargs.pop("config", CONFIG), **kwargs), model  # type: ignore[arg-type]


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def _stopped_after(epoch: int) -> TrainingState:
    """Run CONFIG and stop it (Cancelled) inside the epoch after ``epoch``: that epoch's state, through bytes."""
    states: list[TrainingState] = []
    with pytest.raises(Cancelled):
        _run(on_epoch=lambda state: states.append(state), cancelled=lambda: len(states) >= epoch)
    assert [state.epoch for state in states] == list(range(1, epoch + 1))
    return TrainingState.from_bytes(states[-1].to_bytes())


@pytest.mark.parametrize("stopped_after", [1, 3, 4])
def test_a_run_resumed_after_an_epoch_ends_as_the_uninterrupted_run(stopped_after: int) -> None:
    states: list[TrainingState] = []
    whole, whole_model = _run(on_epoch=states.append)
    # Stopped mid-run; after the last epoch it is a run that failed in what comes after training (testing).
    state = _stopped_after(stopped_after) if stopped_after < 4 else TrainingState.from_bytes(states[-1].to_bytes())
    seen: list[int] = []
    resumed, resumed_model = _run(resume=state, on_epoch=lambda s: seen.append(s.epoch))
    assert seen == list(range(stopped_after + 1, 5))  # it went on at the next epoch, not from the start
    assert _without_seconds(resumed.history) == _without_seconds(whole.history)
    assert (resumed.best_epoch, resumed.best_val_auc) == (whole.best_epoch, whole.best_val_auc)
    for key, value in whole_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
    for key, value in whole.best_state.items():
        assert torch.equal(resumed.best_state[key], value), key
    assert (resumed.val_probs == whole.val_probs).all()


def test_a_state_keeps_the_best_weights_only_when_they_are_not_the_last() -> None:
    states: list[TrainingState] = []
    result, _ = _run(on_epoch=states.append)
    for state in states:
        assert (state.best_state is None) == (state.best_epoch == state.epoch)
    last = states[-1]
    assert all(torch.equal(last.best_weights()[k], v) for k, v in result.best_state.items())


def test_a_state_of_another_configuration_or_data_is_refused() -> None:
    state = _stopped_after(1)
    with pytest.raises(ValueError, match=r"another configuration .*differs in lr"):
        _run(resume=state, config=replace(CONFIG, lr=2e-3))
    model = _tiny_net()
    x, y = _toy_patches(96, seed=1)
    with pytest.raises(ValueError, match="of other data: 4 steps an epoch, now 6"):
        train(model, x, y, *_toy_patches(30, seed=2), CONFIG, resume=state)
    with pytest.raises(ValueError, match=r"not a (readable )?training state"):
        TrainingState.from_bytes(b"not a state")
