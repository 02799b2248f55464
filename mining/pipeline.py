"""Pure glue between a mining pass and what the product stores: concept masks per patch, unit-concept
IoUs, mask sprites. Arrays in, arrays out; the services do the file and database I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .dissection import best_concept, concept_iou

__all__ = ["mask_sprite", "patch_concept_masks", "unit_concept_ious"]


def patch_concept_masks(
    findings: Sequence[tuple[np.ndarray, Sequence[str]]], box: Sequence[int], size: int
) -> dict[str, np.ndarray]:
    """Each concept's mask inside one patch, at the network's input size.

    findings: (bool (H, W) mask, concept codes) of the patch's image; box: (x0, y0, x1, y1).
    Returns code -> bool (size, size); concepts absent from the patch are left out.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    result: dict[str, np.ndarray] = {}
    for mask, codes in findings:
        crop = mask[y0:y1, x0:x1]
        if not crop.any():
            continue
        if crop.shape != (size, size):
            resized = F.interpolate(torch.from_numpy(crop)[None, None].float(), size=(size, size), mode="nearest")
            crop = resized[0, 0].numpy() > 0.5
        for code in codes:
            result[code] = result[code] | crop if code in result else crop.copy()
    return result


def unit_concept_ious(
    unit_masks: np.ndarray, patch_concepts: Sequence[Mapping[str, np.ndarray]], keep: int = 5
) -> tuple[str | None, float, dict[str, float]]:
    """IoU of a unit's masks (n, S, S) with every concept present in its n patches.

    patch_concepts[i] is `patch_concept_masks` of the unit's i-th patch. Returns the best concept,
    its IoU, and the `keep` best as code -> IoU (rounded to 4 decimals).
    """
    codes = sorted({code for concepts in patch_concepts for code in concepts})
    if not codes:
        return None, 0.0, {}
    empty = np.zeros(unit_masks.shape[1:], dtype=bool)
    stacks = {code: np.stack([concepts.get(code, empty) for concepts in patch_concepts]) for code in codes}
    ious = concept_iou(unit_masks, stacks)
    best, best_iou = best_concept(ious)
    top = sorted(ious.items(), key=lambda item: (-item[1], item[0]))[:keep]
    return (
        (str(best) if best is not None else None),
        float(best_iou),
        {str(k): round(float(v), 4) for k, v in top if v > 0},
    )


def mask_sprite(masks: np.ndarray, columns: int = 8) -> np.ndarray:
    """Tiles (n, S, S) masks (bool, or uint8 response maps) row-major into one (rows*S, columns*S) image
    of the same dtype; tile i is rank i + 1."""
    n, side, _ = masks.shape
    rows = max(1, -(-n // columns))
    sheet = np.zeros((rows * columns, side, side), dtype=masks.dtype)
    sheet[:n] = masks
    return sheet.reshape(rows, columns, side, side).transpose(0, 2, 1, 3).reshape(rows * side, columns * side)
