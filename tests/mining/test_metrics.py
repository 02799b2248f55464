"""mining.metrics: hand-computed AUC / pAUC / DOR values, edge cases and a self-consistent evaluation report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from mining.metrics import (
    _cumulative_counts,
    _resampled_aucs,
    _sorted_negatives,
    age_band,
    auc_ci,
    confusion_matrix,
    diagnostic_odds_ratio,
    evaluate,
    mean_probability_by_true_class,
    one_vs_rest_auc,
    operating_point_metrics,
    partial_auc,
    partial_auc_above,
    rank_auc,
    roc_points,
)

CLASSES = ("normal", "benign", "malignant")

# Six cases worked by hand below. argmax: rows 0, 1 (a 0.4 / 0.4 tie -> first class), 2 -> normal; 3 -> benign;
# 4, 5 -> malignant.
TINY_Y = np.array([0, 0, 1, 1, 2, 2])
TINY_P = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.4, 0.4, 0.2],
        [0.5, 0.3, 0.2],
        [0.2, 0.6, 0.2],
        [0.1, 0.3, 0.6],
        [0.3, 0.2, 0.5],
    ]
)


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-6)


def synthetic(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 3-class problem with some signal: softmax of noise plus a bump on the true class."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


# ------------------------------------------------------------------------------------------ partial AUC
# partial_auc is DeepMiner's pAUC @ TPR t: (1 - t) · ∫ TPR dFPR from where the ROC curve reaches t to FPR = 1.
# partial_auc_above is the area above the level: ∫ max(TPR - t, 0) dFPR.

# 5 positives, 3 negatives, no ties. Descending scores: P .9, P .8, N .7, P .6, P .5, N .3, P .2, N .1, so the ROC
# vertices are (0,0) (0,.4) (1/3,.4) (1/3,.8) (2/3,.8) (2/3,1) (1,1). A vertex lies on TPR = 0.8 at FPR 1/3.
VERTEX_Y = [1, 1, 1, 1, 1, 0, 0, 0]
VERTEX_S = [0.9, 0.8, 0.6, 0.5, 0.2, 0.7, 0.3, 0.1]
# 4 positives, 2 negatives; one positive ties a negative at 0.5. ROC: (0,0) (0,0.75) (0.5,1) (1,1): the segment
# (0,.75)-(.5,1) is TPR = 0.75 + 0.5·FPR and crosses 0.8 at FPR = 0.1, between two vertices.
CROSSING_Y = [1, 1, 1, 1, 0, 0]
CROSSING_S = [0.9, 0.8, 0.7, 0.5, 0.5, 0.1]


def binormal(auc: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n negatives ~ N(0, 1) and n positives ~ N(d, 1) with d = √2 Φ⁻¹(auc), so the population AUC is ``auc``."""
    rng = np.random.default_rng(seed)
    d = np.sqrt(2) * norm.ppf(auc)
    y = np.r_[np.zeros(n, dtype=bool), np.ones(n, dtype=bool)]
    return y, np.r_[rng.normal(size=n), rng.normal(d, 1.0, size=n)]


def binormal_pauc(auc: float, t: float = 0.8) -> float:
    """DeepMiner pAUC of the binormal ROC curve TPR(f) = Φ(d + Φ⁻¹(f)), by numerical integration."""
    d = np.sqrt(2) * norm.ppf(auc)
    start = norm.cdf(norm.ppf(t) - d)  # the FPR where TPR = t
    area, _ = quad(lambda f: norm.cdf(d + norm.ppf(f)), start, 1.0, epsabs=1e-12)
    return (1 - t) * area


