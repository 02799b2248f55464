"""DeepMiner unit influence: which final-layer units drive each class's decisions.

For an input (a patch) decided as class ``c = argmax logits``, unit ``u``'s influence is
``max_hw A_u(h, w) * W_fc[c, u]`` (Wu et al., "DeepMiner", section 2.2). Per input the
``k = 8`` most influential units are kept; per class, counting how often each unit is in the
top 8 of an input decided as that class gives its *frequency*; the 20 most frequent units of
a class are the ones experts annotate, and *coverage* is the share of that class's top-8 slots
they fill (paper: 59.3% normal, 69.8% benign, 75.8% malignant).

``InfluenceTally`` accumulates frequencies batch by batch, so the mining pass never keeps
per-input influences; shards merge exactly (the counts and sums add).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "InfluenceTally",
    "coverage",
    "ranking_keys",
    "select_units",
    "select_units_disjoint",
    "top_units",
    "unit_influence",
]

TOP_UNITS_PER_INPUT = 8
UNITS_PER_CLASS = 20

ArrayLike = torch.Tensor | np.ndarray


def _tensor(values: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.as_tensor(values, dtype=dtype)


def unit_influence(max_activation: ArrayLike, fc_weight: ArrayLike, decided: ArrayLike) -> torch.Tensor:
    """Influence of every unit on each input's decided class.

    max_activation: (B, U) max over space of each unit's response; fc_weight: (C, U) final-layer
    weights; decided: int (B,) class index per input. Returns float (B, U):
    ``max_activation[b, u] * fc_weight[decided[b], u]``.
    """
    acts = _tensor(max_activation)
    weight = _tensor(fc_weight, dtype=acts.dtype)
    return acts * weight.index_select(0, _tensor(decided, dtype=torch.int64))


def ranking_keys(values: torch.Tensor, tiebreak: torch.Tensor) -> torch.Tensor:
    """int64 keys ordering by value descending, then by tiebreak ascending, in one topk.

    values: float (...), NaN-free; tiebreak: int64 broadcastable to it, in [-1, 2**31) (an index).
    torch.topk does not promise how it orders ties and a stable sort costs several times more on
    CPU, so the value's float32 bits (made order-preserving as signed ints) go in the high 32
    bits and the reversed tiebreak in the low 32: the largest key is the largest value with the
    smallest tiebreak. Values compare exactly at float32 precision (the network's).
    """
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    # Negative floats order backwards as ints; flipping all but the sign bit fixes that.
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    return ordered * 2**32 + (2**31 - 1 - tiebreak)


def top_units(influence: ArrayLike, k: int = TOP_UNITS_PER_INPUT) -> torch.Tensor:
    """The k most influential units per input, most influential first: int64 (B, min(k, U)).

    influence: (B, U). Equal influences rank the lower unit index first, so the counts do not
    depend on how torch.topk happens to order ties.
    """
    values = _tensor(influence)
    keys = ranking_keys(values, torch.arange(values.shape[1]))
    return torch.topk(keys, min(k, values.shape[1]), dim=1).indices


class InfluenceTally:
    """Streaming per-class counts of how often each unit is among an input's top-k influential units.

    frequency: int64 (C, U), inputs decided as c whose top k contains u;
    influence_sum: float64 (C, U), summed influence of u over all inputs decided as c (the
    tie-breaker of ``select_units``); inputs_per_class: int64 (C,).
    """

    def __init__(self, num_classes: int, num_units: int, k: int = TOP_UNITS_PER_INPUT) -> None:
        self.k = k
        self._frequency = torch.zeros((num_classes, num_units), dtype=torch.int64)
        self._influence_sum = torch.zeros((num_classes, num_units), dtype=torch.float64)
        self._inputs = torch.zeros(num_classes, dtype=torch.int64)

    @property
    def frequency(self) -> np.ndarray:
        return self._frequency.numpy()

    @property
    def influence_sum(self) -> np.ndarray:
        return self._influence_sum.numpy()

    @property
    def inputs_per_class(self) -> np.ndarray:
        return self._inputs.numpy()

    def update(self, max_activation: ArrayLike, logits: ArrayLike, fc_weight: ArrayLike) -> None:
        """Add a batch: max_activation (B, U), logits (B, C), fc_weight (C, U)."""
        decided = _tensor(logits).argmax(dim=1)
        influence = unit_influence(max_activation, fc_weight, decided)
        top = top_units(influence, self.k)
        num_units = self._frequency.shape[1]
        # One flat (class, unit) index per top-k slot; bincount adds duplicates, unlike a scatter.
        slots = (decided.unsqueeze(1) * num_units + top).reshape(-1)
        self._frequency += torch.bincount(slots, minlength=self._frequency.numel()).view_as(self._frequency)
        self._influence_sum.index_add_(0, decided, influence.to(torch.float64))
        self._inputs += torch.bincount(decided, minlength=len(self._inputs))

    def merge(self, other: InfluenceTally) -> None:
        """Add another shard's counts (exact: counts and sums add)."""
        if other.k != self.k or other._frequency.shape != self._frequency.shape:
            raise ValueError("can only merge tallies with the same k, classes and units")
        self._frequency += other._frequency
        self._influence_sum += other._influence_sum
        self._inputs += other._inputs

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {
            "k": self.k,
            "frequency": self._frequency.clone(),
            "influence_sum": self._influence_sum.clone(),
            "inputs_per_class": self._inputs.clone(),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor | int]) -> InfluenceTally:
        frequency = torch.as_tensor(state["frequency"])
        tally = cls(frequency.shape[0], frequency.shape[1], int(state["k"]))
        tally._frequency = frequency.to(torch.int64).clone()
        tally._influence_sum = torch.as_tensor(state["influence_sum"]).to(torch.float64).clone()
        tally._inputs = torch.as_tensor(state["inputs_per_class"]).to(torch.int64).clone()
        return tally


