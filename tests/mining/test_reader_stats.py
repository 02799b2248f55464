"""Reader-study statistics: arm means and ranges, reader means, and the paired Wilcoxon test against a hand
example and against scipy on the same pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from mining.reader_stats import Score, arm_summaries, paired_test, paired_tests, reader_means


def test_arm_summaries_give_mean_and_range_in_the_arms_order():
    scores = [Score("a", 1, "saliency", 2), Score("b", 1, "saliency", 6), Score("a", 2, "saliency", 5)]
    scores += [Score("a", 1, "both", 8), Score("b", 1, "both", 9)]
    summaries = arm_summaries(scores, ["saliency", "sentence", "both"])
    assert [s.arm for s in summaries] == ["saliency", "sentence", "both"]
    assert (summaries[0].n, summaries[0].mean, summaries[0].low, summaries[0].high) == (3, pytest.approx(13 / 3), 2, 6)
    assert (summaries[1].n, summaries[1].mean, summaries[1].low) == (0, None, None)
    assert (summaries[2].mean, summaries[2].low, summaries[2].high) == (8.5, 8, 9)


def test_reader_means_per_arm():
    scores = [Score("b", 1, "saliency", 4), Score("b", 2, "saliency", 6), Score("a", 1, "sentence", 7)]
    assert reader_means(scores, ["saliency", "sentence"]) == {
        "a": {"saliency": None, "sentence": 7.0},
        "b": {"saliency": 5.0, "sentence": None},
    }


def test_wilcoxon_hand_example():
    # Five pairs, every difference positive (1..5): W = min(W+, W-) = 0, and of the 2^5 equally likely sign
    # patterns only "all +" and "all -" are as extreme: p = 2/32 = 0.0625 (exact).
    scores = [Score("r", case, "both", 5 + case) for case in range(1, 6)]
    scores += [Score("r", case, "sentence", 5) for case in range(1, 6)]
    test = paired_test(scores, "both", "sentence")
    assert (test.pairs, test.statistic, test.mean_difference) == (5, 0.0, 3.0)
    assert test.p_value == pytest.approx(0.0625)


def test_wilcoxon_equals_scipy_on_the_same_pairs_and_pairs_by_reader_and_image():
    rng = np.random.default_rng(4)
    scores, x, y = [], [], []
    for reader in ("r1", "r2", "r3"):
        for case in range(12):
            a, b = int(rng.integers(1, 11)), int(rng.integers(1, 11))
            scores += [Score(reader, case, "saliency", a), Score(reader, case, "sentence", b)]
            x.append(a)
            y.append(b)
    scores.append(Score("r4", 99, "saliency", 10))  # unpaired: left out
    test = paired_test(scores, "saliency", "sentence")
    # The pairs in the test's (reader, case) order are the same multiset; scipy's answer does not depend on order.
    expected = wilcoxon(x, y)
    assert test.pairs == 36
    assert test.statistic == pytest.approx(float(expected.statistic))
    assert test.p_value == pytest.approx(float(expected.pvalue))


def test_nothing_to_test_says_why():
    assert paired_test([Score("r", 1, "a", 3)], "a", "b").note == "no reader scored both on the same image"
    alike = paired_test([Score("r", 1, "a", 3), Score("r", 1, "b", 3)], "a", "b")
    assert (alike.pairs, alike.p_value, alike.note) == (1, None, "every pair scored alike")


def test_paired_tests_compare_arms_within_each_scale_only():
    groups = {"1-10": ["saliency", "sentence", "both"], "1-5": ["generated", "expert"]}
    pairs = [(t.first, t.second) for t in paired_tests([], groups)]
    assert pairs == [("saliency", "sentence"), ("saliency", "both"), ("sentence", "both"), ("generated", "expert")]
