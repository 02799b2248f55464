"""mining.patches: grid geometry, tissue mask, box sums, the labelling rules at their boundaries, crops.

The labelling tests use one 20 x 20 box (400 px) at the top-left of a 60 x 60 image with full
tissue unless stated, so 1 px is 0.25% of the patch: 200 px is exactly 50%, 120 px exactly 30%.
"""

from __future__ import annotations

import numpy as np
import pytest

from mining.patches import (
    CLASSES,
    PatchParams,
    PatchSet,
    box_sums,
    crop_patches,
    extract_patches,
    label_patches,
    otsu_threshold,
    patch_geometry,
    patch_grid,
    tissue_mask,
)

NORMAL, BENIGN, MALIGNANT = (CLASSES.index(name) for name in ("normal", "benign", "malignant"))
SHAPE = (60, 60)
BOX = np.array([[0, 0, 20, 20]])  # (x0, y0, x1, y1): 400 px
FULL_TISSUE = np.ones(SHAPE, dtype=bool)
PAPER = PatchParams()  # the paper's thresholds


def blank() -> np.ndarray:
    return np.zeros(SHAPE, dtype=bool)


def label_of(
    findings: list[tuple[np.ndarray, str]], tissue: np.ndarray = FULL_TISSUE, params: PatchParams = PAPER
) -> int:
    keep, labels, _ = label_patches(BOX, tissue, findings, params)
    assert keep.tolist() == [True]
    return int(labels[0])


def covering(inside_px: int) -> np.ndarray:
    """A finding with ``inside_px`` px in BOX (column-major from its top-left) that is mostly
    outside it (an 800 px block below-right of BOX), so under 30% of the finding lies in BOX."""
    mask = blank()
    mask.T[:20, :20].flat[:inside_px] = True  # fills column 0 first, then column 1, ...
    mask[20:60, 20:40] = True  # 800 px outside the box
    return mask


def straddling(inside_px: int) -> np.ndarray:
    """A 100 px finding with ``inside_px`` of its pixels in BOX: rows 0-9, crossing x = 20."""
    mask = blank()
    mask[0:10, 20 - 3 : 20 + 7] = True  # 30 px inside (x 17..19), 70 outside
    if inside_px < 30:  # move pixels from inside to just outside, keeping the area at 100
        moved = 30 - inside_px
        mask[0:moved, 17] = False
        mask[0:moved, 27] = True
    assert mask.sum() == 100 and mask[:20, :20].sum() == inside_px
    return mask


# ------------------------------------------------------------------------ grid


def test_grid_of_a_512_by_640_image_is_7_by_9_boxes_of_128_with_stride_64() -> None:
    assert patch_geometry(512) == (128, 64)
    boxes = patch_grid(640, 512)
    assert boxes.dtype == np.int32 and boxes.shape == (63, 4)
    assert boxes[0].tolist() == [0, 0, 128, 128]
    assert boxes[1].tolist() == [64, 0, 192, 128]  # row by row: x moves first
    assert boxes[-1].tolist() == [384, 512, 512, 640]
    assert sorted(set(boxes[:, 0].tolist())) == list(range(0, 385, 64))
    assert sorted(set(boxes[:, 1].tolist())) == list(range(0, 513, 64))
    assert np.all(boxes[:, 2:] - boxes[:, :2] == 128)


def test_grid_rounds_half_up_and_stays_inside_the_image() -> None:
    assert patch_geometry(510) == (128, 64)  # 127.5 -> 128
    assert patch_geometry(100) == (25, 13)  # stride 12.5 -> 13
    boxes = patch_grid(90, 100)
    assert boxes[:, 2].max() <= 100 and boxes[:, 3].max() <= 90
    # The stride stops at 65 (65 + 13 + 25 > 100); a last column sits flush with the edge at 100 - 25.
    assert sorted(set(boxes[:, 0].tolist())) == [0, 13, 26, 39, 52, 65, 75]
    assert sorted(set(boxes[:, 1].tolist())) == [0, 13, 26, 39, 52, 65]  # 65 + 25 = 90: already flush
    assert patch_grid(20, 100).shape == (0, 4)  # shorter than one patch


