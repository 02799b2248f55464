"""Evaluation of a C-class classifier: one-vs-rest AUROC with bootstrap CIs, partial AUC at TPR >= 0.8
(DeepMiner's pAUC), operating-point metrics with the diagnostic odds ratio, confusion matrix, ROC points for plotting,
label-frequency bias and breakdowns by metadata (view, age band).

A single AUROC hides clinically important differences (Valsson & Arandjelovic, "cxr-evaluation-pitfalls"):
two models with equal AUROC can trade sensitivity for specificity, so the report gives the operating
point, the DOR the regulators ask for, and per-subgroup numbers.

Inputs are numpy arrays: ``y_true`` int (N,) class indices, ``probs`` float (N, C) class probabilities,
``classes`` the C class names. Every public function returns plain JSON-ready values: Python ints,
floats rounded to 6 decimals, and ``None`` where a metric is undefined (never NaN or inf).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "AGE_BANDS",
    "age_band",
    "auc_ci",
    "confusion_matrix",
    "diagnostic_odds_ratio",
    "evaluate",
    "mean_probability_by_true_class",
    "one_vs_rest_auc",
    "operating_point_metrics",
    "partial_auc",
    "partial_auc_above",
    "rank_auc",
    "roc_points",
]

AGE_BANDS: tuple[str, ...] = ("<40", "40-49", "50-59", "60-69", "70+")
UNKNOWN = "unknown"
_Z95 = 1.96
# Bootstrap resamples are processed in chunks so memory stays ~ this many float64 cells, whatever N is.
_BOOT_CELLS = 4_000_000


# ---------------------------------------------------------------------------------------------- helpers


def _r(x: float | None) -> float | None:
    """Round to 6 decimals; None for None, NaN or inf so the result is valid JSON."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), 6)


def _ratio(num: float, den: float) -> float | None:
    return _r(num / den) if den else None


def _as_binary(y: ArrayLike, name: str) -> NDArray[np.bool_]:
    """(N,) 0/1 or bool -> (N,) bool; anything else is an error, not silently truthy."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 or booleans")
    return arr.astype(bool)


def _binary_inputs(y_true_binary: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    y = _as_binary(y_true_binary, "y_true_binary")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"scores shape {s.shape} != y_true_binary shape {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def _both_classes(y: NDArray[np.bool_]) -> bool:
    """AUC-type metrics need at least one positive and one negative."""
    return bool(y.any() and not y.all())


def _class_inputs(
    y_true: ArrayLike, probs: ArrayLike, classes: Sequence[str]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Validate (N,) int labels in [0, C) against (N, C) probabilities and C class names."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise ValueError(f"y_true must be a 1-D integer array, got dtype {y.dtype} shape {y.shape}")
    if p.ndim != 2 or p.shape != (y.shape[0], len(classes)):
        raise ValueError(f"probs must have shape (N, C) = ({y.shape[0]}, {len(classes)}), got {p.shape}")
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise ValueError(f"y_true must hold class indices in [0, {len(classes)})")
    if not np.isfinite(p).all():
        raise ValueError("probs must be finite")
    return y.astype(np.int64), p


# ------------------------------------------------------------------------------------------- ROC family


def one_vs_rest_auc(y_true: ArrayLike, probs: ArrayLike, classes: Sequence[str]) -> dict[str, float | None]:
    """AUROC of each class against the rest. y_true (N,) int, probs (N, C).

    None for a class that is absent from y_true or is the only class present (AUC undefined).
    """
    y, p = _class_inputs(y_true, probs, classes)
    result: dict[str, float | None] = {}
    for c, name in enumerate(classes):
        positive = y == c
        result[name] = _r(roc_auc_score(positive, p[:, c])) if _both_classes(positive) else None
    return result


def partial_auc(
    y_true_binary: ArrayLike, scores: ArrayLike, min_tpr: float = 0.8, *, interpolate: bool = True
) -> float | None:
    """DeepMiner's pAUC @ TPR ``min_tpr``: (1 - min_tpr) · ∫ TPR dFPR over the FPRs where TPR >= ``min_tpr``.

    y_true_binary (N,) 0/1, scores (N,). This is the figure the DeepMiner paper reports (0.121 / 0.133 /
    0.144 at AUCs 0.802 / 0.838 / 0.872) as computed by its reference code, ``partial_auc`` in
    jimmyyhwu/ddsm-visual-primitives ``training/plot_roc_curve_deepminer.ipynb``: the whole area under the
    ROC curve (down to TPR = 0, not only the part above ``min_tpr``) from where the curve reaches
    ``min_tpr`` to FPR = 1, by the trapezoid rule, times 1 - ``min_tpr``. A perfect classifier scores
    1 - min_tpr (0.2), the chance diagonal (1 - min_tpr)² (1 + min_tpr) / 2 (0.036); min_tpr = 0 gives the
    full AUC, min_tpr = 1 gives 0. See :func:`partial_auc_above` for the area above the level instead.

    ``interpolate=True`` starts the integral exactly where the (linearly interpolated) curve crosses
    ``min_tpr``. ``interpolate=False`` reproduces the reference code bit for bit: it starts at the first
    ROC vertex of sklearn's ``roc_curve`` (default ``drop_intermediate``) with TPR >= ``min_tpr`` and so
    drops the part of the crossing segment below that vertex; the two agree when a vertex lies on the
    level and differ by at most (1 - min_tpr) times the crossing segment's width, which vanishes with N.
    None when only one class is present.
    """
    curve = _roc_for_level(y_true_binary, scores, min_tpr)
    return None if curve is None else _r((1.0 - min_tpr) * _area_from_level(*curve, min_tpr, interpolate))


def _roc_for_level(
    y_true_binary: ArrayLike, scores: ArrayLike, min_tpr: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """sklearn's ROC curve (fpr, tpr) after checking the level; None when only one class is present."""
    if not 0.0 <= min_tpr <= 1.0:
        raise ValueError(f"min_tpr must be in [0, 1], got {min_tpr}")
    y, s = _binary_inputs(y_true_binary, scores)
    if not _both_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr


