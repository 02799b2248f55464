"""DeepMiner patch extraction: regular patch grid, breast-tissue mask, patch labels.

The rules follow Wu et al., "DeepMiner" (see ``shared/papers/deepminer.txt``):

* a patch is a square whose side is 25% of the image width; patches lie on a
  regular grid with a stride of 50% of the side and fit wholly inside the image;
  where the last stride does not reach the bottom (right) edge, one more row
  (column) of patches sits flush with it, so the grid covers every pixel;
* a patch is kept only if at least 50% of it is breast tissue;
* a kept patch is *malignant* (or *benign*) if at least 30% of the patch is
  covered by findings of that pathology, or if at least 30% of a single such
  finding lies inside the patch; malignant wins over benign; otherwise *normal*.

Every threshold is inclusive (exactly 50% tissue is kept, exactly 30% counts).

All arrays are numpy; boxes are ``(x0, y0, x1, y1)`` in full-image pixels with
``x1``/``y1`` exclusive. The per-box pixel counts come from sums over the cells
that the box edges cut the image into, so labelling costs one pass over each
mask however many patches there are.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "CLASSES",
    "PatchParams",
    "PatchSet",
    "box_sums",
    "crop_patches",
    "extract_patches",
    "label_patches",
    "otsu_threshold",
    "patch_geometry",
    "patch_grid",
    "tissue_mask",
]

CLASSES = ("normal", "benign", "malignant")  # a label is an index into this tuple

# A finding is a boolean mask (H, W) with its pathology, one of CLASSES.
Finding = tuple[np.ndarray, str]

# Row bands are summed in uint8 (fast, no casting); 255 rows of 0/1 cannot overflow.
_MAX_BAND_ROWS = 255
# Slack for comparing ``count >= fraction * total`` in floating point, so that a
# fraction a hair over its decimal (1 - 0.7 == 0.30000000000000004) still lets
# exactly 30 of 100 px qualify.
_FRACTION_SLACK = 1e-6


@dataclass(frozen=True)
class PatchParams:
    """Patch geometry and labelling thresholds; defaults are the paper's."""

    side_fraction: float = 0.25  # patch side, as a fraction of the image width
    stride_fraction: float = 0.5  # grid stride, as a fraction of the patch side
    min_tissue: float = 0.5  # keep a patch if at least this share is tissue
    min_finding_fraction: float = 0.3  # share of the patch, or of one finding


@dataclass
class PatchSet:
    """The kept patches of one image.

    boxes: int32 (N, 4) ``(x0, y0, x1, y1)``, x1/y1 exclusive, full-image pixels.
    labels: int64 (N,) index into CLASSES.
    tissue_fraction: float32 (N,) share of each patch that is tissue.
    side, stride: patch side and grid stride in pixels.
    """

    boxes: np.ndarray
    labels: np.ndarray
    tissue_fraction: np.ndarray
    side: int
    stride: int

    def __len__(self) -> int:
        return len(self.boxes)


# --------------------------------------------------------------------------- grid


def _round_half_up(value: float) -> int:
    # Python's round() rounds half to even (round(127.5) == 128, round(128.5) == 128);
    # half-up keeps the side a monotone function of the width.
    return math.floor(value + 0.5)


def patch_geometry(width: int, params: PatchParams = PatchParams()) -> tuple[int, int]:
    """Patch side and stride in pixels for an image ``width`` pixels wide (both >= 1)."""
    side = max(1, _round_half_up(params.side_fraction * width))
    stride = max(1, _round_half_up(params.stride_fraction * side))
    return side, stride


def patch_grid(height: int, width: int, params: PatchParams = PatchParams()) -> np.ndarray:
    """All grid boxes of an image, row by row: int32 (M, 4) ``(x0, y0, x1, y1)``.

    Top-left x are ``range(0, W - side + 1, stride)`` plus ``W - side`` when that
    range stops short of it (a last column flush with the right edge, so the strip
    a whole stride does not reach is patched too); y likewise with H. Every box
    lies wholly inside the image, no box repeats, and with a stride no larger than
    the side every pixel lies in a box. M is 0 if the image is shorter than a side.
    """
    return _cached_grid(int(height), int(width), params).copy()


