"""DeepMiner unit influence: which final-layer units drive each class's decisions.

Unit ``u``'s influence toward class ``c`` on an image is ``max A_u * W_fc[c, u]``, the unit's maximum
activation on the image times its final-layer weight for the class (Wu et al., "DeepMiner", section 2.2).
As the paper's reference code does (``generate_unit_rankings.py`` of ``jimmyyhwu/ddsm-visual-primitives``),
for *every* class and over *all* images of the mining split -- not only those decided as the class --
each image's ``k = 8`` most influential units toward the class are counted; a unit's count is its
*frequency* for the class; the 20 most frequent units of each class are the ones experts annotate (a unit
frequent for two classes is in both lists), and *coverage* is the share of all the class's per-image
top-8 slots those 20 fill (paper: 59.3% normal, 69.8% benign, 75.8% malignant).

The image's maximum activation is the maximum over its patches (each patch seen at the scale the network
was trained at, as the mining pass sees it): the reference code runs the fully convolutional network over
the whole image, whose maximum over all positions is, up to the border cells, the maximum over the
overlapping patches, and the patch maxima are what the mining pass already computes.

``InfluenceTally`` folds images into the counts as their patches stream past (patches come grouped by
image), so the pass keeps one open image's maxima, never per-image influences; shards of whole images
merge exactly (the counts and sums add).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["InfluenceTally", "coverage", "image_maxima", "ranking_keys", "select_units", "top_units", "unit_influence"]

TOP_UNITS_PER_INPUT = 8
UNITS_PER_CLASS = 20

ArrayLike = torch.Tensor | np.ndarray


def _tensor(values: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.as_tensor(values, dtype=dtype)


def unit_influence(max_activation: ArrayLike, fc_weight: ArrayLike) -> torch.Tensor:
    """Influence of every unit toward every class on each image.

    max_activation: (B, U) each unit's maximum activation on the image; fc_weight: (C, U) final-layer
    weights. Returns float (B, C, U): ``max_activation[b, u] * fc_weight[c, u]``.
    """
    acts = _tensor(max_activation)
    weight = _tensor(fc_weight, dtype=acts.dtype)
    return acts.unsqueeze(1) * weight.unsqueeze(0)


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
    """The k most influential units along the last axis, most influential first: int64 (..., min(k, U)).

    influence: (..., U). Equal influences rank the lower unit index first, so the counts do not
    depend on how torch.topk happens to order ties.
    """
    values = _tensor(influence)
    keys = ranking_keys(values, torch.arange(values.shape[-1]))
    return torch.topk(keys, min(k, values.shape[-1]), dim=-1).indices


def image_maxima(max_activation: torch.Tensor, image_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image maxima of per-patch maxima: the images in order of first appearance and float (I, U).

    max_activation: (B, U) per patch; image_index: int64 (B,) grouped (equal values adjacent).
    """
    starts = torch.ones(len(image_index), dtype=torch.bool)
    starts[1:] = image_index[1:] != image_index[:-1]
    segment = torch.cumsum(starts, 0) - 1
    count = int(segment[-1]) + 1 if len(segment) else 0
    out = torch.full((count, max_activation.shape[1]), -torch.inf, dtype=max_activation.dtype)
    out.scatter_reduce_(0, segment.unsqueeze(1).expand_as(max_activation), max_activation, reduce="amax")
    return image_index[starts], out