def _area_from_level(fpr: NDArray[np.float64], tpr: NDArray[np.float64], level: float, interpolate: bool) -> float:
    """∫ tpr d fpr over the (K,) (K,) non-decreasing curve from where tpr reaches ``level`` to its end."""
    first = int(np.argmax(tpr >= level))  # tpr ends at 1 >= level, so such a vertex exists
    f, t = fpr[first:], tpr[first:]
    if interpolate and first > 0 and tpr[first] > level:
        # The segment first-1 -> first rises through the level; start at the crossing point on it.
        share = (level - tpr[first - 1]) / (tpr[first] - tpr[first - 1])
        f = np.concatenate(([fpr[first - 1] + share * (fpr[first] - fpr[first - 1])], f))
        t = np.concatenate(([level], t))
    return float(np.trapezoid(t, f))


def partial_auc_above(y_true_binary: ArrayLike, scores: ArrayLike, min_tpr: float = 0.8) -> float | None:
    """Raw area of the ROC plot above TPR = ``min_tpr`` and under the curve: ∫ max(TPR(FPR) - min_tpr, 0) dFPR.

    y_true_binary (N,) 0/1, scores (N,). This is the ISIC 2024 challenge's "pAUC above 80% TPR", not the
    DeepMiner pAUC (:func:`partial_auc`, which counts the whole area under the curve over the same FPR
    range and scales it by 1 - min_tpr; on binormal curves with the paper's AUCs this area is 21-28% smaller).
    A perfect classifier scores 1 - min_tpr (0.2), a chance one (1 - min_tpr)² / 2 (0.02); min_tpr = 0
    gives the full AUC. The ROC curve is interpolated linearly and cut exactly where it crosses ``min_tpr``.
    None when only one class is present.
    """
    curve = _roc_for_level(y_true_binary, scores, min_tpr)
    return None if curve is None else _r(_area_above(*curve, min_tpr))


def _area_above(fpr: NDArray[np.float64], tpr: NDArray[np.float64], level: float) -> float:
    """∫ max(tpr - level, 0) d fpr over the piecewise-linear curve (K,) (K,), both non-decreasing."""
    h0, h1 = tpr[:-1] - level, tpr[1:] - level
    width = np.diff(fpr)
    above = (h0 >= 0) & (h1 >= 0)
    # TPR never decreases along the curve, so a segment can only cross the level upwards (h0 < 0 < h1);
    # the part above the level is then a triangle over the share h1 / (h1 - h0) of the segment's width.
    crossing = (h0 < 0) & (h1 > 0)
    share_above = np.divide(h1, h1 - h0, out=np.zeros_like(h1), where=crossing)
    trapezoids = np.where(above, 0.5 * (h0 + h1) * width, 0.0)
    triangles = 0.5 * h1 * width * share_above
    return float(trapezoids.sum() + triangles.sum())


