"""Causal check of the selected units: does zeroing them lower their class's probability?

For each class ``c`` the 20 units DeepMiner selected (``influence.select_units``) are zeroed in the
output of the last convolutional block (``layer4``, before the global pool and the final layer), and
the drop of ``p(c | x)`` is measured on class ``c``'s test inputs. The control is the same ablation of
as many units drawn at random, several seeded draws. If the selected units matter, their drop is far
larger than the random drop; both are reported with percentile-bootstrap 95% intervals over inputs.

Zeroing goes through a forward hook on ``layer4`` that is registered and removed inside one call
(:func:`units_zeroed`), so the model is the same afterwards: no module-global state, no edited weights.
The model must be a plain torchvision ResNet (or any module with a ``layer4`` child that it calls),
not the FX ``feature_extractor`` graph, which inlines ``layer4``'s blocks.

Random units are drawn from *all* units, the selected ones included: the null hypothesis is "any 20
units matter as much as these 20", and a uniformly random 20-subset of all units is exactly that
comparison set. Excluding the selected units would make the control a draw from the units known to
matter less, which biases the random drop down and flatters the ratio; with 20 of 512 units a draw
shares about 0.8 unit with the selection on average, so the overlap costs little contrast.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import batches, to_input
from .networks import eval_mode, model_device

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "RANDOM_DRAWS",
    "ClassDrops",
    "bootstrap_ci",
    "causal_check",
    "causal_drops",
    "causal_summary",
    "class_draws",
    "class_probabilities",
    "class_probability_drop",
    "random_unit_draws",
    "units_zeroed",
]

RANDOM_DRAWS = 5
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95
FEATURE_LAYER = "layer4"

SeedLike = int | Sequence[int] | np.random.Generator


# ---------------------------------------------------------------------- ablation


def _unit_index(units: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    values = units.detach().cpu() if isinstance(units, torch.Tensor) else np.asarray(units, dtype=np.int64)
    index = torch.as_tensor(values, dtype=torch.int64).reshape(-1)
    if len(index) and int(index.min()) < 0:
        raise ValueError(f"unit indices must be >= 0, got {int(index.min())}")
    return torch.unique(index)


@contextmanager
def units_zeroed(
    model: nn.Module, units: Sequence[int] | np.ndarray | torch.Tensor, layer: str = FEATURE_LAYER
) -> Iterator[nn.Module]:
    """Within the block, ``model``'s forward passes see channels ``units`` of ``layer``'s output as 0.

    The hook replaces the output with a copy (``index_fill``), never editing it in place, and is
    removed on leaving the block, an exception included. An empty ``units`` changes nothing; an index
    past the layer's channel count raises ValueError at the first forward pass. Yields ``model``.
    """
    index = _unit_index(units)

    def zero_channels(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if len(index) and int(index[-1]) >= output.shape[1]:
            raise ValueError(f"unit {int(index[-1])} does not exist: {layer} has {output.shape[1]} channels")
        return output.index_fill(1, index.to(output.device), 0)

    handle = model.get_submodule(layer).register_forward_hook(zero_channels)
    try:
        yield model
    finally:
        handle.remove()


def _network_input(chunk: torch.Tensor, device: torch.device) -> torch.Tensor:
    if chunk.dtype == torch.uint8:
        if chunk.ndim != 3:
            raise ValueError(f"uint8 inputs must be patches (N, S, S), got shape {tuple(chunk.shape)}")
        return to_input(chunk).to(device)
    if not chunk.is_floating_point() or chunk.ndim != 4:
        raise ValueError(
            f"inputs must be uint8 patches (N, S, S) or float network input (N, 3, S, S), got {chunk.dtype} "
            f"{tuple(chunk.shape)}"
        )
    return chunk.to(device)


def class_probabilities(
    model: nn.Module,
    inputs: torch.Tensor | np.ndarray,
    class_index: int,
    units: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    batch_size: int = 64,
    layer: str = FEATURE_LAYER,
) -> np.ndarray:
    """float64 (N,) ``softmax(logits)[:, class_index]``, with ``units`` of ``layer`` zeroed (None: none).

    inputs: uint8 patches (N, S, S), made network input with ``data.to_input`` batch by batch as the
    mining pass does, or float network input (N, 3, S, S) used as is. One forward pass per batch, in
    eval mode and inference mode on the device of the model's parameters; the model's modes are
    restored afterwards. The softmax is taken in float64, since drops are differences of close values.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    data = torch.as_tensor(inputs)
    device = model_device(model)
    out: list[torch.Tensor] = []
    with eval_mode(model), torch.inference_mode(), units_zeroed(model, [] if units is None else units, layer):
        for rows in batches(len(data), batch_size):
            logits = model(_network_input(data[rows], device))
            if not 0 <= class_index < logits.shape[1]:
                raise ValueError(f"class {class_index} does not exist: the model has {logits.shape[1]} classes")
            out.append(torch.softmax(logits.to(torch.float64), dim=1)[:, class_index].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float64)


