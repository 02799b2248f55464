"""A unit's kept response maps in pixels: binarised masks and their boxes, heat tiles, and boxes taken
from a patch's frame to its image's.

As in Network Dissection, a unit's response map on an input is upsampled to the input's size and
binarised at the unit's top-quantile level (``UnitTopK.thresholds``); ``dissection`` scores those
masks against concept masks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .topk import UnitTopK

__all__ = ["heat_tiles", "to_image_box", "unit_masks", "unit_responses"]


def unit_masks(
    topk: UnitTopK,
    unit: int,
    patch_side: int,
    *,
    thresholds: torch.Tensor | None = None,
    locations: torch.Tensor | None = None,
    responses: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Binarised, upsampled response maps of a unit's kept inputs and their boxes (pass `responses`
    from `unit_responses` when the caller needs them too).

    Returns masks bool (n, S, S): the unit's response map of each kept input (rank order),
    bilinearly upsampled to S = patch_side (align_corners=False) and thresholded ``> threshold``
    (the unit's top-quantile level, as Network Dissection does), and boxes int64 (n, 4)
    (x0, y0, x1, y1), x1/y1 exclusive, in patch pixels: the mask's bounding box, or for an empty
    mask the argmax cell's box scaled to the patch.
    """
    n = topk.kept
    if n == 0:
        return np.zeros((0, patch_side, patch_side), dtype=bool), np.zeros((0, 4), dtype=np.int64)
    # Looping over every unit? Pass thresholds() and locations() computed once: each costs a pass over all units.
    thresholds = topk.thresholds() if thresholds is None else thresholds
    locations = topk.locations() if locations is None else locations
    up = unit_responses(topk, unit, patch_side) if responses is None else responses
    masks = (up > thresholds[unit]).numpy()
    cells = locations[unit, :n].numpy()
    return masks, _mask_boxes(masks, cells, topk.map_size or (1, 1))


def unit_responses(topk: UnitTopK, unit: int, patch_side: int) -> torch.Tensor:
    """A unit's response maps on its kept inputs, float (n, S, S), bilinearly upsampled to S = patch_side
    (align_corners=False): what `unit_masks` thresholds and `heat_tiles` colours."""
    maps = topk.response_maps()[unit, : topk.kept]  # (n, h, w)
    return F.interpolate(maps.unsqueeze(1), size=(patch_side, patch_side), mode="bilinear", align_corners=False)[:, 0]


def heat_tiles(responses: torch.Tensor, peak: float) -> np.ndarray:
    """Response maps (n, S, S) as uint8 heat tiles: 255 at the unit's peak activation, 0 at or below zero."""
    if peak <= 0:
        return np.zeros(tuple(responses.shape), dtype=np.uint8)
    return (responses / peak).clamp_(0, 1).mul_(255).round_().to(torch.uint8).numpy()


def _mask_boxes(masks: np.ndarray, cells: np.ndarray, map_size: tuple[int, int]) -> np.ndarray:
    """Bounding boxes int64 (n, 4) of masks (n, S, S); cells int (n, 2) (h, w) for empty masks."""
    n, side, _ = masks.shape
    rows, cols = np.asarray(masks.any(axis=2)), np.asarray(masks.any(axis=1))  # (n, S) each
    boxes = np.empty((n, 4), dtype=np.int64)
    boxes[:, 0] = cols.argmax(axis=1)
    boxes[:, 1] = rows.argmax(axis=1)
    boxes[:, 2] = side - cols[:, ::-1].argmax(axis=1)
    boxes[:, 3] = side - rows[:, ::-1].argmax(axis=1)
    empty = ~rows.any(axis=1)
    if empty.any():
        boxes[empty] = _cell_boxes(cells[empty], map_size, side)
    return boxes


def _cell_boxes(cells: np.ndarray, map_size: tuple[int, int], side: int) -> np.ndarray:
    """Patch-pixel boxes int64 (n, 4) of feature cells int (n, 2) (h, w), rounded outwards."""
    h, w = map_size
    y, x = cells[:, 0], cells[:, 1]
    x0, y0 = x * side // w, y * side // h
    x1, y1 = -(-(x + 1) * side // w), -(-(y + 1) * side // h)  # ceiling division
    return np.stack((x0, y0, x1, y1), axis=1).astype(np.int64)


def to_image_box(patch_box: np.ndarray, box_in_patch: np.ndarray, patch_side: int | None = None) -> np.ndarray:
    """Boxes in patch pixels -> full-image pixels.

    patch_box: (4,) or (n, 4) (x0, y0, x1, y1) of the patch in the image; box_in_patch: (4,) or
    (n, 4) in the network input's pixels. patch_side: the input's side when the patch was resized
    for the network (default: the patch's own side, no scaling). Returns int64 of the broadcast shape.
    """
    patch = np.asarray(patch_box, dtype=np.int64)
    inner = np.asarray(box_in_patch, dtype=np.int64)
    origin = np.concatenate((patch[..., :2], patch[..., :2]), axis=-1)
    if patch_side is None:
        return origin + inner
    scale = (patch[..., 2:3] - patch[..., 0:1]) / patch_side
    return origin + np.rint(inner * scale).astype(np.int64)
