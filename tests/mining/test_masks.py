"""mining.masks: a unit's kept response maps binarised at its threshold, their boxes, heat tiles."""

from __future__ import annotations

import numpy as np
import torch

from mining.masks import heat_tiles, to_image_box, unit_masks, unit_responses
from mining.topk import UnitTopK
from tests.mining.topk_reference import stream


def test_unit_masks_binarise_the_upsampled_map_at_the_threshold() -> None:
    # Input 0's map [[0, 0], [0, 4]] upsamples (bilinear, align_corners=False, 2 -> 4) to
    # 4 * outer(a, a) with a = [0, .25, .75, 1]; input 1's map [[1, 0], [0, 0]] to outer(b, b),
    # b = [1, .75, .25, 0]. K = ceil(0.25 * 8) = 2: the threshold is the 2nd largest value, 1.0.
    maps = torch.tensor([[[[0.0, 0.0], [0.0, 4.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    topk = UnitTopK(1, top_n=4, quantile=0.25, total_positions=8)
    topk.update(maps, torch.tensor([7, 3]))
    assert topk.thresholds().tolist() == [1.0]
    masks, boxes = unit_masks(topk, 0, patch_side=4)
    a = np.array([0, 0.25, 0.75, 1])
    expected = 4 * np.outer(a, a) > 1.0  # values equal to 1.0 (cells (1, 3), (3, 1)) stay out
    assert expected.sum() == 4
    np.testing.assert_array_equal(masks[0], expected)
    assert not masks[1].any()  # the peak 1.0 is not above the threshold
    # Box of the mask; for the empty one the argmax cell (0, 0) scaled to the patch.
    assert boxes.tolist() == [[2, 2, 4, 4], [0, 0, 2, 2]]


def test_empty_mask_box_rounds_the_cell_outwards() -> None:
    # K = 4 of 8 positions: the threshold is 9, so input 1 (peak 2 at cell (0, 1)) has an empty mask.
    maps = torch.tensor([[[[9.0, 9.0], [9.0, 9.0]]], [[[0.0, 2.0], [0.0, 0.0]]]])
    topk = UnitTopK(1, top_n=2, quantile=0.5, total_positions=8)
    topk.update(maps, torch.tensor([0, 1]))
    masks, boxes = unit_masks(topk, 0, patch_side=5)
    assert not masks[1].any()
    assert boxes[1].tolist() == [2, 0, 5, 3]  # cell (h=0, w=1) of 2 on 5 px covers x [2.5, 5), y [0, 2.5)


def test_to_image_box() -> None:
    assert to_image_box(np.array([100, 200, 228, 328]), np.array([2, 2, 4, 4])).tolist() == [102, 202, 104, 204]
    both = to_image_box(np.array([[0, 0, 8, 8], [10, 20, 18, 28]]), np.array([[1, 2, 3, 4], [0, 0, 8, 8]]))
    assert both.tolist() == [[1, 2, 3, 4], [10, 20, 18, 28]]
    # A 128-px patch fed to the network at 64 px: boxes scale by 2.
    assert to_image_box(np.array([100, 200, 228, 328]), np.array([2, 2, 4, 4]), patch_side=64).tolist() == [
        104,
        204,
        108,
        208,
    ]


def test_heat_tiles_scale_responses_to_the_units_peak():
    responses = torch.tensor([[[0.0, 2.0], [4.0, -1.0]]])
    tiles = heat_tiles(responses, peak=4.0)
    assert tiles.dtype == np.uint8
    assert tiles.tolist() == [[[0, 128], [255, 0]]]
    assert heat_tiles(responses, peak=0.0).tolist() == [[[0, 0], [0, 0]]]


def test_unit_masks_threshold_the_same_responses_heat_tiles_colour():
    acts = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])  # (N=2, U=1, 2, 2)
    topk = stream(acts, torch.arange(2), batch_size=2, top_n=2, quantile=0.25)  # threshold: top 2 of 8 values
    responses = unit_responses(topk, 0, 4)
    assert responses.shape == (2, 4, 4)
    masks, _ = unit_masks(topk, 0, 4)
    given, _ = unit_masks(topk, 0, 4, responses=responses)
    assert np.array_equal(masks, given)
    assert np.array_equal(masks, (responses > topk.thresholds()[0]).numpy())
    assert 0 < masks.sum() < masks.size  # the threshold (2.0) splits the first map