def _grid_starts(size: int, side: int, stride: int) -> np.ndarray:
    """Box starts along one axis: every ``stride`` from 0, then ``size - side`` if not already there."""
    last = size - side
    if last < 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, last + 1, stride, dtype=np.int64)
    return starts if starts[-1] == last else np.append(starts, last)


@functools.lru_cache(maxsize=64)
def _cached_grid(height: int, width: int, params: PatchParams) -> np.ndarray:
    # A dataset has few distinct image sizes; building the grid costs more than labelling it.
    side, stride = patch_geometry(width, params)
    xs = _grid_starts(width, side, stride)
    ys = _grid_starts(height, side, stride)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    corners = np.stack([x0.ravel(), y0.ravel()], axis=1)
    grid = np.concatenate([corners, corners + side], axis=1).astype(np.int32)
    grid.flags.writeable = False  # shared between callers
    return grid


@functools.lru_cache(maxsize=64)
def _indexed_grid(height: int, width: int, params: PatchParams) -> tuple[np.ndarray, _BoxIndex]:
    """The grid (shared, read-only int32 boxes) with its box index, built once per image size."""
    boxes = _cached_grid(height, width, params)
    return boxes, _box_index(boxes.astype(np.int64), height, width, params)


# ------------------------------------------------------------------ tissue mask


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (any shape): values ``>=`` it are foreground.

    Maximises the between-class variance over a ``bins``-bin histogram spanning
    [min, max] and returns the lower edge of the first foreground bin
    (``inf`` for constant input, which has no foreground).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return float("inf")
    width = (hi - lo) / bins
    # bincount on quantised values: several times faster than np.histogram here.
    index = np.minimum(((values - lo) / width).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    centers = lo + (np.arange(bins) + 0.5) * width
    # Split k puts bins 0..k in the background and k+1.. in the foreground.
    w0 = np.cumsum(counts)[:-1]
    w1 = counts.sum() - w0
    s0 = np.cumsum(counts * centers)[:-1]
    s1 = (counts * centers).sum() - s0
    valid = (w0 > 0) & (w1 > 0)
    mean0 = np.divide(s0, w0, out=np.zeros_like(s0), where=valid)
    mean1 = np.divide(s1, w1, out=np.zeros_like(s1), where=valid)
    between = np.where(valid, w0 * w1 * (mean0 - mean1) ** 2, -1.0)
    return lo + (int(np.argmax(between)) + 1) * width


def _block_sums(image: np.ndarray, factor: int) -> np.ndarray:
    """Sums over ``factor`` x ``factor`` blocks: (H, W) -> (ceil(H/f), ceil(W/f)).

    Sums rather than means: Otsu does not care about scale, and integer sums
    avoid a float conversion of the full image. Strided adds rather than
    ``reshape(...).sum(axis=(1, 3))``, which is ~20x slower here (short inner
    loops with casting). Ragged edges are edge-padded.
    """
    height, width = image.shape
    pad_y, pad_x = -height % factor, -width % factor
    if pad_y or pad_x:
        image = np.pad(image, ((0, pad_y), (0, pad_x)), mode="edge")
    small_ints = image.dtype.kind in "ub" and image.dtype.itemsize <= 2 and factor <= 256
    # Integer sums are exact and faster; the dtype is picked at run time, so its static type is open.
    rows: np.ndarray[Any, Any] = image[0::factor].astype(np.uint32 if small_ints else np.float64)
    for k in range(1, factor):
        rows += image[k::factor]
    sums: np.ndarray[Any, Any] = rows[:, 0::factor].copy()
    for k in range(1, factor):
        sums += rows[:, k::factor]
    return sums


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (all False if it is empty)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # background
    return labels == int(np.argmax(sizes))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` plus every background region that does not touch the image border.

    Same result as ``ndimage.binary_fill_holes`` for an 8-connected mask, but
    one labelling pass instead of iterated dilations (~8x faster here).
    """
    background, count = ndimage.label(~mask)  # 4-connected: the dual of 8-connected
    rim = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    is_hole = np.ones(count + 1, dtype=bool)
    is_hole[rim] = False
    is_hole[0] = True  # label 0 is the mask itself
    return is_hole[background]


def tissue_mask(image: np.ndarray, downsample: int = 4, fill_holes: bool = True) -> np.ndarray:
    """Breast-tissue mask of a 2-D image (tissue brighter than background): bool (H, W).

    Otsu threshold on the image downsampled by ``downsample`` (block sums, which
    also smooth noise), keep the largest connected component, fill its holes
    (dark fat inside the breast is still breast), upsample by pixel repetition.
    """
    image = _as_image(image)
    height, width = image.shape
    if downsample < 1:
        raise ValueError(f"downsample must be >= 1, got {downsample}")
    small = _block_sums(image, downsample)
    mask = _largest_component(small >= otsu_threshold(small))
    if fill_holes and mask.any():
        mask = _fill_holes(mask)
    # Columns first: repeating rows of the wide array is then a cheap row copy.
    full = np.repeat(np.repeat(mask, downsample, axis=1), downsample, axis=0)
    return np.ascontiguousarray(full[:height, :width])


# ---------------------------------------------------------------- box counting
#
# Pixel counts per box come from the cells that the box edges cut the image
# into, not from single pixels: rows are summed in bands between consecutive
# row edges (one pass over the mask, uint8, no casting), the bands are summed
# between column edges, and each box adds up the few cells it covers. A
# per-pixel (H+1, W+1) cumsum is exact too, but measured slower than summing
# the patches one by one. The pass over each mask is unavoidable (finding a
# finding's bounding box would cost a pass too); everything after it is done
# for all of an image's masks at once, because with a few dozen boxes per image
# the cost is the number of numpy calls, not the arithmetic. Counts are exact
# in float64 (integers below 2**53), which lets BLAS add the cells.

# Largest (cells x boxes) 0/1 matrix worth adding cells with (a grid's is a few
# thousand entries); more boxes than that use a summed-area table instead.
_MAX_COVER = 1 << 18


@dataclass(frozen=True, eq=False)
class _BoxIndex:
    """Boxes located in the cell grid cut by their own edges, with their count thresholds.

    row_edges: int64 (R+1,) rising from 0 to H, holding every box's y0 and y1.
    n_even: the first n_even bands all have the height of band 0.
    col_starts: int64 (C,) rising from 0, every box x0/x1 below W (cells end at W).
    cover: float64 (R*C, M+1), 1 where a cell lies in a box and in the last
    column (the mask's total), or None when that is over _MAX_COVER entries.
    corners: int64 (4, M) each box's bottom-right, top-left, top-right and
    bottom-left corner as a flat index into the (R+1, C+1) summed-area table.
    areas: int64 (M,) box areas in pixels.
    min_tissue: float64 (M,) tissue count that keeps a box (inf for an empty box).
    min_covered: float64 (M,) finding count that covers enough of a box (>= 1).
    """

    row_edges: np.ndarray
    n_even: int
    col_starts: np.ndarray
    cover: np.ndarray | None
    corners: np.ndarray
    areas: np.ndarray
    min_tissue: np.ndarray
    min_covered: np.ndarray


def _edges(starts: np.ndarray, stops: np.ndarray, size: int, max_gap: int) -> np.ndarray:
    """Sorted unique coordinates 0, size, starts, stops, no two more than max_gap apart."""
    edges = np.unique(np.concatenate([[0, size], starts, stops]))
    if np.diff(edges).max(initial=0) > max_gap:
        edges = np.unique(np.concatenate([edges, np.arange(0, size, max_gap)]))
    return edges


def _box_index(boxes: np.ndarray, height: int, width: int, params: PatchParams = PatchParams()) -> _BoxIndex:
    """Index int64 (M, 4) boxes of an (H, W) mask."""
    rows = _edges(boxes[:, 1], boxes[:, 3], height, max_gap=_MAX_BAND_ROWS)
    cols = _edges(boxes[:, 0], boxes[:, 2], width, max_gap=width)
    heights = np.diff(rows)
    uneven = np.flatnonzero(heights != heights[0])
    top, bottom = np.searchsorted(rows, boxes[:, 1]), np.searchsorted(rows, boxes[:, 3])
    left, right = np.searchsorted(cols, boxes[:, 0]), np.searchsorted(cols, boxes[:, 2])
    n_cols = len(cols)  # the table is (R+1, C+1) and C+1 == len(cols)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return _BoxIndex(
        row_edges=rows,
        n_even=int(uneven[0]) if len(uneven) else len(heights),
        col_starts=cols[:-1],
        cover=_cover(top, bottom, left, right, len(rows) - 1, n_cols - 1),
        corners=np.stack([bottom * n_cols + right, top * n_cols + left, top * n_cols + right, bottom * n_cols + left]),
        areas=areas,
        min_tissue=np.where(areas > 0, _min_count(areas, params.min_tissue), np.inf),
        # "covered" also needs at least one pixel of a finding, which a fraction of 0 would not ask.
        min_covered=np.maximum(_min_count(areas, params.min_finding_fraction), 1.0),
    )


def _cover(
    top: np.ndarray, bottom: np.ndarray, left: np.ndarray, right: np.ndarray, n_rows: int, n_cols: int
) -> np.ndarray | None:
    """float64 (R*C, M+1): which of R x C cells each box spans (bands top..bottom-1,
    columns left..right-1), and a last column of ones; None if it would be too large."""
    n_boxes = len(top)
    if n_rows * n_cols * (n_boxes + 1) > _MAX_COVER:
        return None
    band, col = np.arange(n_rows)[:, None], np.arange(n_cols)[:, None]
    in_rows, in_cols = (top <= band) & (band < bottom), (left <= col) & (col < right)  # (R, M), (C, M)
    cover = np.ones((n_rows * n_cols, n_boxes + 1))
    cover[:, :n_boxes] = (in_rows[:, None, :] & in_cols[None, :, :]).reshape(n_rows * n_cols, n_boxes)
    return cover


def _band_sums(mask: np.ndarray, index: _BoxIndex, out: np.ndarray) -> None:
    """Column sums of a bool (H, W) mask over each band of rows, into uint8 ``out`` (R, W)."""
    pixels = mask.view(np.uint8)
    edges, n_even = index.row_edges, index.n_even
    # A grid's bands mostly share one height: sum those in one reshaped call, not a
    # loop (the few uneven ones, e.g. around a flush last row, go one by one). einsum, because np.add.reduce over the middle axis is ~1.4x slower here;
    # it adds in uint8 too, which wraps but cannot overflow at <= 255 rows of 0/1.
    even = pixels[: edges[n_even]].reshape(n_even, edges[1], -1)
    np.einsum("bij->bj", even, out=out[:n_even])
    for i in range(n_even, len(out)):
        np.add.reduce(pixels[edges[i] : edges[i + 1]], axis=0, dtype=np.uint8, out=out[i])


def _box_counts(masks: Sequence[np.ndarray], index: _BoxIndex) -> tuple[np.ndarray, np.ndarray]:
    """Count of True in each of K bool (H, W) masks per indexed box, float64 (K, M), and overall, (K,)."""
    n_masks, n_bands = len(masks), len(index.row_edges) - 1
    bands = np.empty((n_masks, n_bands, masks[0].shape[1]), dtype=np.uint8)
    for mask, out in zip(masks, bands, strict=True):
        _band_sums(mask, index, out)
    cells = np.add.reduceat(bands, index.col_starts, axis=2, dtype=np.float64)  # (K, R, C)
    if index.cover is not None:
        counts = cells.reshape(n_masks, -1) @ index.cover
        return counts[:, :-1], counts[:, -1]
    # table[k, i, j] counts True in masks[k][:row i, :col j].
    table = np.zeros((n_masks, n_bands + 1, cells.shape[2] + 1))
    inner = table[:, 1:, 1:]
    np.cumsum(cells, axis=1, out=inner)
    np.cumsum(inner, axis=2, out=inner)
    corner = table.reshape(n_masks, -1)[:, index.corners]  # (K, 4, M)
    return corner[:, 0] + corner[:, 1] - corner[:, 2] - corner[:, 3], table[:, -1, -1]


def box_sums(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Pixel count of a (H, W) mask inside each of (M, 4) boxes: int64 (M,).

    Sums of the cells cut by the box edges, vectorised over boxes.
    """
    mask = np.asarray(mask, dtype=bool)
    boxes = _as_boxes(boxes, *mask.shape)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    return _box_counts([mask], _box_index(boxes, *mask.shape))[0][0].astype(np.int64)


# -------------------------------------------------------------------- labelling


def _min_count(total: np.ndarray, fraction: float) -> np.ndarray:
    """Smallest whole count that is ``>= fraction * total``, inclusive despite floating-point error: float64."""
    return np.ceil(fraction * np.asarray(total, dtype=np.float64) - _FRACTION_SLACK)


def label_patches(
    boxes: np.ndarray,
    tissue: np.ndarray,
    findings: Sequence[Finding],
    params: PatchParams = PatchParams(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep flag, label and tissue fraction of each box.

    boxes: (M, 4) ``(x0, y0, x1, y1)``; tissue: bool (H, W); findings: sequence of
    (bool mask (H, W), pathology in CLASSES). Findings whose pathology is
    "normal" (skin line, vessels...) never change a label.
    Returns keep bool (M,), labels int64 (M,) into CLASSES, tissue_fraction float32 (M,).
    Labels are computed for every box, kept or not.
    """
    tissue = np.asarray(tissue, dtype=bool)
    boxes = _as_boxes(boxes, *tissue.shape)
    by_class = _group_findings(findings, tissue.shape)
    if len(boxes) == 0:
        return np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, np.float32)
    height, width = tissue.shape
    return _label(_box_index(boxes, height, width, params), tissue, by_class, params.min_finding_fraction)


def _label(
    index: _BoxIndex,
    tissue: np.ndarray,
    by_class: dict[str, list[np.ndarray]],
    fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """label_patches on checked inputs: boxes indexed with their params, bool tissue
    (H, W), finding masks grouped by pathology, the finding fraction.

    A box qualifies for a pathology if ``fraction`` of its area is covered by
    that pathology's findings (their union, so overlaps count once) or if
    ``fraction`` of any single such finding's own area lies inside it.
    """
    # One row per mask; a finding's row is labelled with its class, and a class
    # with several findings gets one more row, their union (overlaps count once).
    masks, row_labels, unions = [tissue], [CLASSES.index("normal")], []
    for label, name in enumerate(CLASSES[1:], start=1):
        found = by_class[name]
        masks += found
        row_labels += [label] * len(found)
        if len(found) > 1:
            unions.append(len(masks))
            masks.append(np.logical_or.reduce(found))
            row_labels.append(label)
    counts, totals = _box_counts(masks, index)

    keep = counts[0] >= index.min_tissue
    tissue_fraction = (counts[0] / np.maximum(index.areas, 1)).astype(np.float32)
    if len(masks) == 1:
        return keep, np.zeros(len(keep), dtype=np.int64), tissue_fraction
    # The "share of a single finding" rule is not for unions, nor for an empty
    # finding, which would otherwise "lie 100% inside" every box.
    own_share = _min_count(totals, fraction)
    own_share[totals == 0] = np.inf
    if unions:
        own_share[unions] = np.inf
    lies_inside = counts >= own_share[:, None]
    qualifies = lies_inside | (counts >= index.min_covered)
    # CLASSES run from normal to malignant, so the most severe qualifying class is the largest index.
    labels = (qualifies * np.array(row_labels)[:, None]).max(axis=0)
    return keep, labels, tissue_fraction


def _group_findings(findings: Sequence[Finding], shape: tuple[int, ...]) -> dict[str, list[np.ndarray]]:
    """Finding masks by pathology, after checking pathology names and mask shapes."""
    by_class: dict[str, list[np.ndarray]] = {name: [] for name in CLASSES}
    for mask, pathology in findings:
        if pathology not in by_class:
            raise ValueError(f"unknown pathology {pathology!r}; expected one of {CLASSES}")
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"finding mask shape {mask.shape} != image shape {shape}")
        by_class[pathology].append(mask)
    return by_class


# ----------------------------------------------------------------- extraction


def extract_patches(
    image: np.ndarray,
    findings: Sequence[Finding],
    params: PatchParams = PatchParams(),
    tissue: np.ndarray | None = None,
) -> PatchSet:
    """Kept, labelled patch boxes of a 2-D uint8/uint16 image (H, W).

    ``tissue`` (bool (H, W)) is computed with :func:`tissue_mask` when not given.
    Crop the pixels with ``crop_patches(image, patch_set.boxes)``.
    """
    image = _as_image(image)
    height, width = image.shape
    if tissue is None:
        tissue = tissue_mask(image)
    tissue = np.asarray(tissue, dtype=bool)
    if tissue.shape != image.shape:
        raise ValueError(f"tissue mask shape {tissue.shape} != image shape {image.shape}")
    by_class = _group_findings(findings, image.shape)
    side, stride = patch_geometry(width, params)
    boxes, index = _indexed_grid(height, width, params)
    if len(boxes) == 0:
        empty = np.zeros(0, np.int64)
        return PatchSet(np.zeros((0, 4), np.int32), empty, np.zeros(0, np.float32), side, stride)
    keep, labels, tissue_fraction = _label(index, tissue, by_class, params.min_finding_fraction)
    return PatchSet(boxes[keep], labels[keep], tissue_fraction[keep], side, stride)


def crop_patches(image: np.ndarray, boxes: np.ndarray, side: int | None = None) -> np.ndarray:
    """Pixels of square, equal-sized boxes: (N, side, side), image's dtype, a copy.

    One fancy-indexing gather from a strided view of every possible window, no
    Python loop. ``side`` only sets the result's shape when there are no boxes.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    boxes = _as_boxes(boxes, *image.shape)
    if len(boxes) == 0:
        size = side or 0
        return np.empty((0, size, size), dtype=image.dtype)
    size = int(boxes[0, 2] - boxes[0, 0])
    if size == 0 or np.any(boxes[:, 2:] - boxes[:, :2] != size):
        raise ValueError("crop_patches needs non-empty square boxes of one size")
    height, width = image.shape
    # windows[y, x] is image[y:y+size, x:x+size], a view: no pixel moves until the gather.
    windows = np.lib.stride_tricks.as_strided(
        image,
        shape=(height - size + 1, width - size + 1, size, size),
        strides=image.strides * 2,
        writeable=False,
    )
    return windows[boxes[:, 1], boxes[:, 0]]


# ------------------------------------------------------------------- checking


def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {image.shape}")
    return image


def _as_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boxes as int64 (M, 4), checked to lie inside an (H, W) image."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(boxes) and (
        boxes[:, :2].min() < 0
        or boxes[:, 2].max() > width
        or boxes[:, 3].max() > height
        or np.any(boxes[:, 2:] < boxes[:, :2])
    ):
        raise ValueError(f"boxes must lie inside the {height}x{width} image with x0<=x1, y0<=y1")
    return boxes