def roc_points(y_true_binary: ArrayLike, scores: ArrayLike, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve {"fpr": [...], "tpr": [...]} with at most ``max_points`` points, for plotting.

    y_true_binary (N,) 0/1, scores (N,). Keeps (0, 0) and (1, 1); empty lists when only one class is present.
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2 (the curve's two ends)")
    y, s = _binary_inputs(y_true_binary, scores)
    if not _both_classes(y):
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, s)
    keep = _thin(fpr, tpr, max_points)
    return {"fpr": [round(float(v), 6) for v in fpr[keep]], "tpr": [round(float(v), 6) for v in tpr[keep]]}


def _thin(fpr: NDArray[np.float64], tpr: NDArray[np.float64], max_points: int) -> NDArray[np.intp]:
    """Indices of at most ``max_points`` of the K curve points, first and last included."""
    n = fpr.shape[0]
    if n <= max_points:
        return np.arange(n)
    # fpr + tpr climbs monotonically from 0 to 2, so equal steps in it spread the kept points evenly along
    # the curve; equal steps in threshold index would crowd them where scores are dense.
    walk = fpr + tpr
    idx = np.searchsorted(walk, np.linspace(0.0, 2.0, max_points))
    idx[-1] = n - 1
    return np.unique(np.minimum(idx, n - 1))


# ---------------------------------------------------------------------------------- AUC confidence interval


def rank_auc(y_true_binary: ArrayLike, scores: ArrayLike) -> float | None:
    """AUROC by the Mann-Whitney U statistic (ties count one half). y_true_binary (N,) 0/1, scores (N,).

    Equals sklearn's roc_auc_score; it is the kernel the bootstrap in :func:`auc_ci` vectorises.
    """
    y, s = _binary_inputs(y_true_binary, scores)
    if not _both_classes(y):
        return None
    neg, lo, hi = _sorted_negatives(s[y], s[~y])
    n_neg = neg.shape[0]
    unit = np.arange(n_neg + 1, dtype=np.float64)[None, :]  # cumulative weights when every negative counts once
    pos_idx = np.arange(lo.shape[0])[None, :]
    return _r(float(_resampled_aucs(unit, lo, hi, pos_idx)[0]))


def auc_ci(
    y_true_binary: ArrayLike, scores: ArrayLike, n_boot: int = 500, seed: int = 0
) -> tuple[float | None, float | None]:
    """95% percentile CI (low, high) of the AUROC by stratified bootstrap. y_true_binary (N,) 0/1, scores (N,).

    Positives and negatives are resampled separately (stratified) so every resample keeps the class
    balance and a defined AUC. (None, None) when only one class is present.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be positive")
    y, s = _binary_inputs(y_true_binary, scores)
    if not _both_classes(y):
        return None, None
    pos, neg_unsorted = s[y], s[~y]
    neg, lo, hi = _sorted_negatives(pos, neg_unsorted)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CELLS // (neg.shape[0] + pos.shape[0] + 1))
    aucs: list[NDArray[np.float64]] = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        neg_idx = rng.integers(0, neg.shape[0], size=(b, neg.shape[0]))
        pos_idx = rng.integers(0, pos.shape[0], size=(b, pos.shape[0]))
        aucs.append(_resampled_aucs(_cumulative_counts(neg_idx, neg.shape[0]), lo, hi, pos_idx))
    low, high = np.percentile(np.concatenate(aucs), [2.5, 97.5])
    return _r(float(low)), _r(float(high))


def _sorted_negatives(
    pos: NDArray[np.float64], neg: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp]]:
    """Sort the (N-,) negative scores once; for each of the (N+,) positives, where its score falls among them.

    Negatives with sorted index < lo[i] score below positive i, those in [lo[i], hi[i]) tie with it.
    """
    neg = np.sort(neg)
    return neg, np.searchsorted(neg, pos, side="left"), np.searchsorted(neg, pos, side="right")


def _cumulative_counts(neg_idx: NDArray[np.int64], n_neg: int) -> NDArray[np.float64]:
    """(B, N-) resampled indices into the sorted negatives -> (B, N- + 1) running counts, leading 0."""
    b = neg_idx.shape[0]
    offsets = (np.arange(b) * n_neg)[:, None]
    counts = np.bincount((neg_idx + offsets).ravel(), minlength=b * n_neg).reshape(b, n_neg)
    cumulative = np.zeros((b, n_neg + 1))
    np.cumsum(counts, axis=1, out=cumulative[:, 1:])
    return cumulative


def _resampled_aucs(
    cumulative: NDArray[np.float64], lo: NDArray[np.intp], hi: NDArray[np.intp], pos_idx: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Mann-Whitney AUC of B resamples at once. cumulative (B, N- + 1) running negative counts,
    lo/hi (N+,) from :func:`_sorted_negatives`, pos_idx (B, N+) resampled positive indices -> (B,)."""
    below = cumulative[:, lo]
    tied = cumulative[:, hi] - below
    wins = below + 0.5 * tied  # (B, N+): negatives each positive beats in that resample
    n_pos, n_neg = pos_idx.shape[1], cumulative.shape[1] - 1
    return np.take_along_axis(wins, pos_idx, axis=1).sum(axis=1) / (n_pos * n_neg)


# ------------------------------------------------------------------------------------- operating point


def diagnostic_odds_ratio(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    """DOR = (TP·TN)/(FP·FN) and its 95% CI exp(ln DOR ± 1.96·sqrt(1/TP + 1/TN + 1/FP + 1/FN)).

    When any cell is 0 the DOR is 0 or infinite, so 0.5 is added to every cell (Haldane correction).
    All None when there are no positives or no negatives: the odds of a positive test are then undefined
    for one of the two groups and the correction would invent them.
    """
    if tp + fn == 0 or tn + fp == 0:
        return {"dor": None, "dor_ci_low": None, "dor_ci_high": None}
    cells = np.array([tp, fp, tn, fn], dtype=np.float64)
    if (cells == 0).any():
        cells += 0.5
    a, b, d, c = cells  # a=TP, b=FP, d=TN, c=FN
    log_dor = math.log(a * d / (b * c))
    half_width = _Z95 * math.sqrt(float((1.0 / cells).sum()))
    return {
        "dor": _r(math.exp(log_dor)),
        "dor_ci_low": _r(math.exp(log_dor - half_width)),
        "dor_ci_high": _r(math.exp(log_dor + half_width)),
    }


def operating_point_metrics(y_true_binary: ArrayLike, predicted_binary: ArrayLike) -> dict[str, Any]:
    """Counts and rates of a binary decision. y_true_binary (N,) 0/1, predicted_binary (N,) 0/1.

    Returns tp, fp, tn, fn (raw counts), sensitivity, specificity, accuracy, f1, ppv, npv (None when the
    denominator is 0) and dor, dor_ci_low, dor_ci_high from :func:`diagnostic_odds_ratio`.
    """
    y = _as_binary(y_true_binary, "y_true_binary")
    p = _as_binary(predicted_binary, "predicted_binary")
    if p.shape != y.shape:
        raise ValueError(f"predicted_binary shape {p.shape} != y_true_binary shape {y.shape}")
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    tn, fn = int((~y & ~p).sum()), int((y & ~p).sum())
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        **diagnostic_odds_ratio(tp, fp, tn, fn),
    }


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> list[list[int]]:
    """(C, C) counts as nested lists, rows = true class, columns = predicted class. y_true, y_pred (N,) int."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must be 1-D of equal length")
    for arr in (t, p):
        if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"labels must be integers in [0, {n_classes})")
    counts = np.bincount(t.astype(np.int64) * n_classes + p.astype(np.int64), minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).tolist()


def mean_probability_by_true_class(
    y_true: ArrayLike, probs: ArrayLike, classes: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """{true class: {predicted class: mean probability}}; y_true (N,) int, probs (N, C).

    A model that leans on label frequency gives every true class a profile close to the class prior
    instead of a peak on the diagonal. A true class with no samples maps every predicted class to None.
    """
    y, p = _class_inputs(y_true, probs, classes)
    result: dict[str, dict[str, float | None]] = {}
    for c, true_name in enumerate(classes):
        rows = p[y == c]
        means = rows.mean(axis=0) if rows.shape[0] else [None] * len(classes)
        result[true_name] = {name: _r(m) for name, m in zip(classes, means, strict=True)}
    return result


# -------------------------------------------------------------------------------------------- report


def age_band(age: float) -> str:
    """Age in years -> one of AGE_BANDS: "<40", "40-49", "50-59", "60-69", "70+"."""
    years = float(age)
    if not math.isfinite(years) or years < 0:
        raise ValueError(f"age must be a non-negative number, got {age!r}")
    if years < 40:
        return AGE_BANDS[0]
    if years >= 70:
        return AGE_BANDS[-1]
    return AGE_BANDS[int(years // 10) - 3]


def evaluate(
    y_true: ArrayLike,
    probs: ArrayLike,
    classes: Sequence[str],
    metadata: Sequence[Mapping[str, Any]] | None = None,
    breakdown_keys: Sequence[str] = ("view", "age_band"),
    positive_threshold: float | None = None,
    *,
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """The whole evaluation report as a JSON-ready dict. y_true (N,) int, probs (N, C), metadata N dicts.

    This is the clinical report on a finished model's test split; ``mining.training.evaluate`` is the
    per-epoch validation loss and AUCs that training picks its best epoch by.

    Keys: n, class_counts, accuracy (argmax), decision, confusion_matrix (rows = true),
    per_class {name: {auc, auc_ci_low, auc_ci_high, pauc, pauc_above, roc, tp, fp, tn, fn, sensitivity, ...}},
    where pauc is DeepMiner's pAUC @ TPR 0.8 (:func:`partial_auc`) and pauc_above the area above TPR 0.8
    (:func:`partial_auc_above`),
    mean_probability_by_true_class and breakdown {key: {value: {n, accuracy, auc: {name: ...}}}}.

    The per-class operating point is one-vs-rest "argmax == class", so it agrees with the confusion
    matrix; with ``positive_threshold`` it is "probability of the class >= threshold" instead.
    A metadata "age" yields "age_band" unless the record already has one. Records missing a breakdown
    key fall under "unknown"; a key no record has is left out.
    """
    y, p = _class_inputs(y_true, probs, classes)
    if y.shape[0] == 0:
        raise ValueError("cannot evaluate zero samples")
    predicted = p.argmax(axis=1)
    per_class = {
        name: _class_report(y == c, p[:, c], predicted, c, positive_threshold, n_boot, seed)
        for c, name in enumerate(classes)
    }
    report: dict[str, Any] = {
        "n": int(y.shape[0]),
        "class_counts": {name: int(k) for name, k in zip(classes, np.bincount(y, minlength=len(classes)), strict=True)},
        "accuracy": _r(float((predicted == y).mean())),
        "decision": "argmax" if positive_threshold is None else f"probability >= {positive_threshold}",
        "confusion_matrix": confusion_matrix(y, predicted, len(classes)),
        "per_class": per_class,
        "mean_probability_by_true_class": mean_probability_by_true_class(y, p, classes),
        "breakdown": {},
    }
    if metadata is not None:
        report["breakdown"] = _breakdown(y, p, classes, _with_age_band(metadata, y.shape[0]), breakdown_keys)
    return report


def _class_report(
    positive: NDArray[np.bool_],
    score: NDArray[np.float64],
    predicted: NDArray[np.int64],
    c: int,
    positive_threshold: float | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """One class's section of :func:`evaluate`: positive (N,) bool, score (N,) its probability."""
    decided = predicted == c if positive_threshold is None else score >= positive_threshold
    low, high = auc_ci(positive, score, n_boot=n_boot, seed=seed)
    auc = _r(roc_auc_score(positive, score)) if _both_classes(positive) else None
    return {
        "auc": auc,
        "auc_ci_low": low,
        "auc_ci_high": high,
        "pauc": partial_auc(positive, score),
        "pauc_above": partial_auc_above(positive, score),
        "roc": roc_points(positive, score),
        **operating_point_metrics(positive, decided),
    }


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _with_age_band(metadata: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """Copies of the N records (the caller's dicts stay untouched), each with "age_band" derived from "age"."""
    if len(metadata) != n:
        raise ValueError(f"metadata has {len(metadata)} records for {n} samples")
    records = [dict(m) for m in metadata]
    for record in records:
        if _is_missing(record.get("age_band")) and not _is_missing(record.get("age")):
            record["age_band"] = age_band(record["age"])
    return records


def _breakdown(
    y: NDArray[np.int64],
    p: NDArray[np.float64],
    classes: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
) -> dict[str, dict[str, dict[str, Any]]]:
    """{key: {value: {n, accuracy, auc}}} for each key some record has; values as strings (JSON keys)."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for key in keys:
        values = [UNKNOWN if _is_missing(r.get(key)) else str(r[key]) for r in records]
        if all(v == UNKNOWN for v in values):
            continue
        labels = np.array(values)
        result[key] = {}
        for value in sorted(set(values), key=_group_order):
            rows = labels == value
            result[key][value] = {
                "n": int(rows.sum()),
                "accuracy": _r(float((p[rows].argmax(axis=1) == y[rows]).mean())),
                "auc": one_vs_rest_auc(y[rows], p[rows], classes),
            }
    return result


def _group_order(value: str) -> tuple[bool, int, str]:
    """Age bands in age order (plain sorting puts "<40" last), other values alphabetical, "unknown" last."""
    rank = AGE_BANDS.index(value) if value in AGE_BANDS else len(AGE_BANDS)
    return value == UNKNOWN, rank, value
