"""mining.dissection: IoU of a unit's masks with concept masks, summed over inputs, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mining.dissection import best_concept, concept_iou

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
