"""Tests for mining.agreement with hand-computed values, Fleiss' own example, and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mining.agreement import fleiss_kappa, percent_agreement, ratings_to_counts, unit_agreement

# Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 items, 14 raters, 5 categories.
FLEISS_1971 = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def test_fleiss_1971_example() -> None:
    assert (FLEISS_1971.sum(axis=1) == 14).all()
    # The page's intermediate values: P_bar = 0.378, p_j = 0.143 0.200 0.279 0.150 0.229, P_e = 0.213.
    assert percent_agreement(FLEISS_1971) == pytest.approx(0.378, abs=5e-4)
    assert fleiss_kappa(FLEISS_1971) == pytest.approx(0.210, abs=5e-4)


def test_perfect_agreement() -> None:
    counts = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]])
    assert fleiss_kappa(counts) == 1.0
    assert percent_agreement(counts) == 1.0


def test_agreement_at_chance_level_is_zero() -> None:
    # P_i = 1, 1, 0, 0 -> P_bar = 1/2; p = (1/2, 1/2) -> P_e = 1/2.
    counts = np.array([[2, 0], [0, 2], [1, 1], [1, 1]])
    assert percent_agreement(counts) == 0.5
    assert fleiss_kappa(counts) == pytest.approx(0.0, abs=1e-12)


def test_systematic_disagreement_is_negative() -> None:
    # Two raters always disagree: P_bar = 0, p = (1/2, 1/2), P_e = 1/2 -> kappa = -1.
    counts = np.array([[1, 1], [1, 1], [1, 1]])
    assert percent_agreement(counts) == 0.0
    assert fleiss_kappa(counts) == pytest.approx(-1.0)


def test_varying_number_of_raters() -> None:
    # Item 0: 3 raters agree, P = 1. Item 1: 1 vs 1, P = 0. Item 2: one rating only, left out entirely.
    # p = (4/5, 1/5) -> P_e = 0.68; kappa = (0.5 - 0.68) / 0.32 = -0.5625.
    counts = np.array([[3, 0], [1, 1], [0, 1]])
    assert percent_agreement(counts) == 0.5
    assert fleiss_kappa(counts) == pytest.approx(-0.5625)
    # Item with 4 raters split 3:1 -> P = (9 + 1 - 4) / 12 = 1/2.
    assert percent_agreement(np.array([[3, 1, 0]])) == 0.5


def test_two_raters_give_scotts_pi() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, 200)
    b = np.where(rng.random(200) < 0.6, a, rng.integers(0, 3, 200))
    counts = np.zeros((200, 3), dtype=int)
    np.add.at(counts, (np.arange(200), a), 1)
    np.add.at(counts, (np.arange(200), b), 1)
    p_o = np.mean(a == b)
    p_e = np.sum(((np.bincount(a, minlength=3) + np.bincount(b, minlength=3)) / 400) ** 2)
    assert fleiss_kappa(counts) == pytest.approx((p_o - p_e) / (1 - p_e))


def test_undefined_cases_are_nan() -> None:
    assert math.isnan(fleiss_kappa(np.array([[4, 0], [3, 0]])))  # one single category: P_e = 1
    assert math.isnan(fleiss_kappa(np.array([[1, 0], [0, 1]])))  # no item with two ratings
    assert math.isnan(fleiss_kappa(np.zeros((0, 3))))
    assert math.isnan(percent_agreement(np.array([[1, 0]])))
    assert percent_agreement(np.array([[4, 0], [3, 0]])) == 1.0  # agreement itself is defined


@pytest.mark.parametrize("bad", [np.array([1, 2]), np.array([[1, -1]]), np.array([[1.5, 1]])])
def test_bad_count_tables_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        fleiss_kappa(bad)


def test_ratings_to_counts() -> None:
    ratings = [["a", "b", "a"], ["c", None, "c", "c"], [None], []]
    counts = ratings_to_counts(ratings, ["a", "b", "c"])
    assert counts.dtype == np.int64
    assert counts.tolist() == [[2, 1, 0], [0, 0, 3], [0, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="'d'"):
        ratings_to_counts([["a", "d"]], ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        ratings_to_counts([["a"]], ["a", "a"])


def test_counts_from_ratings_match_the_fleiss_table() -> None:
    categories = ["1", "2", "3", "4", "5"]
    ratings = [[c for c, n in zip(categories, row, strict=True) for _ in range(n)] for row in FLEISS_1971]
    assert np.array_equal(ratings_to_counts(ratings, categories), FLEISS_1971)


def test_unit_agreement() -> None:
    assert unit_agreement(["mass", "mass", "mass"]) == 1.0
    assert unit_agreement(["mass", "calcification"]) == 0.0
    assert unit_agreement(["mass", "mass", "calcification"]) == pytest.approx(1 / 3)  # 1 of 3 pairs
    assert unit_agreement(["a", "a", "a", "b"]) == 0.5  # 3 of 6 pairs
    assert unit_agreement(["a", None, "a"]) == 1.0
    assert math.isnan(unit_agreement(["a"]))
    assert math.isnan(unit_agreement([]))


def test_unit_agreement_matches_percent_agreement() -> None:
    labels = ["x", "y", "x", "z", "x", "y"]
    counts = ratings_to_counts([labels], ["x", "y", "z"])
    assert unit_agreement(labels) == pytest.approx(percent_agreement(counts))
