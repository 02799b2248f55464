"""Inter-rater agreement on categorical labels: Fleiss' kappa, percent agreement, per-item agreement.

Used to report how far experts agree on a unit's name, a recognisability answer or a fracture
descriptor. Ratings are tallied into a count table ``counts`` of shape (items, categories), where
``counts[i, j]`` is how many raters put item i in category j.

Fleiss' kappa (Fleiss 1971), generalised to a varying number of raters n_i per item: only items with
n_i >= 2 count (agreement needs a pair). For those items

    P_i   = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))       share of agreeing ordered rater pairs on item i
    P_bar = mean_i P_i                                   observed agreement
    p_j   = sum_i n_ij / sum_i n_i                       share of all ratings in category j
    P_e   = sum_j p_j^2                                  agreement expected by chance
    kappa = (P_bar - P_e) / (1 - P_e)

With the same n for every item this is exactly Fleiss' formula. kappa is 1 for perfect agreement,
about 0 for agreement at chance level and negative below it. It is undefined (nan) when no item has
two ratings, or when P_e = 1, i.e. every rating falls in one single category: then
P_bar = 1 too and the formula is 0/0 (raters who cannot disagree tell nothing about agreement).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["fleiss_kappa", "percent_agreement", "ratings_to_counts", "unit_agreement"]


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of ``counts`` (items, categories), raters per item may vary; nan when undefined."""
    rated = _rated_items(counts)
    if rated.shape[0] == 0:
        return float("nan")
    p_bar = float(_pair_agreement(rated).mean())
    p_j = rated.sum(axis=0) / rated.sum()
    p_e = float(np.sum(p_j**2))
    if np.isclose(p_e, 1.0):
        return float("nan")
    return (p_bar - p_e) / (1.0 - p_e)


def percent_agreement(counts: np.ndarray) -> float:
    """Mean over items with >= 2 ratings of the share of rater pairs that agree, in [0, 1]; nan if none.

    ``counts``: (items, categories). This is Fleiss' P_bar, agreement not corrected for chance.
    """
    rated = _rated_items(counts)
    return float(_pair_agreement(rated).mean()) if rated.shape[0] else float("nan")


def ratings_to_counts(ratings: Sequence[Sequence[str | None]], categories: Sequence[str]) -> np.ndarray:
    """Tally ``ratings`` (one row per item, one entry per rater; rows may differ in length; None = the
    rater did not answer) into int64 counts (items, len(categories)). An unknown label is a ValueError."""
    column = {category: j for j, category in enumerate(categories)}
    if len(column) != len(categories):
        raise ValueError("categories must be distinct")
    counts = np.zeros((len(ratings), len(categories)), dtype=np.int64)
    for i, row in enumerate(ratings):
        for label in row:
            if label is None:
                continue
            if label not in column:
                raise ValueError(f"rating {label!r} of item {i} is not one of the categories")
            counts[i, column[label]] += 1
    return counts


def unit_agreement(labels: Sequence[str | None]) -> float:
    """Share of agreeing pairs among one item's ``labels`` (None = no answer, skipped); nan under two."""
    given = [label for label in labels if label is not None]
    n = len(given)
    if n < 2:
        return float("nan")
    agreeing = sum(k * (k - 1) for k in Counter(given).values())
    return agreeing / (n * (n - 1))


def _rated_items(counts: np.ndarray) -> np.ndarray:
    """The rows of ``counts`` (items, categories) with at least two ratings, as float64."""
    table = np.asarray(counts)
    if table.ndim != 2:
        raise ValueError(f"counts must be (items, categories), got shape {table.shape}")
    if table.size and (np.any(table < 0) or not np.all(np.equal(np.mod(table, 1), 0))):
        raise ValueError("counts must be non-negative whole numbers")
    table = table.astype(np.float64)
    return table[table.sum(axis=1) >= 2]


def _pair_agreement(rated: np.ndarray) -> np.ndarray:
    """P_i (items,) for ``rated`` (items, categories) with >= 2 ratings per row."""
    n = rated.sum(axis=1)
    return np.sum(rated * (rated - 1), axis=1) / (n * (n - 1))
