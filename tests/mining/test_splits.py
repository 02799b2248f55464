"""mining.splits: patient-level 80 / 10 / 10 splits, seeded and order-independent."""

from __future__ import annotations

from collections import Counter

import pytest

from mining.splits import assign_splits, split_sizes

PATIENTS = [f"P_{i:05d}" for i in range(50)]


def test_fifty_patients_split_exactly_40_5_5() -> None:
    splits = assign_splits(PATIENTS, seed=0)
    assert set(splits) == set(PATIENTS)
    assert Counter(splits.values()) == {"train": 40, "test": 5, "holdout": 5}


def test_same_seed_same_splits_whatever_the_order_and_repeats() -> None:
    shuffled = list(reversed(PATIENTS)) + PATIENTS[:10]
    assert assign_splits(shuffled, seed=3) == assign_splits(PATIENTS, seed=3)


def test_another_seed_moves_patients() -> None:
    a, b = assign_splits(PATIENTS, seed=0), assign_splits(PATIENTS, seed=1)
    assert a != b
    assert Counter(a.values()) == Counter(b.values())


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, (0, 0, 0)), (1, (1, 0, 0)), (3, (3, 0, 0)), (7, (5, 1, 1)), (10, (8, 1, 1)), (55, (44, 6, 5))],
)
def test_split_sizes_sum_to_n_by_largest_remainder(n: int, expected: tuple[int, int, int]) -> None:
    assert split_sizes(n, (0.8, 0.1, 0.1)) == expected


def test_custom_fractions_and_bad_fractions() -> None:
    assert Counter(assign_splits(PATIENTS, seed=0, fractions=(0.5, 0.5, 0.0)).values()) == {"train": 25, "test": 25}
    with pytest.raises(ValueError, match="sum"):
        split_sizes(10, (0.8, 0.3, 0.1))
