"""Statistics of a reader study (pure: scores in, summaries out): each arm's mean and range as the
hip-fracture paper's Table 3 gives them (4.4 (2-6), 7.0 (6-8), 8.8 (8-9)), each reader's mean per arm, and a
paired comparison of two arms on the same cases: the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
two-sided, zero differences dropped as Wilcoxon did) over the pairs of one reader's two scores of one image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

__all__ = ["ArmSummary", "PairedTest", "Score", "arm_summaries", "paired_test", "paired_tests", "reader_means"]


@dataclass(frozen=True)
class Score:
    """One score: ``reader`` gave ``value`` to ``arm`` on ``case`` (an image)."""

    reader: str
    case: int
    arm: str
    value: int


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    n: int
    mean: float | None
    low: int | None
    high: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """Two arms' scores paired by (reader, case). ``statistic`` and ``p_value`` are scipy's; None (with
    ``note``) when there is nothing to test: no pair, or every pair scored alike."""

    first: str
    second: str
    pairs: int
    mean_difference: float | None  # first minus second
    statistic: float | None
    p_value: float | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def arm_summaries(scores: Iterable[Score], arms: Sequence[str]) -> list[ArmSummary]:
    """Per arm of ``arms``, in that order: how many scores, their mean and their lowest and highest."""
    by_arm: dict[str, list[int]] = {arm: [] for arm in arms}
    for score in scores:
        if score.arm in by_arm:
            by_arm[score.arm].append(score.value)
    return [
        ArmSummary(arm, len(values), float(np.mean(values)), min(values), max(values))
        if values
        else ArmSummary(arm, 0, None, None, None)
        for arm, values in by_arm.items()
    ]


def reader_means(scores: Iterable[Score], arms: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """reader -> arm -> that reader's mean score on the arm (None where they scored none)."""
    values: dict[str, dict[str, list[int]]] = {}
    for score in scores:
        values.setdefault(score.reader, {arm: [] for arm in arms}).setdefault(score.arm, []).append(score.value)
    return {
        reader: {arm: float(np.mean(per_arm[arm])) if per_arm.get(arm) else None for arm in arms}
        for reader, per_arm in sorted(values.items())
    }


def _paired(scores: Iterable[Score], first: str, second: str) -> tuple[list[int], list[int]]:
    keyed: dict[str, dict[tuple[str, int], int]] = {first: {}, second: {}}
    for score in scores:
        if score.arm in keyed:
            keyed[score.arm][(score.reader, score.case)] = score.value
    common = sorted(keyed[first].keys() & keyed[second].keys())
    return [keyed[first][key] for key in common], [keyed[second][key] for key in common]


def paired_test(scores: Iterable[Score], first: str, second: str) -> PairedTest:
    """The Wilcoxon signed-rank test of ``first`` against ``second`` on the (reader, case) pairs both have."""
    x, y = _paired(scores, first, second)
    if not x:
        return PairedTest(first, second, 0, None, None, None, "no reader scored both on the same image")
    difference = float(np.mean(np.subtract(x, y)))
    if all(a == b for a, b in zip(x, y, strict=True)):
        return PairedTest(first, second, len(x), difference, None, None, "every pair scored alike")
    result = wilcoxon(x, y)
    return PairedTest(first, second, len(x), difference, float(result.statistic), float(result.pvalue))


def paired_tests(scores: Sequence[Score], groups: Mapping[str, Sequence[str]]) -> list[PairedTest]:
    """Every pair of arms within each group of arms on one scale (the 1-10 explanation arms; the 1-5
    generated and expert-written sentences), in the groups' order."""
    return [paired_test(scores, first, second) for arms in groups.values() for first, second in combinations(arms, 2)]