def test_grid_follows_params_and_is_not_shared_between_callers() -> None:
    params = PatchParams(side_fraction=0.5, stride_fraction=1.0)
    assert patch_grid(100, 100, params).tolist() == [
        [0, 0, 50, 50],
        [50, 0, 100, 50],
        [0, 50, 50, 100],
        [50, 50, 100, 100],
    ]
    patch_grid(640, 512)[0, 0] = 99
    assert patch_grid(640, 512)[0, 0] == 0


# Sizes whose grid stops short of the bottom and/or right edge, and sizes where it fits exactly.
GRID_SIZES = [
    (1700, 1000),  # the issue's case: the regular rows end at y = 1375 + 250 = 1625
    (640, 512),  # fits exactly both ways (the phantoms' size)
    (256, 256),
    (1000, 1000),
    (90, 100),  # stops short in x only
    (641, 513),  # stops short by one pixel both ways
    (333, 257),
    (2000, 1500),
    (4084, 3328),  # a full-field mammogram
    (25, 100),  # exactly one row
    (26, 100),  # one row and a flush row one pixel below
    (130, 100),
]


def coverage(height: int, width: int, boxes: np.ndarray) -> np.ndarray:
    """How many boxes cover each pixel: int (H, W), by painting each box in turn."""
    count = np.zeros((height, width), dtype=np.int64)
    for x0, y0, x1, y1 in boxes.tolist():
        count[y0:y1, x0:x1] += 1
    return count


@pytest.mark.parametrize("params", [PAPER, PatchParams(side_fraction=0.5, stride_fraction=1.0), PatchParams(0.3, 0.7)])
@pytest.mark.parametrize(("height", "width"), GRID_SIZES)
def test_grid_covers_every_pixel_with_a_flush_last_row_and_column(height: int, width: int, params: PatchParams) -> None:
    side, stride = patch_geometry(width, params)
    boxes = patch_grid(height, width, params).astype(np.int64)
    if height < side:  # too short for any patch (e.g. 25 px with a 50 px side)
        assert boxes.shape == (0, 4)
        return
    assert np.all(boxes[:, 2:] - boxes[:, :2] == side)
    assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= width and boxes[:, 3].max() <= height
    assert coverage(height, width, boxes).min() >= 1  # every pixel, the bottom and right strips too
    assert len(np.unique(boxes, axis=0)) == len(boxes)  # no duplicate boxes
    # The last column and row are flush with the edge; the others keep the regular stride.
    for starts, size in ((boxes[:, 0], width), (boxes[:, 1], height)):
        regular = list(range(0, size - side + 1, stride))
        flush = [] if regular[-1] == size - side else [size - side]
        assert sorted(set(starts.tolist())) == regular + flush
    # Row by row, x moving first.
    xs, ys = sorted(set(boxes[:, 0].tolist())), sorted(set(boxes[:, 1].tolist()))
    assert boxes[:, :2].tolist() == [[x, y] for y in ys for x in xs]


def test_grid_of_the_issue_image_gets_a_last_row_flush_with_the_bottom() -> None:
    boxes = patch_grid(1700, 1000)
    assert patch_geometry(1000) == (250, 125)
    assert sorted(set(boxes[:, 1].tolist())) == [*range(0, 1376, 125), 1450]  # 1375 + 250 = 1625 < 1700
    assert sorted(set(boxes[:, 0].tolist())) == list(range(0, 751, 125))  # 750 + 250 = 1000: no extra column
    assert boxes.shape == (13 * 7, 4)
    assert boxes[-7:, 1].tolist() == [1450] * 7 and boxes[-1].tolist() == [750, 1450, 1000, 1700]


