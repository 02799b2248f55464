"""Network Dissection style matching of a unit's masks against concept masks.

A unit's binarised response masks on its top inputs are compared with each concept's masks on
the same inputs (e.g. the planted findings of the demo phantoms, or expert ROIs). As in Network
Dissection, the IoU is accumulated over the inputs, sum |M and L| / sum |M or L|, rather than
averaged per input: an input where neither fires has no 0/0 IoU, and large regions weigh more.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np

__all__ = ["best_concept", "concept_iou"]

K = TypeVar("K", bound=Hashable)  # a concept key: a code, or anything else that names one


def concept_iou(unit_masks: np.ndarray, concept_masks: Mapping[K, np.ndarray]) -> dict[K, float]:
    """IoU of a unit with each concept, summed over the unit's top inputs.

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
