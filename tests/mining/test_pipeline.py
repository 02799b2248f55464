"""Concept masks per patch, unit-concept IoU and sprites, with hand-made masks."""

from __future__ import annotations

import numpy as np

from mining.pipeline import mask_sprite, patch_concept_masks, unit_concept_ious


def test_patch_concept_masks_crop_merge_and_resize():
    mass = np.zeros((8, 8), dtype=bool)
    mass[2:4, 2:4] = True
    far = np.zeros((8, 8), dtype=bool)
    far[7, 7] = True
    found = patch_concept_masks([(mass, ["mass_shape.oval", "mass_margin.circumscribed"]), (far, ["x"])], (0, 0, 4, 4), 4)
    assert set(found) == {"mass_shape.oval", "mass_margin.circumscribed"}  # the far finding misses the patch
    assert found["mass_shape.oval"].sum() == 4 and found["mass_shape.oval"][2:4, 2:4].all()
    doubled = patch_concept_masks([(mass, ["m"])], (0, 0, 4, 4), 8)
    assert doubled["m"].shape == (8, 8) and doubled["m"].sum() == 16 and doubled["m"][4:8, 4:8].all()


def test_unit_concept_ious_sum_over_patches():
    unit = np.zeros((2, 4, 4), dtype=bool)
    unit[0, :2, :2] = True  # 4 px
    unit[1, :2, :] = True  # 8 px
    a = np.zeros((4, 4), dtype=bool)
    a[:2, :2] = True  # matches patch 0 exactly
    patches = [{"a": a}, {"b": np.ones((4, 4), dtype=bool)}]
    best, iou, top = unit_concept_ious(unit, patches)
    # a: intersection 4, union 4 + 8 = 12 -> 1/3; b: 8 / (4 + 16) = 0.4
    assert best == "b" and abs(iou - 0.4) < 1e-9
    assert top == {"b": 0.4, "a": 0.3333}
    assert unit_concept_ious(unit, [{}, {}]) == (None, 0.0, {})


def test_mask_sprite_places_rank_i_at_tile_i():
    masks = np.zeros((3, 2, 2), dtype=bool)
    masks[2, 1, 1] = True
    sheet = mask_sprite(masks, columns=2)
    assert sheet.shape == (4, 4)
    assert sheet.sum() == 1 and sheet[3, 1]  # tile 2 = row 1, column 0; its pixel (1, 1)
