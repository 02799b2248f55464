"""mining.splits: patient-level 80 / 10 / 10 splits, seeded and order-independent."""

from __future__ import annotations

from collections import Counter

import pytest

from mining.splits import assign_splits, carve_validation, split_sizes, validation_size

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


TRAINING = [pid for pid, split in assign_splits(PATIENTS, seed=0).items() if split == "train"]  # 40 patients


def test_validation_carve_out_is_ten_percent_of_the_training_patients_and_disjoint_from_the_rest() -> None:
    validation = carve_validation(TRAINING, 0.1, seed=0)
    fitting = set(TRAINING) - validation
    assert validation <= set(TRAINING) and not validation & fitting
    assert (len(validation), len(fitting)) == (4, 36)
    assert len(carve_validation(TRAINING, 0.25, seed=0)) == 10


def test_validation_carve_out_is_deterministic_order_independent_and_seeded() -> None:
    once = carve_validation(TRAINING, 0.1, seed=5)
    assert carve_validation(list(reversed(TRAINING)) + TRAINING[:7], 0.1, seed=5) == once
    assert carve_validation(TRAINING, 0.1, seed=5) == once
    others = [carve_validation(TRAINING, 0.1, seed=s) for s in range(6, 11)]
    assert any(other != once for other in others)
    assert all(len(other) == len(once) for other in others)


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [(0, 0.1, 0), (1, 0.1, 0), (2, 0.1, 1), (5, 0.1, 1), (15, 0.1, 1), (16, 0.1, 2), (40, 0.1, 4), (3, 0.9, 2)],
)
def test_validation_size_rounds_like_split_sizes_and_keeps_a_patient_on_each_side(
    n: int, fraction: float, expected: int
) -> None:
    assert validation_size(n, fraction) == expected
    carved = carve_validation([f"Q{i}" for i in range(n)], fraction, seed=1)
    assert len(carved) == expected


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_validation_fraction_must_lie_strictly_between_0_and_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        carve_validation(TRAINING, fraction, seed=0)
