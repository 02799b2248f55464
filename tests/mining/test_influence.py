"""mining.influence: unit influence, per-input top units, per-class frequency, selection and coverage.

The hand example has 2 classes and 3 units:
    fc_weight = [[1, -2, 0.5], [0.5, 1, 3]], max activations [[2, 1, 4], [1, 3, 0]],
input 0 decided as class 0 -> influence [2*1, 1*-2, 4*0.5] = [2, -2, 2],
input 1 decided as class 1 -> influence [1*0.5, 3*1, 0*3] = [0.5, 3, 0].
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from mining.influence import InfluenceTally, coverage, select_units, top_units, unit_influence

FC = torch.tensor([[1.0, -2.0, 0.5], [0.5, 1.0, 3.0]])
MAX_ACT = torch.tensor([[2.0, 1.0, 4.0], [1.0, 3.0, 0.0]])
LOGITS = torch.tensor([[5.0, 1.0], [0.0, 2.0]])  # decided classes 0, 1
INFLUENCE = torch.tensor([[2.0, -2.0, 2.0], [0.5, 3.0, 0.0]])


def test_unit_influence_by_hand() -> None:
    assert torch.equal(unit_influence(MAX_ACT, FC, torch.tensor([0, 1])), INFLUENCE)
    # The same input decided the other way uses the other weight row.
    assert torch.equal(unit_influence(MAX_ACT[:1], FC, np.array([1])), torch.tensor([[1.0, 1.0, 12.0]]))


def test_unit_influence_accepts_numpy() -> None:
    got = unit_influence(MAX_ACT.numpy(), FC.numpy(), np.array([0, 1]))
    assert torch.equal(got, INFLUENCE)


def test_top_units_orders_by_influence_and_breaks_ties_by_unit_index() -> None:
    assert top_units(INFLUENCE, k=2).tolist() == [[0, 2], [1, 0]]  # units 0 and 2 tie at 2.0
    assert top_units(torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]]), k=3).tolist() == [[1, 2, 4]]
    assert top_units(torch.zeros(1, 4), k=2).tolist() == [[0, 1]]
    assert top_units(INFLUENCE, k=8).tolist() == [[0, 2, 1], [1, 0, 2]]  # k > U keeps all units
    assert top_units(INFLUENCE).dtype == torch.int64


def test_tally_counts_by_hand() -> None:
    tally = InfluenceTally(num_classes=2, num_units=3, k=2)
    tally.update(MAX_ACT, LOGITS, FC)
    assert tally.frequency.tolist() == [[1, 0, 1], [1, 1, 0]]
    np.testing.assert_array_equal(tally.influence_sum, [[2.0, -2.0, 2.0], [0.5, 3.0, 0.0]])
    assert tally.inputs_per_class.tolist() == [1, 1]


def test_tally_counts_repeated_units_within_a_batch() -> None:
    """Many inputs of one class hitting the same units must all count (no scatter overwrite)."""
    tally = InfluenceTally(num_classes=2, num_units=3, k=1)
    acts = torch.tensor([[2.0, 1.0, 4.0]] * 5 + [[1.0, 3.0, 0.0]] * 2)
    logits = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 2)
    tally.update(acts, logits, FC)
    # Class 0: influence [2, -2, 2], top-1 is unit 0 (tie with 2 -> lower index); class 1: unit 1.
    assert tally.frequency.tolist() == [[5, 0, 0], [0, 2, 0]]
    assert tally.inputs_per_class.tolist() == [5, 2]
    np.testing.assert_array_equal(tally.influence_sum[0], [10.0, -10.0, 10.0])


def brute_force_frequency(acts: np.ndarray, logits: np.ndarray, fc: np.ndarray, k: int) -> np.ndarray:
    frequency = np.zeros(fc.shape, dtype=np.int64)
    for a, z in zip(acts, logits, strict=True):
        c = int(np.argmax(z))
        influence = a * fc[c]
        order = sorted(range(len(influence)), key=lambda u: (-influence[u], u))
        for u in order[:k]:
            frequency[c, u] += 1
    return frequency


def test_tally_streaming_merge_and_state_dict_equal_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    acts = torch.rand(90, 12, generator=gen)
    logits = torch.randn(90, 3, generator=gen)
    fc = torch.randn(3, 12, generator=gen)
    whole = InfluenceTally(3, 12, k=4)
    whole.update(acts, logits, fc)
    expected = brute_force_frequency(acts.numpy(), logits.numpy(), fc.numpy(), 4)
    np.testing.assert_array_equal(whole.frequency, expected)
    assert whole.frequency.sum() == 90 * 4

    shard_a, shard_b = InfluenceTally(3, 12, k=4), InfluenceTally(3, 12, k=4)
    for rows in (slice(0, 10), slice(10, 37)):
        shard_a.update(acts[rows], logits[rows], fc)
    shard_b.update(acts[37:], logits[37:], fc)
    buffer = io.BytesIO()
    torch.save(shard_b.state_dict(), buffer)
    shard_a.merge(InfluenceTally.from_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)))
    np.testing.assert_array_equal(shard_a.frequency, whole.frequency)
    np.testing.assert_allclose(shard_a.influence_sum, whole.influence_sum, rtol=1e-12)
    np.testing.assert_array_equal(shard_a.inputs_per_class, whole.inputs_per_class)


def test_tally_merge_rejects_other_shapes() -> None:
    with pytest.raises(ValueError):
        InfluenceTally(2, 3, k=2).merge(InfluenceTally(2, 3, k=8))


def test_select_units_orders_by_frequency_then_influence_then_index() -> None:
    frequency = np.array([[5, 3, 3, 0, 3], [0, 0, 0, 0, 0]])
    influence_sum = np.array([[0.0, 1.0, 2.0, 9.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    # Units 1, 2, 4 tie at 3; 2 and 4 tie again on influence 2.0 -> lower index first.
    assert select_units(frequency, influence_sum, per_class=3) == {0: [0, 2, 4], 1: []}
    # Never-influential units (frequency 0) are not selected even when there is room.
    assert select_units(frequency, influence_sum, per_class=20) == {0: [0, 2, 4, 1], 1: []}


def test_coverage_by_hand() -> None:
    # Class 0: 2 inputs x 2 slots = 4 slots filled by units 0 (twice), 1 and 2.
    frequency = np.array([[2, 1, 1, 0], [0, 0, 0, 0]])
    assert coverage(frequency, {0: [0]}, k=2) == {0: 0.5, 1: 0.0}
    assert coverage(frequency, {0: [0, 2], 1: [3]}, k=2) == {0: 0.75, 1: 0.0}
    with pytest.raises(ValueError):
        coverage(np.array([[2, 1, 0, 0]]), {0: [0]}, k=2)  # 3 slots cannot come from top-2 counts


def test_selection_and_coverage_from_a_tally() -> None:
    tally = InfluenceTally(num_classes=2, num_units=3, k=2)
    tally.update(MAX_ACT, LOGITS, FC)
    selected = select_units(tally.frequency, tally.influence_sum, per_class=1)
    # Class 0: units 0 and 2 both once, influence 2.0 each -> unit 0; class 1: units 0, 1 once, 1 has 3.0.
    assert selected == {0: [0], 1: [1]}
    assert coverage(tally.frequency, selected, k=2) == {0: 0.5, 1: 0.5}


def test_disjoint_selection_gives_a_shared_unit_to_the_class_it_dominates():
    from mining.influence import select_units_disjoint

    # Unit 0 is the most frequent in both classes, but fills 6/10 of class 0's slots vs 5/20 of class 1's.
    frequency = np.array([[6, 3, 1, 0], [5, 0, 4, 11]])
    sums = np.zeros((2, 4))
    assert select_units(frequency, sums, per_class=2) == {0: [0, 1], 1: [3, 0]}
    assert select_units_disjoint(frequency, sums, per_class=2) == {0: [0, 1], 1: [3, 2]}
    chosen = select_units_disjoint(np.array([[5, 5, 5], [5, 5, 5]]), np.zeros((2, 3)), per_class=2)
    assert sorted(chosen[0] + chosen[1]) == [0, 1, 2]  # three units, none twice