# ------------------------------------------------------------------- box sums


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_boxes", [8, 200])  # few boxes add cells with a matrix, many use a summed-area table
def test_box_sums_equal_a_naive_loop_on_random_masks(seed: int, n_boxes: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = 600, 37  # taller than 255 rows: bands get split to stay within uint8
    mask = rng.random((height, width)) < rng.uniform(0.05, 0.95)
    x = np.sort(rng.integers(0, width + 1, (n_boxes, 2)), axis=1)
    y = np.sort(rng.integers(0, height + 1, (n_boxes, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    boxes[:3] = [[0, 0, width, height], [5, 7, 5, 90], [0, 0, 0, 0]]  # whole image, empty boxes
    expected = [mask[y0:y1, x0:x1].sum() for x0, y0, x1, y1 in boxes]
    result = box_sums(mask, boxes)
    assert result.dtype == np.int64
    assert result.tolist() == expected


@pytest.mark.parametrize(("height", "width"), GRID_SIZES)
def test_box_sums_on_grids_with_a_flush_last_row_match_slicing(height: int, width: int) -> None:
    mask = np.random.default_rng(height * width).random((height, width)) < 0.4
    boxes = patch_grid(height, width)
    assert box_sums(mask, boxes).tolist() == [mask[y0:y1, x0:x1].sum() for x0, y0, x1, y1 in boxes]
    boxes = np.concatenate([boxes, boxes[::-1]])  # out of order and repeated
    assert box_sums(mask, boxes).tolist() == [mask[y0:y1, x0:x1].sum() for x0, y0, x1, y1 in boxes]


def test_box_sums_on_the_grid_match_slicing_and_reject_boxes_outside() -> None:
    mask = np.random.default_rng(9).random((640, 512)) < 0.3
    boxes = patch_grid(640, 512)
    assert box_sums(mask, boxes).tolist() == [mask[y0:y1, x0:x1].sum() for x0, y0, x1, y1 in boxes]
    assert box_sums(mask, np.zeros((0, 4))).shape == (0,)
    with pytest.raises(ValueError, match="inside"):
        box_sums(mask, [[0, 0, 513, 10]])
    with pytest.raises(ValueError, match="inside"):
        box_sums(mask, [[-1, 0, 10, 10]])


# -------------------------------------------------------------- tissue rule


def test_exactly_half_tissue_is_kept_and_just_under_half_is_dropped() -> None:
    tissue = blank()
    tissue.T[:20, :20].flat[:200] = True  # 200 of 400 px: exactly 50%
    keep, _, fraction = label_patches(BOX, tissue, [])
    assert keep.tolist() == [True] and fraction[0] == np.float32(0.5)

    tissue[19, 9] = False  # 199 px: 49.75%
    keep, _, fraction = label_patches(BOX, tissue, [])
    assert keep.tolist() == [False] and fraction[0] == np.float32(199 / 400)
    assert fraction.dtype == np.float32


# ------------------------------------------------------------- finding rules


@pytest.mark.parametrize("pathology", ["benign", "malignant"])
def test_finding_covering_exactly_30_percent_of_the_patch_labels_it(pathology: str) -> None:
    finding = covering(120)  # 120 / 400 of the patch; 120 / 920 of the finding
    assert label_of([(finding, pathology)]) == CLASSES.index(pathology)


@pytest.mark.parametrize("pathology", ["benign", "malignant"])
def test_finding_covering_just_under_30_percent_of_the_patch_does_not(pathology: str) -> None:
    assert label_of([(covering(119), pathology)]) == NORMAL  # 29.75% of the patch


@pytest.mark.parametrize("pathology", ["benign", "malignant"])
def test_small_finding_with_exactly_30_percent_of_itself_inside_labels_the_patch(pathology: str) -> None:
    finding = straddling(30)  # 30 / 100 of the finding; 7.5% of the patch
    assert label_of([(finding, pathology)]) == CLASSES.index(pathology)


@pytest.mark.parametrize("pathology", ["benign", "malignant"])
def test_small_finding_with_just_under_30_percent_of_itself_inside_does_not(pathology: str) -> None:
    assert label_of([(straddling(29), pathology)]) == NORMAL


def test_boundaries_stay_inclusive_for_a_fraction_a_hair_over_its_decimal() -> None:
    params = PatchParams(min_finding_fraction=1 - 0.7)  # 0.30000000000000004: times 100 is not 30
    assert label_of([(straddling(30), "benign")], params=params) == BENIGN
    assert label_of([(straddling(29), "benign")], params=params) == NORMAL


def test_malignant_wins_over_benign_when_both_qualify() -> None:
    assert label_of([(straddling(30), "benign"), (covering(120), "malignant")]) == MALIGNANT
    assert label_of([(covering(120), "malignant"), (straddling(30), "benign")]) == MALIGNANT
    assert label_of([(straddling(30), "benign"), (covering(119), "malignant")]) == BENIGN


def test_normal_pathology_findings_never_change_the_label() -> None:
    skin_line = np.ones(SHAPE, dtype=bool)  # all of the patch and all of itself
    assert label_of([(skin_line, "normal")]) == NORMAL
    assert label_of([(skin_line, "normal"), (straddling(30), "benign")]) == BENIGN


def test_own_area_rule_judges_each_finding_alone_not_their_union() -> None:
    speck = blank()
    speck[0:2, 0:5] = True  # 10 px, all inside: 100% of itself
    far = blank()
    far[30:60, 30:60] = True  # 900 px, none inside; with the speck, 10 / 910 of the union
    assert label_of([(speck, "benign"), (far, "benign")]) == BENIGN


def test_patch_coverage_counts_the_union_of_same_pathology_findings_once() -> None:
    left, right = covering(80), blank()  # each 20% of the patch, each under 30% of itself
    right[:, 20:60] = covering(80)[:, 20:60]  # the same outside part
    right[0:20, 4:8] = True  # 80 px in other columns than `left`
    assert label_of([(left, "benign"), (right, "benign")]) == BENIGN  # 40% together
    assert label_of([(left, "benign"), (left.copy(), "benign")]) == NORMAL  # overlap counts once
    assert label_of([(left, "benign"), (right, "malignant")]) == NORMAL  # other pathologies don't add


def test_empty_finding_labels_nothing() -> None:
    assert label_of([(blank(), "malignant")]) == NORMAL


def test_labels_are_given_for_dropped_boxes_too() -> None:
    keep, labels, _ = label_patches(BOX, blank(), [(straddling(30), "malignant")])
    assert keep.tolist() == [False] and labels.tolist() == [MALIGNANT]
    assert labels.dtype == np.int64 and keep.dtype == bool


def test_bad_findings_are_rejected() -> None:
    with pytest.raises(ValueError, match="pathology"):
        label_patches(BOX, FULL_TISSUE, [(blank(), "suspicious")])
    with pytest.raises(ValueError, match="shape"):
        label_patches(BOX, FULL_TISSUE, [(np.zeros((10, 10), bool), "benign")])


# ----------------------------------------------------------------- tissue mask


def ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def test_tissue_mask_keeps_the_bright_ellipse_and_drops_a_small_speck() -> None:
    shape = (203, 157)  # not multiples of the downsampling factor
    rng = np.random.default_rng(0)
    breast = ellipse(shape, 100, 40, 80, 70)
    image = rng.integers(0, 30, shape)  # dark, noisy background
    image[breast] += 150
    image[8:16, 135:143] += 200  # a bright speck far from the breast
    mask = tissue_mask(image.astype(np.uint8))
    assert mask.shape == shape and mask.dtype == bool
    assert not mask[8:16, 135:143].any()
    iou = (mask & breast).sum() / (mask | breast).sum()
    assert iou > 0.95


def test_tissue_mask_fills_dark_fat_inside_the_breast_and_accepts_uint16() -> None:
    shape = (160, 128)
    breast = ellipse(shape, 80, 0, 70, 100)
    image = np.where(breast, 40000, 500).astype(np.uint16)
    image[ellipse(shape, 80, 40, 10, 10)] = 600  # as dark as the background, enclosed by tissue
    mask = tissue_mask(image)
    assert mask[80, 40]  # the hole is filled
    assert (mask == breast).mean() > 0.98
    assert not tissue_mask(image, fill_holes=False)[80, 40]


def test_tissue_mask_of_a_blank_image_is_empty() -> None:
    assert not tissue_mask(np.full((40, 40), 7, np.uint8)).any()


def test_otsu_threshold_falls_between_two_modes() -> None:
    values = np.concatenate([np.full(300, 10.0), np.full(100, 200.0)])
    assert 10 < otsu_threshold(values) <= 200
    assert otsu_threshold(np.full(5, 3.0)) == float("inf")


# ----------------------------------------------------------------------- crops


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_crop_patches_equals_slicing(dtype: type) -> None:
    image = np.random.default_rng(1).integers(0, 1000, (640, 512)).astype(dtype)
    boxes = patch_grid(640, 512)[::5]
    crops = crop_patches(image, boxes)
    assert crops.dtype == dtype and crops.shape == (len(boxes), 128, 128)
    for crop, (x0, y0, x1, y1) in zip(crops, boxes, strict=True):
        assert np.array_equal(crop, image[y0:y1, x0:x1])
    crops[0, 0, 0] += 1  # a copy, not a view
    assert crops[0, 0, 0] != image[0, 0]


def test_crop_patches_with_no_boxes_and_with_unequal_boxes() -> None:
    image = np.zeros((64, 64), np.uint8)
    assert crop_patches(image, np.zeros((0, 4)), side=16).shape == (0, 16, 16)
    with pytest.raises(ValueError, match="square"):
        crop_patches(image, [[0, 0, 16, 16], [0, 0, 8, 8]])


# ------------------------------------------------------------------ extraction


def reference_labels(
    image_shape: tuple[int, int], tissue: np.ndarray, findings: list[tuple[np.ndarray, str]]
) -> tuple[np.ndarray, np.ndarray]:
    """The rules written out per grid box in integer arithmetic, for cross-checking."""
    keep, labels = [], []
    for x0, y0, x1, y1 in patch_grid(*image_shape):
        area = (x1 - x0) * (y1 - y0)
        keep.append(tissue[y0:y1, x0:x1].sum() * 2 >= area)
        label = NORMAL
        for index in (BENIGN, MALIGNANT):
            masks = [m for m, p in findings if p == CLASSES[index]]
            union = np.logical_or.reduce(masks) if masks else np.zeros(image_shape, bool)
            if union[y0:y1, x0:x1].sum() * 10 >= 3 * area or any(
                m.sum() and m[y0:y1, x0:x1].sum() * 10 >= 3 * m.sum() for m in masks
            ):
                label = index
        labels.append(label)
    return np.array(keep), np.array(labels)


def test_extract_patches_keeps_and_labels_grid_boxes_as_the_rules_say() -> None:
    shape = (320, 256)
    rng = np.random.default_rng(3)
    image = np.where(ellipse(shape, 160, 0, 150, 200), 180, 10).astype(np.uint8)
    findings = []
    for pathology in ("benign", "malignant", "benign", "normal"):
        cy, cx = rng.integers(20, 300), rng.integers(10, 200)
        findings.append((ellipse(shape, cy, cx, *rng.integers(4, 40, 2)), pathology))
    tissue = tissue_mask(image)

    patch_set = extract_patches(image, findings)
    assert isinstance(patch_set, PatchSet) and (patch_set.side, patch_set.stride) == (64, 32)
    assert patch_set.boxes.dtype == np.int32 and patch_set.labels.dtype == np.int64
    assert patch_set.tissue_fraction.dtype == np.float32 and np.all(patch_set.tissue_fraction >= 0.5)

    keep, labels = reference_labels(shape, tissue, findings)
    assert 0 < keep.sum() < len(keep)
    assert np.array_equal(patch_set.boxes, patch_grid(*shape)[keep])
    assert np.array_equal(patch_set.labels, labels[keep])
    assert len(patch_set) == keep.sum()


def test_extract_patches_uses_the_given_tissue_mask() -> None:
    image = np.full((320, 256), 100, np.uint8)
    tissue = np.zeros(image.shape, bool)
    tissue[:, :128] = True
    patch_set = extract_patches(image, [], tissue=tissue)
    assert set(patch_set.boxes[:, 0].tolist()) == {0, 32, 64, 96}  # x0 = 96: exactly half tissue
    with pytest.raises(ValueError, match="shape"):
        extract_patches(image, [], tissue=tissue[:10])


@pytest.mark.parametrize("shape", [(300, 250), (1700, 1000), (641, 513)])  # grids with a flush last row/column
def test_extract_patches_labels_the_flush_row_and_column_as_the_rules_say(shape: tuple[int, int]) -> None:
    height, width = shape
    rng = np.random.default_rng(height)
    tissue = ellipse(shape, height, width, 0.8 * height, 0.9 * width)  # centred on the bottom-right corner
    image = np.where(tissue, 180, 10).astype(np.uint8)
    side = patch_geometry(width)[0]
    findings = [  # in the strips that only the flush row / column reach, and across them
        (ellipse(shape, height - side // 8, width // 2, side // 8, side // 3), "malignant"),
        (ellipse(shape, height // 2, width - side // 10, side // 3, side // 10), "benign"),
        (ellipse(shape, height - 2, width - 2, side // 4, side // 4), "benign"),
    ]
    for _ in range(3):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        findings.append((ellipse(shape, cy, cx, *rng.integers(3, side // 2, 2)), str(rng.choice(CLASSES))))

    patch_set = extract_patches(image, findings, tissue=tissue)
    keep, labels = reference_labels(shape, tissue, findings)
    assert 0 < keep.sum() < len(keep)
    assert np.array_equal(patch_set.boxes, patch_grid(*shape)[keep])
    assert np.array_equal(patch_set.labels, labels[keep])
    flush = patch_set.boxes[:, 3] == height
    assert flush.any() and (patch_set.labels[flush] == MALIGNANT).any()  # the bottom lesion is found
    grid_keep, grid_labels, fraction = label_patches(patch_grid(*shape), tissue, findings)
    assert np.array_equal(grid_keep, keep) and np.array_equal(grid_labels, labels)
    expected = [tissue[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in patch_grid(*shape)]
    assert np.allclose(fraction, expected)


@pytest.mark.parametrize("shape", [(1700, 1000), (641, 513), (640, 512)])
def test_every_tissue_pixel_lies_in_a_kept_patch_when_the_tissue_reaches_the_edge(shape: tuple[int, int]) -> None:
    height, width = shape
    image = np.random.default_rng(5).integers(0, 30, shape).astype(np.uint8)  # dark, noisy background
    image[int(0.35 * height) :, int(0.4 * width) :] += 170  # a breast pressed against the bottom and right edges
    tissue = tissue_mask(image)
    side, stride = patch_geometry(width)
    regular_end = (height - side) // stride * stride + side  # where the rows of a whole-stride grid end
    assert tissue[-1, -1] and (regular_end == height or tissue[regular_end:].any())

    patch_set = extract_patches(image, [], tissue=tissue)
    covered = coverage(height, width, patch_set.boxes) > 0
    assert not (tissue & ~covered).any()  # no tissue pixel is left out of every kept patch