def select_units(
    frequency: ArrayLike, influence_sum: ArrayLike, per_class: int = UNITS_PER_CLASS
) -> dict[int, list[int]]:
    """The most frequently influential units of each class, most frequent first.

    frequency: int (C, U); influence_sum: (C, U). Ties in frequency go to the larger summed
    influence, then to the lower unit index. Units never in a top k of the class (frequency 0)
    are not selected, so a class may get fewer than ``per_class`` units (none without inputs).
    """
    freq = np.asarray(frequency)
    sums = np.asarray(influence_sum, dtype=np.float64)
    units = np.arange(freq.shape[1])
    selected: dict[int, list[int]] = {}
    for cls in range(freq.shape[0]):
        # lexsort sorts by the last key first: frequency desc, then influence desc, then unit asc.
        order = np.lexsort((units, -sums[cls], -freq[cls]))
        order = order[freq[cls, order] > 0][:per_class]
        selected[cls] = [int(u) for u in order]
    return selected


def select_units_disjoint(
    frequency: ArrayLike, influence_sum: ArrayLike, per_class: int = UNITS_PER_CLASS
) -> dict[int, list[int]]:
    """Like `select_units`, but a unit goes to one class only (the paper's 3 x 20 = 60 units).

    A unit frequent in several classes' top 8 goes to the class where it fills the largest share of
    that class's top-k slots (frequency / slots); the other classes take their next candidates.
    Greedy over (share, summed influence) descending; each class's list ends ordered by its frequency.
    """
    freq = np.asarray(frequency, dtype=np.float64)
    sums = np.asarray(influence_sum, dtype=np.float64)
    slots = freq.sum(axis=1, keepdims=True)
    share = np.divide(freq, slots, out=np.zeros_like(freq), where=slots > 0)
    classes, units = np.nonzero(freq > 0)
    order = np.lexsort((units, classes, -sums[classes, units], -share[classes, units]))
    chosen: dict[int, list[int]] = {c: [] for c in range(freq.shape[0])}
    taken: set[int] = set()
    for index in order:
        c, u = int(classes[index]), int(units[index])
        if u not in taken and len(chosen[c]) < per_class:
            chosen[c].append(u)
            taken.add(u)
    return {c: sorted(us, key=functools.partial(_rank_key, freq[c], sums[c])) for c, us in chosen.items()}


def _rank_key(freq: np.ndarray, sums: np.ndarray, unit: int) -> tuple[float, float, int]:
    """Most frequent first, then the larger summed influence, then the lower unit index."""
    return (-freq[unit], -sums[unit], unit)


def coverage(
    frequency: ArrayLike, selected: Mapping[int, Sequence[int]], k: int = TOP_UNITS_PER_INPUT
) -> dict[int, float]:
    """Per class, the share of its inputs' top-k slots filled by that class's selected units.

    frequency: int (C, U) from an InfluenceTally of the same k. Each input decided as c fills
    min(k, U) slots of row c, so the row sum is the class's slot count; a class without inputs
    has coverage 0.0.
    """
    freq = np.asarray(frequency, dtype=np.int64)
    per_input = min(k, freq.shape[1])
    result: dict[int, float] = {}
    for cls in range(freq.shape[0]):
        slots = int(freq[cls].sum())
        if slots % per_input:
            raise ValueError(f"frequency row {cls} does not come from top-{k} counts")
        units = np.asarray(selected.get(cls, []), dtype=np.int64)
        result[cls] = float(freq[cls, units].sum() / slots) if slots else 0.0
    return result