def test_partial_auc_hand_example_with_a_vertex_on_the_level() -> None:
    # From (1/3, .8): the flat (1/3 .. 2/3, .8) gives 0.8/3, the vertical step nothing, the flat (2/3 .. 1, 1)
    # gives 1/3: area 1.8/3 = 0.6, times 1 - 0.8 -> 0.12. Both start rules agree: the level is a vertex.
    assert partial_auc(VERTEX_Y, VERTEX_S) == approx(0.12)
    assert partial_auc(VERTEX_Y, VERTEX_S, interpolate=False) == approx(0.12)
    # The area above 0.8 is only the strip (2/3 .. 1) x (.8 .. 1): 0.2/3.
    assert partial_auc_above(VERTEX_Y, VERTEX_S) == approx(0.2 / 3)
    # min_tpr = 0 is the full AUC: pairs won 3 + 3 + 2 + 2 + 1 = 11 of 15.
    assert partial_auc(VERTEX_Y, VERTEX_S, min_tpr=0.0) == approx(11 / 15) == approx(roc_auc_score(VERTEX_Y, VERTEX_S))
    # min_tpr = 0.4: the curve reaches 0.4 at FPR 0, area = AUC = 11/15, times 0.6.
    assert partial_auc(VERTEX_Y, VERTEX_S, min_tpr=0.4) == approx(0.6 * 11 / 15)


def test_partial_auc_hand_example_cuts_the_crossing_segment_exactly() -> None:
    # From the crossing (0.1, 0.8): the trapezoid to (0.5, 1) is 0.4·(0.8 + 1)/2 = 0.36, the flat to (1, 1) 0.5:
    # area 0.86, times 0.2 -> 0.172.
    assert partial_auc(CROSSING_Y, CROSSING_S) == approx(0.172)
    # The reference code starts at the first vertex with TPR >= 0.8, (0.5, 1): area 0.5, times 0.2 -> 0.1.
    assert partial_auc(CROSSING_Y, CROSSING_S, interpolate=False) == approx(0.1)
    # Above the level: the triangle 0.5·0.4·0.2 = 0.04 plus the rectangle 0.5·0.2 = 0.1 -> 0.14.
    assert partial_auc_above(CROSSING_Y, CROSSING_S) == approx(0.14)
    # At TPR >= 0.5 the curve is there from FPR 0: the whole AUC (3·2 + 0.5 + 1) / 8, times 0.5.
    assert partial_auc(CROSSING_Y, CROSSING_S, min_tpr=0.5) == approx(0.5 * 0.9375)
    # Above 0.5: ∫_0^0.5 (0.25 + 0.5x) dx = 0.1875, plus 0.5·0.5 = 0.25 -> 0.4375; min_tpr = 0 is the AUC.
    assert partial_auc_above(CROSSING_Y, CROSSING_S, min_tpr=0.5) == approx(0.4375)
    assert partial_auc_above(CROSSING_Y, CROSSING_S, min_tpr=0.0) == approx(0.9375)


