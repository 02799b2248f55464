"""mining.dissection: IoU of a unit's masks with concept masks, summed over inputs, by hand; and the
second pass's tally over a whole split, against that definition written out."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mining.dissection import ConceptIoUTally, best_concept, concept_iou

# Two inputs of 2 x 2 pixels. The unit fires on the top row of input 0 only.
UNIT = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)


def test_concept_iou_sums_intersections_and_unions_over_inputs() -> None:
    concepts = {
        # input 0: |M and L| = 1, |M or L| = 2; input 1: 0 and 1 -> 1 / 3 (a per-input mean would give 0.25)
        "mass": np.array([[[1, 0], [0, 0]], [[0, 0], [1, 0]]], dtype=bool),
        "calcification": np.zeros((2, 2, 2), dtype=bool),  # 0 / 2
        "skin": UNIT.copy(),  # identical masks: 2 / 2
    }
    assert concept_iou(UNIT, concepts) == {"mass": pytest.approx(1 / 3), "calcification": 0.0, "skin": 1.0}


def test_zero_union_gives_zero() -> None:
    empty = np.zeros((3, 4, 4), dtype=bool)
    assert concept_iou(empty, {"mass": empty}) == {"mass": 0.0}


def test_concept_iou_checks_shapes() -> None:
    with pytest.raises(ValueError):
        concept_iou(UNIT, {"mass": np.zeros((1, 2, 2), dtype=bool)})


def test_concept_iou_equals_a_loop_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    unit = rng.random((5, 16, 16)) > 0.7
    concepts = {code: rng.random((5, 16, 16)) > p for code, p in (("a", 0.5), ("b", 0.9))}
    got = concept_iou(unit, concepts)
    for code, masks in concepts.items():
        inter = sum(int((u & m).sum()) for u, m in zip(unit, masks, strict=True))
        union = sum(int((u | m).sum()) for u, m in zip(unit, masks, strict=True))
        assert got[code] == pytest.approx(inter / union, abs=0)


def test_best_concept() -> None:
    assert best_concept({"mass": 1 / 3, "calcification": 0.0, "skin": 0.5}) == ("skin", 0.5)
    assert best_concept({"mass": 0.2, "skin": 0.2}) == ("mass", 0.2)  # first among equals
    assert best_concept({"mass": 0.0}) == (None, 0.0)
    assert best_concept({}) == (None, 0.0)


def _brute_force(features: torch.Tensor, thresholds: torch.Tensor, concepts: list, side: int) -> dict[str, np.ndarray]:
    up = F.interpolate(features, size=(side, side), mode="bilinear", align_corners=False)
    masks = (up > thresholds.view(1, -1, 1, 1)).numpy()
    codes = sorted({code for patch in concepts for code in patch})
    empty = np.zeros((side, side), dtype=bool)
    stacks = {code: np.stack([patch.get(code, empty) for patch in concepts]) for code in codes}
    per_unit = [concept_iou(masks[:, u], stacks) for u in range(features.shape[1])]
    return {code: np.array([ious[code] for ious in per_unit]) for code in codes}


def _random_split(n: int, units: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    gen = torch.Generator().manual_seed(seed)
    features = torch.rand(n, units, 4, 4, generator=gen) ** 3
    thresholds = torch.quantile(features.permute(1, 0, 2, 3).reshape(units, -1), 0.95, dim=1)
    rng = np.random.default_rng(seed)
    concepts = [{c: rng.random((side, side)) > 0.7 for c in ("mass", "skin") if rng.random() < 0.4} for _ in range(n)]
    return features, thresholds, concepts


def test_tally_over_batches_equals_the_definition_over_every_input() -> None:
    features, thresholds, concepts = _random_split(50, 7, 16, seed=1)
    tally = ConceptIoUTally(thresholds, 16)
    for start in range(0, 50, 13):
        tally.update(features[start : start + 13], concepts[start : start + 13])
    expected = _brute_force(features, thresholds, concepts, 16)
    got = tally.ious()
    assert sorted(got) == sorted(expected)
    for code in expected:
        np.testing.assert_allclose(got[code], expected[code], rtol=0, atol=1e-12)


def test_shards_and_state_dict_merge_exactly() -> None:
    features, thresholds, concepts = _random_split(40, 5, 8, seed=2)
    whole = ConceptIoUTally(thresholds, 8)
    whole.update(features, concepts)
    first, second = ConceptIoUTally(thresholds, 8), ConceptIoUTally(thresholds, 8)
    first.update(features[:17], concepts[:17])
    second.update(features[17:], concepts[17:])
    buffer = io.BytesIO()
    torch.save(second.state_dict(), buffer)
    first.merge(ConceptIoUTally.from_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)))
    for code, ious in whole.ious().items():
        np.testing.assert_array_equal(first.ious()[code], ious)
    with pytest.raises(ValueError):
        first.merge(ConceptIoUTally(thresholds + 1, 8))


def test_a_unit_that_outlines_a_concept_on_its_top_inputs_only_scores_low() -> None:
    """The unit fires exactly on the concept in 2 inputs, and on empty tissue in 18 others where the
    concept is absent, while the concept also appears in 20 inputs where the unit is silent: over its top
    inputs alone its IoU would be 1.0; over the split it is 2 outlines / everything."""
    side, hot = 4, torch.zeros(1, 1, 4, 4)
    hot[..., :2, :2] = 10.0
    features = torch.zeros(40, 1, 4, 4)
    concepts: list[dict[str, np.ndarray]] = [{} for _ in range(40)]
    outline = (F.interpolate(hot, size=(side, side), mode="bilinear", align_corners=False)[0, 0] > 1.0).numpy()
    for i in range(20):
        features[i] = hot[0]  # the unit fires on inputs 0..19
    for i in (0, 1, *range(20, 40)):
        concepts[i] = {"mass": outline.copy()}  # the concept is on 0, 1 and 20..39
    tally = ConceptIoUTally(torch.tensor([1.0]), side)
    tally.update(features, concepts)
    area = int(outline.sum())
    assert tally.ious()["mass"][0] == pytest.approx(2 * area / (20 * area + 20 * area))
    assert tally.ious()["mass"][0] < 0.1
    top_only = concept_iou(np.stack([outline, outline]), {"mass": np.stack([outline, outline])})
    assert top_only["mass"] == 1.0


def test_maps_at_or_below_threshold_are_not_upsampled_yet_count_nothing() -> None:
    """The sparse path skips maps whose maximum is <= threshold: their bilinear upsampling is never above it."""
    features = torch.full((3, 2, 4, 4), 0.5)
    features[0, 1, 1, 1] = 2.0
    tally = ConceptIoUTally(torch.tensor([0.5, 1.0]), 8)
    tally.update(features, [{"x": np.ones((8, 8), dtype=bool)}, {}, {}])
    expected = _brute_force(features, torch.tensor([0.5, 1.0]), [{"x": np.ones((8, 8), dtype=bool)}, {}, {}], 8)
    np.testing.assert_array_equal(tally.ious()["x"], expected["x"])
    assert tally.unit_area[0] == 0
