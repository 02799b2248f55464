"""Network Dissection IoU of units with concepts, over every input of a split.

A unit's mask on an input is its response map upsampled (bilinear) to the concept masks' size and
binarised above the unit's top-quantile threshold. As in Network Dissection (Bau et al.; NetDissect-Lite
``feature_operation.py``, ``davidbau/dissect`` ``tally.py``), a unit's IoU with a concept is accumulated
over *all* inputs of the split, Σ |M and L| / Σ |M or L|, rather than averaged per input or taken over the
unit's top inputs only: a unit that outlines a concept on its top patches but misses it everywhere else
scores low. A unit is interpretable for a concept at IoU > 0.04.

``ConceptIoUTally`` is the second pass's accumulator (the thresholds come from the first): its state is
O(units x concepts) counts whatever the split's size, and shards add. ``concept_iou`` is the same sum over
masks held in memory, the definition written out.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["INTERPRETABLE_IOU", "ConceptIoUTally", "best_concept", "concept_iou"]

INTERPRETABLE_IOU = 0.04  # Network Dissection: a unit detects a concept when its IoU is > 0.04
K = TypeVar("K", bound=Hashable)  # a concept key: a code, or anything else that names one
# Upsampled masks are made this many (input, unit) pairs at a time: 4096 pairs of 64 x 64 floats is 64 MB.
_PAIRS_PER_CHUNK = 4096


def concept_iou(unit_masks: np.ndarray, concept_masks: Mapping[K, np.ndarray]) -> dict[K, float]:
    """IoU of a unit with each concept, summed over inputs.

    unit_masks: bool (n, S, S); concept_masks: code -> bool (n, S, S), the same n inputs.
    Returns code -> sum_i |M_i and L_i| / sum_i |M_i or L_i|, and 0.0 for a concept whose union is empty.
    """
    unit = np.asarray(unit_masks, dtype=bool)
    result: dict[K, float] = {}
    for code, masks in concept_masks.items():
        concept = np.asarray(masks, dtype=bool)
        if concept.shape != unit.shape:
            raise ValueError(f"concept {code!r} masks have shape {concept.shape}, unit masks {unit.shape}")
        union = np.count_nonzero(unit | concept)
        result[code] = np.count_nonzero(unit & concept) / union if union else 0.0
    return result


def best_concept(ious: Mapping[K, float]) -> tuple[K | None, float]:
    """The concept with the highest IoU (the first in mapping order among equals); (None, 0.0) if none is > 0."""
    best: K | None = None
    best_iou = 0.0
    for code, iou in ious.items():
        if iou > best_iou:
            best, best_iou = code, float(iou)
    return best, best_iou


class ConceptIoUTally:
    """Σ |M and L|, Σ |M| and Σ |L| per unit and concept over a stream of inputs; IoU at the end.

    thresholds: float (U,) each unit's binarising level; side: the masks' side S in pixels. The union is
    Σ|M| + Σ|L| - Σ|M and L|, so only three sums are kept. A unit's map whose maximum is at or below its
    threshold has an empty mask (bilinear upsampling never exceeds the map's maximum), so only the
    (input, unit) pairs above threshold are upsampled: a few percent of them at the top-0.5% level.
    """

    def __init__(self, thresholds: torch.Tensor | np.ndarray, side: int) -> None:
        self.thresholds = torch.as_tensor(thresholds, dtype=torch.float32).clone()
        self.side = side
        self.unit_area = torch.zeros(len(self.thresholds), dtype=torch.int64)
        self.concept_area: dict[str, int] = {}
        self.intersection: dict[str, torch.Tensor] = {}  # code -> int64 (U,)

    def update(self, features: torch.Tensor, concepts: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Add a batch: features float (B, U, h, w); concepts[b]: code -> bool (S, S) mask on input b."""
        if len(concepts) != len(features):
            raise ValueError(f"{len(concepts)} concept maps for {len(features)} inputs")
        for masks in concepts:
            for code, mask in masks.items():
                self.concept_area[code] = self.concept_area.get(code, 0) + int(np.count_nonzero(mask))
        features = features.float()
        active = features.amax(dim=(2, 3)) > self.thresholds  # (B, U)
        inputs, units = torch.nonzero(active, as_tuple=True)
        for start in range(0, len(inputs), _PAIRS_PER_CHUNK):
            chunk = slice(start, start + _PAIRS_PER_CHUNK)
            self._add_pairs(features, inputs[chunk], units[chunk], concepts)

    def _add_pairs(
        self,
        features: torch.Tensor,
        inputs: torch.Tensor,
        units: torch.Tensor,
        concepts: Sequence[Mapping[str, np.ndarray]],
    ) -> None:
        maps = features[inputs, units].unsqueeze(1)  # (n, 1, h, w)
        up = F.interpolate(maps, size=(self.side, self.side), mode="bilinear", align_corners=False)[:, 0]
        masks = (up > self.thresholds[units].view(-1, 1, 1)).reshape(len(units), -1)  # (n, S*S)
        self.unit_area.index_add_(0, units, masks.sum(dim=1))
        for b in torch.unique(inputs).tolist():
            if not concepts[b]:
                continue
            pairs = inputs == b
            unit_masks = masks[pairs].float()
            codes = list(concepts[b])
            labels = torch.from_numpy(np.stack([concepts[b][code] for code in codes]).reshape(len(codes), -1))
            # Exact integer counts: sums of at most S*S ones, far below float32's 2**24.
            counts = (unit_masks @ labels.float().T).round().to(torch.int64)  # (pairs, concepts)
            for j, code in enumerate(codes):
                row = self.intersection.setdefault(code, torch.zeros_like(self.unit_area))
                row.index_add_(0, units[pairs], counts[:, j])

    def merge(self, other: ConceptIoUTally) -> None:
        """Add another shard's sums (exact: they are counts)."""
        if other.side != self.side or not torch.equal(other.thresholds, self.thresholds):
            raise ValueError("can only merge IoU tallies with the same thresholds and mask side")
        self.unit_area += other.unit_area
        for code, area in other.concept_area.items():
            self.concept_area[code] = self.concept_area.get(code, 0) + area
        for code, row in other.intersection.items():
            self.intersection[code] = self.intersection.get(code, torch.zeros_like(row)) + row

    def ious(self) -> dict[str, np.ndarray]:
        """code -> float64 (U,) IoU of every unit with the concept (0.0 where the union is empty)."""
        result: dict[str, np.ndarray] = {}
        for code in sorted(self.concept_area):
            inter = self.intersection.get(code, torch.zeros_like(self.unit_area)).numpy()
            union = self.unit_area.numpy() + self.concept_area[code] - inter
            result[code] = np.divide(inter, union, out=np.zeros(len(union)), where=union > 0)
        return result

    def state_dict(self) -> dict[str, Any]:
        codes = sorted(self.concept_area)
        return {
            "thresholds": self.thresholds.clone(),
            "side": self.side,
            "unit_area": self.unit_area.clone(),
            "codes": codes,
            "concept_area": [self.concept_area[code] for code in codes],
            "intersection": torch.stack(
                [self.intersection.get(code, torch.zeros_like(self.unit_area)) for code in codes]
            )
            if codes
            else torch.zeros((0, len(self.unit_area)), dtype=torch.int64),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ConceptIoUTally:
        tally = cls(state["thresholds"], int(state["side"]))
        tally.unit_area = torch.as_tensor(state["unit_area"]).to(torch.int64).clone()
        for code, area, row in zip(state["codes"], state["concept_area"], state["intersection"], strict=True):
            tally.concept_area[code] = int(area)
            tally.intersection[code] = torch.as_tensor(row).to(torch.int64).clone()
        return tally