def test_partial_auc_of_a_perfect_classifier_is_one_minus_the_level() -> None:
    # ROC (0,0) (0,1) (1,1): the whole unit square from FPR 0, times 0.2; above 0.8 it is the 1 x 0.2 strip.
    for interpolate in (True, False):
        assert partial_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], interpolate=interpolate) == approx(0.2)
    assert partial_auc_above([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == approx(0.2)


def test_partial_auc_of_the_chance_diagonal() -> None:
    # All scores tied: the ROC curve is the single segment (0,0)-(1,1), crossing 0.8 at FPR 0.8.
    # DeepMiner: 0.2 · ∫_{0.8}^{1} x dx = 0.2 · 0.18 = 0.036; above: ∫_{0.8}^{1} (x - 0.8) dx = 0.02.
    y, s = [0, 1, 0, 1, 1], [0.5] * 5
    assert partial_auc(y, s) == approx(0.036)
    assert partial_auc_above(y, s) == approx(0.02)
    # The only vertex with TPR >= 0.8 is (1, 1), so the reference rule integrates nothing.
    assert partial_auc(y, s, interpolate=False) == approx(0.0)


def test_partial_auc_of_an_inverted_classifier_is_zero() -> None:
    # ROC (0,0) (1,0) (1,1): TPR reaches 0.8 only at FPR 1.
    assert partial_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == approx(0.0)
    assert partial_auc_above([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == approx(0.0)


def test_partial_auc_at_level_one_is_zero() -> None:
    assert partial_auc(CROSSING_Y, CROSSING_S, min_tpr=1.0) == approx(0.0)
    assert partial_auc_above(CROSSING_Y, CROSSING_S, min_tpr=1.0) == approx(0.0)


def test_partial_auc_reference_rule_is_the_trapezoid_over_the_vertices_at_or_above_the_level() -> None:
    rng = np.random.default_rng(7)
    y = rng.random(500) < 0.3
    s = np.round(rng.normal(size=500) + 1.2 * y, 1)  # ties make diagonal segments, so the crossing is rarely a vertex
    fpr, tpr, _ = roc_curve(y, s)
    kept = tpr >= 0.8
    assert partial_auc(y, s, interpolate=False) == approx(0.2 * np.trapezoid(tpr[kept], fpr[kept]))
    # Starting at the crossing adds the piece of the crossing segment below the first vertex, never removes area.
    exact, reference = partial_auc(y, s), partial_auc(y, s, interpolate=False)
    assert exact is not None and reference is not None and exact > reference  # 0.1066 vs 0.0983 here


def brute_force_roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score used as the threshold ``s >= t``, highest first, from (0, 0)."""
    y = np.asarray(y, dtype=bool)
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]
    tpr = np.array([(s[y] >= t).mean() for t in thresholds])
    fpr = np.array([(s[~y] >= t).mean() for t in thresholds])
    return fpr, tpr


def test_partial_auc_agrees_with_numerical_integration_on_random_scores() -> None:
    rng = np.random.default_rng(4)
    y = rng.random(400) < 0.4
    s = np.round(rng.normal(size=400) + y, 1)  # rounding makes ties, i.e. diagonal ROC segments
    fpr, tpr = brute_force_roc(y, s)  # every threshold, not the sklearn call the product makes
    grid = np.linspace(0, 1, 400_001)
    # np.interp picks one end of a vertical segment, which changes nothing under the integral; the step of
    # the indicator at the crossing costs at most one grid cell (2.5e-6).
    curve = np.interp(grid, fpr, tpr)
    assert partial_auc(y, s) == pytest.approx(0.2 * np.trapezoid(np.where(curve >= 0.8, curve, 0), grid), abs=1e-5)
    assert partial_auc_above(y, s) == pytest.approx(np.trapezoid(np.maximum(curve - 0.8, 0), grid), abs=1e-5)
    assert partial_auc(y, s, min_tpr=0.0) == approx(roc_auc_score(y, s))
    assert partial_auc_above(y, s, min_tpr=0.0) == approx(roc_auc_score(y, s))


def test_partial_auc_matches_the_binormal_roc_curve_on_a_large_sample() -> None:
    # 200k scores per class, population AUC 0.838 (DeepMiner's normal class). By numerical integration the
    # binormal curve's DeepMiner pAUC is 0.133767. The estimate's standard deviation at this n is about 3e-4
    # (delta method 2.9e-4; 3.4e-4 over 40 seeds), so 1.5e-3 is 5 SD; the two start rules differ by O(1/n).
    expected = binormal_pauc(0.838)
    assert expected == pytest.approx(0.133767, abs=1e-6)
    y, s = binormal(0.838, 200_000, seed=0)
    assert roc_auc_score(y, s) == pytest.approx(0.838, abs=3e-3)  # SE of the AUC here: 6e-4
    assert partial_auc(y, s) == pytest.approx(expected, abs=1.5e-3)
    assert partial_auc(y, s, interpolate=False) == pytest.approx(partial_auc(y, s), abs=1e-5)


@pytest.mark.parametrize(("auc", "paper"), [(0.802, 0.121), (0.838, 0.133), (0.872, 0.144)])
def test_partial_auc_reproduces_the_papers_figures_on_binormal_curves(auc: float, paper: float) -> None:
    # DeepMiner reports pAUC 0.121 / 0.133 / 0.144 at AUCs 0.802 / 0.838 / 0.872. Binormal curves with those AUCs
    # give 0.1198 / 0.1338 / 0.1477: within 0.004 of the paper (its curves are not exactly binormal), while the
    # area above TPR 0.8 gives 0.087 / 0.101 / 0.116, 21-28% lower.
    expected = binormal_pauc(auc)
    assert expected == pytest.approx(paper, abs=4e-3)
    y, s = binormal(auc, 50_000, seed=1)  # SD of the estimate at this n ~ 7e-4 (twice that at 200k), 5 SD = 3.5e-3
    assert partial_auc(y, s) == pytest.approx(expected, abs=3.5e-3)
    above = partial_auc_above(y, s)
    assert above is not None and above < paper - 0.02


def test_partial_auc_is_none_for_one_class_and_rejects_bad_input() -> None:
    for metric in (partial_auc, partial_auc_above):
        assert metric([1, 1, 1], [0.1, 0.2, 0.3]) is None
        assert metric([0, 0], [0.1, 0.2]) is None
        with pytest.raises(ValueError, match="min_tpr"):
            metric([0, 1], [0.1, 0.2], min_tpr=1.5)
        with pytest.raises(ValueError, match="min_tpr"):
            metric([0, 1], [0.1, 0.2], min_tpr=-0.1)
        with pytest.raises(ValueError, match="0/1"):
            metric([0, 2], [0.1, 0.2])
        with pytest.raises(ValueError, match="finite"):
            metric([0, 1], [0.1, float("nan")])


# ------------------------------------------------------------------------------------------ ROC points


def test_roc_points_keep_a_short_curve_as_sklearn_gives_it() -> None:
    y, s = [1, 1, 1, 1, 0, 0], [0.9, 0.8, 0.7, 0.5, 0.5, 0.1]
    # By hand: thresholds 0.9, 0.8, 0.7 add positives on the FPR-0 axis (sklearn drops the middle one of
    # those collinear vertices), the tie at 0.5 adds a positive and a negative at once, 0.1 the last negative.
    assert roc_points(y, s) == {"fpr": [0.0, 0.0, 0.0, 0.5, 1.0], "tpr": [0.0, 0.25, 0.75, 1.0, 1.0]}


def test_roc_points_thin_a_long_curve_keeping_both_ends_and_order() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.3
    s = rng.normal(size=5000) + y
    points = roc_points(y, s, max_points=50)
    fpr, tpr = np.array(points["fpr"]), np.array(points["tpr"])
    assert 40 <= fpr.size <= 50
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    # Thinning along the curve: no gap between kept points is large.
    assert np.abs(np.diff(fpr) + np.diff(tpr)).max() < 0.1


def test_roc_points_are_empty_for_one_class() -> None:
    assert roc_points([0, 0], [0.1, 0.2]) == {"fpr": [], "tpr": []}
    with pytest.raises(ValueError, match="max_points"):
        roc_points([0, 1], [0.1, 0.2], max_points=1)


# ----------------------------------------------------------------------------------- AUC and its CI


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_rank_auc_equals_sklearn_with_and_without_ties(decimals: int | None) -> None:
    rng = np.random.default_rng(decimals or 7)
    y = rng.random(300) < 0.35
    s = rng.normal(size=300) + 0.8 * y
    if decimals is not None:
        s = np.round(s, decimals)
    assert rank_auc(y, s) == approx(roc_auc_score(y, s))


def test_rank_auc_hand_value_and_one_class() -> None:
    # Positives 0.3, 0.6 against negatives 0.2, 0.4, 0.3, 0.2: 0.6 beats 4; 0.3 beats 2 and ties 1 -> 6.5 / 8.
    assert rank_auc([1, 1, 0, 0, 0, 0], [0.3, 0.6, 0.2, 0.4, 0.3, 0.2]) == approx(0.8125)
    assert rank_auc([0, 0], [0.3, 0.6]) is None


def test_vectorised_bootstrap_equals_sklearn_on_the_same_resamples() -> None:
    rng = np.random.default_rng(3)
    pos, neg = np.round(rng.normal(1, 1, 40), 1), np.round(rng.normal(0, 1, 60), 1)
    neg_sorted, lo, hi = _sorted_negatives(pos, neg)
    neg_idx, pos_idx = rng.integers(0, 60, (5, 60)), rng.integers(0, 40, (5, 40))
    fast = _resampled_aucs(_cumulative_counts(neg_idx, 60), lo, hi, pos_idx)
    for b in range(5):
        scores = np.concatenate([pos[pos_idx[b]], neg_sorted[neg_idx[b]]])
        labels = np.r_[np.ones(40), np.zeros(60)]
        assert fast[b] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_ci_brackets_the_auc_and_is_seeded_on_5k_samples() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.3
    s = rng.normal(size=5000) + y
    low, high = auc_ci(y, s, n_boot=500, seed=0)  # its speed is timed in bench/generators.py
    auc = roc_auc_score(y, s)
    assert low is not None and high is not None
    assert low < auc < high
    # SE of an AUC ~0.76 with 1500 / 3500 cases is ~0.007, so the 95% interval is ~0.03 wide.
    assert 0.015 < high - low < 0.05
    assert auc_ci(y, s, n_boot=500, seed=0) == (low, high)
    assert auc_ci(y, s, n_boot=500, seed=1) != (low, high)


def test_auc_ci_edge_cases() -> None:
    assert auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (1.0, 1.0)  # every resample stays separated
    assert auc_ci([1, 1, 1], [0.1, 0.2, 0.3]) == (None, None)
    assert auc_ci([0, 1, 0, 1], [0.5] * 4) == (0.5, 0.5)


def test_one_vs_rest_auc_hand_values() -> None:
    # normal: positives 0.7, 0.4 vs 0.5, 0.2, 0.1, 0.3 -> 7/8; benign as in rank_auc above; malignant separated.
    assert one_vs_rest_auc(TINY_Y, TINY_P, CLASSES) == {"normal": 0.875, "benign": 0.8125, "malignant": 1.0}


def test_one_vs_rest_auc_is_none_for_an_absent_or_only_class() -> None:
    absent = one_vs_rest_auc(TINY_Y[:4], TINY_P[:4], CLASSES)
    assert absent["malignant"] is None and absent["normal"] is not None
    assert one_vs_rest_auc(np.array([1, 1]), TINY_P[:2], CLASSES) == dict.fromkeys(CLASSES)


# -------------------------------------------------------------------------------------- operating point


def test_operating_point_metrics_hand_computed() -> None:
    # TP=40, FN=10, FP=5, TN=45. DOR = 40·45 / (5·10) = 36;
    # SE(ln DOR) = sqrt(1/40 + 1/45 + 1/5 + 1/10) = sqrt(0.3472222) = 0.5892557;
    # CI = exp(3.5835189 ∓ 1.96·0.5892557) = exp(2.4285778), exp(4.7384600) = 11.342740, 114.258110.
    y = [1] * 50 + [0] * 50
    predicted = [1] * 40 + [0] * 10 + [1] * 5 + [0] * 45
    m = operating_point_metrics(y, predicted)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (40, 10, 5, 45)
    assert m["sensitivity"] == approx(0.8)
    assert m["specificity"] == approx(0.9)
    assert m["accuracy"] == approx(0.85)
    assert m["f1"] == approx(80 / 95)
    assert m["ppv"] == approx(40 / 45)
    assert m["npv"] == approx(45 / 55)
    assert m["dor"] == approx(36.0)
    assert m["dor_ci_low"] == approx(11.342740)
    assert m["dor_ci_high"] == approx(114.258110)


def test_zero_cell_uses_haldane_correction_for_dor_only() -> None:
    # TP=10, FN=0, FP=2, TN=8 -> cells 10.5, 0.5, 2.5, 8.5: DOR = 89.25 / 1.25 = 71.4,
    # SE = sqrt(1/10.5 + 1/0.5 + 1/2.5 + 1/8.5) = 1.6164421 -> CI exp(ln 71.4 ∓ 3.1682266) = 3.004380, 1696.842484.
    m = operating_point_metrics([1] * 10 + [0] * 10, [1] * 10 + [1] * 2 + [0] * 8)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (10, 0, 2, 8)  # raw counts, uncorrected
    assert m["sensitivity"] == 1.0
    assert m["dor"] == approx(71.4)
    assert m["dor_ci_low"] == approx(3.004380)
    assert m["dor_ci_high"] == approx(1696.842484)


def test_dor_undefined_without_positives_or_negatives() -> None:
    m = operating_point_metrics([0, 0, 0], [0, 1, 0])
    assert m["sensitivity"] is None and m["specificity"] == approx(2 / 3)
    assert (m["dor"], m["dor_ci_low"], m["dor_ci_high"]) == (None, None, None)
    assert diagnostic_odds_ratio(tp=3, fp=0, tn=0, fn=0)["dor"] is None


def test_no_positive_decisions_leave_ppv_undefined() -> None:
    m = operating_point_metrics([1, 0, 1, 0], [0, 0, 0, 0])
    assert m["ppv"] is None and m["f1"] == 0.0 and m["npv"] == 0.5
    assert m["dor"] == approx((0.5 * 2.5) / (0.5 * 2.5))  # all of TP, FP are 0 -> corrected, DOR 1


def test_confusion_matrix_rows_are_true_classes() -> None:
    assert confusion_matrix([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 2, 2], 3) == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    assert confusion_matrix([], [], 2) == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_mean_probability_by_true_class_hand_values_and_absent_class() -> None:
    result = mean_probability_by_true_class(TINY_Y, TINY_P, CLASSES)
    assert result["normal"] == {"normal": 0.55, "benign": 0.3, "malignant": 0.15}
    assert result["benign"] == {"normal": 0.35, "benign": 0.45, "malignant": 0.2}
    assert result["malignant"] == {"normal": 0.2, "benign": 0.25, "malignant": 0.55}
    absent = mean_probability_by_true_class(TINY_Y[:2], TINY_P[:2], CLASSES)
    assert absent["benign"] == dict.fromkeys(CLASSES)


# ---------------------------------------------------------------------------------------------- report


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (0, "<40"),
        (39.9, "<40"),
        (40, "40-49"),
        (49.99, "40-49"),
        (50, "50-59"),
        (69, "60-69"),
        (70, "70+"),
        (101, "70+"),
        ("55", "50-59"),
    ],
)
def test_age_band_boundaries(age: float, band: str) -> None:
    assert age_band(age) == band


@pytest.mark.parametrize("age", [-1, float("nan"), "old"])
def test_age_band_rejects_non_ages(age: object) -> None:
    with pytest.raises(ValueError):
        age_band(age)  # type: ignore[arg-type]


def test_evaluate_tiny_report_matches_hand_values() -> None:
    report = evaluate(TINY_Y, TINY_P, CLASSES)
    assert report["n"] == 6
    assert report["class_counts"] == {"normal": 2, "benign": 2, "malignant": 2}
    assert report["accuracy"] == approx(5 / 6)
    assert report["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    normal = report["per_class"]["normal"]
    # Decision "argmax == normal" on rows 0, 1, 2: TP=2, FP=1, TN=3, FN=0; Haldane DOR = 2.5·3.5 / (1.5·0.5).
    assert (normal["tp"], normal["fp"], normal["tn"], normal["fn"]) == (2, 1, 3, 0)
    assert (normal["sensitivity"], normal["specificity"], normal["f1"]) == (1.0, 0.75, 0.8)
    assert normal["dor"] == approx(8.75 / 0.75)
    # pAUC by hand. Normal ROC (0,.5) (.25,.5) (.25,1) (1,1) reaches 0.8 on the vertical step at FPR .25:
    # area 0.75, DeepMiner 0.2·0.75 = 0.15, above 0.8 also 0.75·0.2. Benign ROC (0,.5) (.25,.5) (.5,1) (1,1)
    # crosses 0.8 at FPR 0.4: area 0.1·(0.8 + 1)/2 + 0.5 = 0.59 -> 0.118; above: 0.5·0.1·0.2 + 0.5·0.2 = 0.11.
    # Malignant is perfect: 0.2 both ways.
    assert [report["per_class"][c]["pauc"] for c in CLASSES] == [approx(0.15), approx(0.118), approx(0.2)]
    assert [report["per_class"][c]["pauc_above"] for c in CLASSES] == [approx(0.15), approx(0.11), approx(0.2)]
    assert [report["per_class"][c]["auc"] for c in CLASSES] == [0.875, 0.8125, 1.0]
    assert report["breakdown"] == {}


def test_evaluate_synthetic_report_is_internally_consistent_and_json_ready() -> None:
    y, probs = synthetic()
    rng = np.random.default_rng(1)
    metadata = [{"view": str(rng.choice(["CC", "MLO"])), "age": float(rng.integers(30, 90))} for _ in y]
    metadata[0] = {"view": None, "age": None}
    report = evaluate(y, probs, CLASSES, metadata=metadata, n_boot=200)
    json.dumps(report, allow_nan=False)

    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == report["n"] == 300
    assert cm.sum(axis=1).tolist() == list(report["class_counts"].values())
    assert report["accuracy"] == approx(np.trace(cm) / cm.sum())
    for c, name in enumerate(CLASSES):
        section = report["per_class"][name]
        tp, fn, fp = cm[c, c], cm[c].sum() - cm[c, c], cm[:, c].sum() - cm[c, c]
        assert (section["tp"], section["fn"], section["fp"]) == (tp, fn, fp)
        assert section["tn"] == cm.sum() - tp - fn - fp
        assert section["sensitivity"] == approx(tp / (tp + fn))
        assert section["ppv"] == approx(tp / (tp + fp))
        assert section["auc"] == approx(roc_auc_score(np.asarray(y) == c, np.asarray(probs)[:, c]))
        assert section["auc_ci_low"] < section["auc"] < section["auc_ci_high"]
        assert 0.0 < section["pauc_above"] < section["pauc"] < 0.2
        assert section["roc"]["fpr"][0] == 0.0 and section["roc"]["tpr"][-1] == 1.0
        means = report["mean_probability_by_true_class"][name]
        assert sum(means.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(means, key=means.__getitem__) == name  # the synthetic model has signal on every class

    views = report["breakdown"]["view"]
    assert list(views) == ["CC", "MLO", "unknown"]
    assert sum(g["n"] for g in views.values()) == 300
    # The one image without a view: accuracy 1 or 0 as its argmax is right, and no AUC from a single case.
    alone = float(np.argmax(probs[0]) == y[0])
    assert views["unknown"] == {"n": 1, "accuracy": alone, "auc": dict.fromkeys(CLASSES)}
    bands = report["breakdown"]["age_band"]
    assert list(bands) == ["<40", "40-49", "50-59", "60-69", "70+", "unknown"]
    assert all("age_band" not in m for m in metadata)  # derived on copies


def test_evaluate_when_every_prediction_is_one_class() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.tile([0.6, 0.3, 0.1], (6, 1))
    report = evaluate(y, probs, CLASSES)
    assert report["confusion_matrix"] == [[2, 0, 0], [2, 0, 0], [2, 0, 0]]
    benign = report["per_class"]["benign"]
    assert (benign["tp"], benign["fp"], benign["sensitivity"], benign["ppv"]) == (0, 0, 0.0, None)
    assert benign["auc"] == 0.5  # constant scores: the chance diagonal
    assert (benign["pauc"], benign["pauc_above"]) == (approx(0.036), approx(0.02))
    assert report["per_class"]["normal"]["specificity"] == 0.0


def test_evaluate_with_an_absent_class_and_a_threshold_decision() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.15, 0.05], [0.5, 0.1, 0.4], [0.3, 0.6, 0.1], [0.45, 0.35, 0.2]])
    report = evaluate(y, probs, CLASSES, metadata=[{"view": "CC"}] * 4, positive_threshold=0.3)
    malignant = report["per_class"]["malignant"]
    assert malignant["auc"] is None and malignant["pauc"] is None and malignant["pauc_above"] is None
    assert malignant["roc"] == {"fpr": [], "tpr": []}
    assert (malignant["auc_ci_low"], malignant["auc_ci_high"]) == (None, None)
    assert malignant["fp"] == 1 and malignant["dor"] is None  # row 1 has p(malignant) = 0.4 >= 0.3
    benign = report["per_class"]["benign"]
    assert (benign["tp"], benign["fp"]) == (2, 0)  # 0.6 and 0.35 pass the threshold; argmax would take one
    assert report["breakdown"] == {
        # Every normal and benign positive outscores every negative of its class; no malignant case at all.
        "view": {"CC": {"n": 4, "accuracy": 0.75, "auc": {"normal": 1.0, "benign": 1.0, "malignant": None}}}
    }
    assert "age_band" not in report["breakdown"]


def test_evaluate_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="metadata"):
        evaluate(TINY_Y, TINY_P, CLASSES, metadata=[{}])
    with pytest.raises(ValueError, match="probs"):
        evaluate(TINY_Y, TINY_P[:, :2], CLASSES)
    with pytest.raises(ValueError, match="class indices"):
        evaluate(np.array([0, 3]), TINY_P[:2], CLASSES)