def class_probability_drop(
    model: nn.Module,
    inputs: torch.Tensor | np.ndarray,
    class_index: int,
    units: Sequence[int] | np.ndarray | torch.Tensor,
    batch_size: int = 64,
) -> np.ndarray:
    """float64 (N,) per-input drop ``p(class | x) - p(class | x with units zeroed)`` (negative: a rise).

    See :func:`class_probabilities` for ``inputs``; two forward passes per batch (baseline, ablated).
    """
    baseline = class_probabilities(model, inputs, class_index, None, batch_size)
    return baseline - class_probabilities(model, inputs, class_index, units, batch_size)


# ---------------------------------------------------------------------- statistics


def random_unit_draws(num_units_total: int, size: int, draws: int, seed: SeedLike = 0) -> np.ndarray:
    """int64 (draws, size): each row ``size`` distinct units of ``range(num_units_total)``, sorted.

    Uniform over all units (none excluded, see the module docstring); ``seed`` is anything
    ``np.random.default_rng`` takes, or a Generator (then it is advanced).
    """
    if not 0 <= size <= num_units_total:
        raise ValueError(f"cannot draw {size} distinct units of {num_units_total}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(num_units_total, size=size, replace=False)) for _ in range(draws)]
    return np.stack(rows).astype(np.int64).reshape(draws, size)


def bootstrap_ci(
    values: np.ndarray | Sequence[float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: SeedLike = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (1-D), resampling them with replacement.

    The resamples are ``rng.integers(0, n, (resamples, n))`` with ``rng = np.random.default_rng(seed)``
    and the bounds linear-interpolated percentiles (1 - confidence) / 2 and (1 + confidence) / 2 of the
    resampled means: the same numbers as ``scipy.stats.bootstrap(..., method="percentile")`` given the
    same generator. One value gives a zero-width interval; none raises ValueError.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        raise ValueError("no values to bootstrap")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError(f"need resamples >= 1 and 0 < confidence < 1, got {resamples} and {confidence}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


@dataclass
class ClassDrops:
    """One class's per-input drops: the inputs' positions (any ids that order them), the drop with the
    selected units zeroed, and the per-input mean drop over the random draws; float64 (N,) each."""

    rows: np.ndarray
    selected: np.ndarray
    random: np.ndarray

    @staticmethod
    def concatenate(parts: Sequence[ClassDrops]) -> ClassDrops:
        """The drops of several shards' inputs as one, ordered by row (the order one process sees)."""
        rows = np.concatenate([part.rows for part in parts]) if parts else np.zeros(0, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        return ClassDrops(
            rows[order],
            np.concatenate([part.selected for part in parts])[order] if parts else np.zeros(0),
            np.concatenate([part.random for part in parts])[order] if parts else np.zeros(0),
        )


def _check_selected(selected: Mapping[int, Sequence[int]], num_units_total: int) -> dict[int, np.ndarray]:
    units = {c: np.asarray(list(selected[c]), dtype=np.int64) for c in sorted(selected)}
    for c, chosen in units.items():
        if len(chosen) and (int(chosen.min()) < 0 or int(chosen.max()) >= num_units_total):
            raise ValueError(f"class {c}: selected units must lie in [0, {num_units_total})")
    return units


def class_draws(num_units_total: int, size: int, draws: int, seed: int, class_index: int) -> np.ndarray:
    """Class ``class_index``'s random draws: ``np.random.default_rng([seed, class_index, 0])``."""
    return random_unit_draws(num_units_total, size, draws, [seed, class_index, 0])


def causal_drops(
    model: nn.Module,
    inputs_by_class: Mapping[int, tuple[np.ndarray, torch.Tensor | np.ndarray]],
    selected: Mapping[int, Sequence[int]],
    num_units_total: int,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[int, ClassDrops]:
    """Per class of ``selected`` with inputs: each input's drop of the class's probability with its
    selected units zeroed, and with as many random units zeroed (the mean over the class's draws).

    inputs_by_class[c] = (rows, inputs): the inputs' positions and the inputs, as
    :func:`class_probabilities` takes them. Each input's drops depend on that input alone, so the
    inputs can be split between workers and their drops joined (:meth:`ClassDrops.concatenate`)
    before :func:`causal_summary`. Forward passes per batch: one baseline, one selected, one per draw.
    """
    result: dict[int, ClassDrops] = {}
    for c, units in _check_selected(selected, num_units_total).items():
        rows, inputs = inputs_by_class.get(c, (np.zeros(0, dtype=np.int64), np.zeros((0, 1, 1), dtype=np.uint8)))
        if len(inputs) == 0:
            result[c] = ClassDrops(np.asarray(rows, dtype=np.int64), np.zeros(0), np.zeros(0))
            continue
        baseline = class_probabilities(model, inputs, c, None, batch_size)
        selected_drop = baseline - class_probabilities(model, inputs, c, units, batch_size)
        draw_units = class_draws(num_units_total, len(units), draws, seed, c)
        random_drops = np.stack([baseline - class_probabilities(model, inputs, c, d, batch_size) for d in draw_units])
        result[c] = ClassDrops(np.asarray(rows, dtype=np.int64), selected_drop, random_drops.mean(axis=0))
    return result


def causal_summary(
    drops: Mapping[int, ClassDrops],
    selected: Mapping[int, Sequence[int]],
    num_units_total: int,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
) -> dict[int, dict[str, Any]]:
    """The figures of :func:`causal_check` from per-input drops (see there for the keys)."""
    result: dict[int, dict[str, Any]] = {}
    for c, units in _check_selected(selected, num_units_total).items():
        class_drops = drops.get(c)
        n = 0 if class_drops is None else len(class_drops.selected)
        entry: dict[str, Any] = {
            "selected_drop": None,
            "selected_ci": None,
            "random_drop": None,
            "random_ci": None,
            "ratio": None,
            "inputs": n,
            "draws": draws,
            "random_units": class_draws(num_units_total, len(units), draws, seed, c).tolist(),
        }
        result[c] = entry
        if class_drops is None or n == 0:
            continue
        selected_mean = float(class_drops.selected.mean())
        random_mean = float(class_drops.random.mean())
        entry.update(
            selected_drop=selected_mean,
            selected_ci=list(bootstrap_ci(class_drops.selected, bootstrap, CONFIDENCE, [seed, c, 1])),
            random_drop=random_mean,
            random_ci=list(bootstrap_ci(class_drops.random, bootstrap, CONFIDENCE, [seed, c, 1])),
            ratio=selected_mean / random_mean if random_mean > 0 else None,
        )
    return result


def causal_check(
    model: nn.Module,
    inputs_by_class: Mapping[int, torch.Tensor | np.ndarray],
    selected: Mapping[int, Sequence[int]],
    num_units_total: int,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
    batch_size: int = 64,
) -> dict[int, dict[str, Any]]:
    """Per class of ``selected``: the drop of its probability on its inputs when its units are zeroed,
    against the drop when as many random units are.

    inputs_by_class[c]: class c's (test-split) inputs, as :func:`class_probabilities` takes them.
    selected[c]: its selected units (indices into ``range(num_units_total)``).
    Returns c -> {"selected_drop": mean drop, "selected_ci": [lo, hi], "random_drop": mean over inputs of
    the per-input mean over draws, "random_ci": [lo, hi], "ratio": selected_drop / random_drop (None when
    random_drop <= 0), "inputs": n, "draws": draws, "random_units": the draws, lists of units}, floats
    as Python floats. A class with no inputs gets None drops, intervals and ratio.

    Forward passes per batch of a class: one baseline, one with the selected units zeroed, one per draw.
    Class c's draws use ``np.random.default_rng([seed, c, 0])`` and its bootstrap ``[seed, c, 1]``,
    so a class's numbers depend on neither the other classes nor their order; the selected and the
    random intervals resample the same inputs (paired). Intervals are 95% percentile intervals.
    """
    positioned = {c: (np.arange(len(inputs)), inputs) for c, inputs in inputs_by_class.items()}
    drops = causal_drops(model, positioned, selected, num_units_total, draws, seed, batch_size)
    return causal_summary(drops, selected, num_units_total, draws, seed, bootstrap)