class InfluenceTally:
    """Streaming per-class counts of how often each unit is among an image's top-k units toward the class.

    frequency: int64 (C, U), images whose top k toward c contains u; influence_sum: float64 (C, U),
    summed influence of u toward c over all images (the tie-breaker of ``select_units``); images: how
    many images were counted. Every image counts for every class, so each row of frequency sums to
    ``images * min(k, U)``.

    ``update`` takes patches grouped by image (an image's patches adjacent, as the mining pass reads
    them); an image is counted once its patches have all been seen, i.e. when the next image starts or
    at ``finish``.
    """

    def __init__(self, fc_weight: ArrayLike, k: int = TOP_UNITS_PER_INPUT) -> None:
        self.k = k
        self._weight = _tensor(fc_weight, dtype=torch.float32).detach().clone()
        num_classes, num_units = self._weight.shape
        self._frequency = torch.zeros((num_classes, num_units), dtype=torch.int64)
        self._influence_sum = torch.zeros((num_classes, num_units), dtype=torch.float64)
        self._images = 0
        self._open: tuple[int, torch.Tensor] | None = None  # (image index, (U,) running max)
        self._closed: set[int] = set()

    @property
    def frequency(self) -> np.ndarray:
        return self._frequency.numpy()

    @property
    def influence_sum(self) -> np.ndarray:
        return self._influence_sum.numpy()

    @property
    def images(self) -> int:
        return self._images

    def update(self, max_activation: ArrayLike, image_index: ArrayLike) -> None:
        """Add a batch of patches: max_activation (B, U) each patch's max per unit; image_index int (B,)."""
        acts = _tensor(max_activation).to(torch.float32)
        index = _tensor(image_index, dtype=torch.int64)
        if len(index) != len(acts):
            raise ValueError(f"{len(index)} image indices for {len(acts)} patches")
        if not len(index):
            return
        images, maxima = image_maxima(acts, index)
        seen = images.tolist()
        if len(set(seen)) != len(seen) or self._closed.intersection(seen):
            raise ValueError("patches must come grouped by image (an image's patches adjacent)")
        if self._open is not None and int(images[0]) == self._open[0]:
            maxima[0] = torch.maximum(maxima[0], self._open[1])
        elif self._open is not None:
            self._count(self._open[0], self._open[1].unsqueeze(0))
        done = images[:-1].tolist()
        if done:
            self._count(done, maxima[:-1])
        self._open = (int(images[-1]), maxima[-1].clone())

    def finish(self) -> InfluenceTally:
        """Count the last open image; returns self."""
        if self._open is not None:
            self._count(self._open[0], self._open[1].unsqueeze(0))
            self._open = None
        return self

    def _count(self, images: int | list[int], maxima: torch.Tensor) -> None:
        ids = [images] if isinstance(images, int) else images
        self._closed.update(ids)
        influence = unit_influence(maxima, self._weight)  # (I, C, U)
        top = top_units(influence, self.k)  # (I, C, k)
        num_units = self._frequency.shape[1]
        classes = torch.arange(self._frequency.shape[0]).view(1, -1, 1)
        # One flat (class, unit) index per top-k slot; bincount adds duplicates, unlike a scatter.
        slots = (classes * num_units + top).reshape(-1)
        self._frequency += torch.bincount(slots, minlength=self._frequency.numel()).view_as(self._frequency)
        self._influence_sum += influence.to(torch.float64).sum(dim=0)
        self._images += len(ids)

    def merge(self, other: InfluenceTally) -> None:
        """Add another shard's finished counts (exact when the shards hold different images)."""
        if other.k != self.k or other._frequency.shape != self._frequency.shape:
            raise ValueError("can only merge tallies with the same k, classes and units")
        if self._open is not None or other._open is not None:
            raise ValueError("finish() both tallies before merging them")
        self._frequency += other._frequency
        self._influence_sum += other._influence_sum
        self._images += other._images

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The finished counts (weights included), which ``torch.load(weights_only=True)`` reads back."""
        if self._open is not None:
            raise ValueError("finish() the tally before saving it")
        return {
            "k": self.k,
            "fc_weight": self._weight.clone(),
            "frequency": self._frequency.clone(),
            "influence_sum": self._influence_sum.clone(),
            "images": self._images,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor | int]) -> InfluenceTally:
        tally = cls(torch.as_tensor(state["fc_weight"]), int(state["k"]))
        tally._frequency = torch.as_tensor(state["frequency"]).to(torch.int64).clone()
        tally._influence_sum = torch.as_tensor(state["influence_sum"]).to(torch.float64).clone()
        tally._images = int(state["images"])
        return tally


def select_units(
    frequency: ArrayLike, influence_sum: ArrayLike, per_class: int = UNITS_PER_CLASS
) -> dict[int, list[int]]:
    """The most frequently influential units of each class, most frequent first (lists may overlap).

    frequency: int (C, U); influence_sum: (C, U). Ties in frequency go to the larger summed
    influence, then to the lower unit index. Units never in a top k of the class (frequency 0)
    are not selected, so a class may get fewer than ``per_class`` units (none without images).
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


def coverage(
    frequency: ArrayLike, selected: Mapping[int, Sequence[int]], k: int = TOP_UNITS_PER_INPUT
) -> dict[int, float]:
    """Per class, the share of all images' top-k slots toward the class that its selected units fill.

    frequency: int (C, U) from an InfluenceTally of the same k. Each image fills min(k, U) slots of
    every row, so the row sum is the slot count (images x min(k, U)); no images gives 0.0.
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
