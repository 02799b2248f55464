"""mining.influence: unit influence, per-image top units toward every class, frequency, selection, coverage.

The hand example has 2 classes and 3 units:
    fc_weight = [[1, -2, 0.5], [0.5, 1, 3]], image max activations [[2, 1, 4], [1, 3, 0]],
image 0 -> influence toward class 0 [2*1, 1*-2, 4*0.5] = [2, -2, 2], toward class 1 [1, 1, 12];
image 1 -> toward class 0 [1, -6, 0], toward class 1 [0.5, 3, 0].
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from mining.influence import InfluenceTally, coverage, image_maxima, select_units, top_units, unit_influence

FC = torch.tensor([[1.0, -2.0, 0.5], [0.5, 1.0, 3.0]])
MAX_ACT = torch.tensor([[2.0, 1.0, 4.0], [1.0, 3.0, 0.0]])
INFLUENCE = torch.tensor([[[2.0, -2.0, 2.0], [1.0, 1.0, 12.0]], [[1.0, -6.0, 0.0], [0.5, 3.0, 0.0]]])


def test_unit_influence_by_hand() -> None:
    assert torch.equal(unit_influence(MAX_ACT, FC), INFLUENCE)
    assert torch.equal(unit_influence(MAX_ACT.numpy(), FC.numpy()), INFLUENCE)


def test_top_units_orders_by_influence_and_breaks_ties_by_unit_index() -> None:
    assert top_units(INFLUENCE[:, 0], k=2).tolist() == [[0, 2], [0, 2]]  # units 0 and 2 tie at 2.0
    assert top_units(torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]]), k=3).tolist() == [[1, 2, 4]]
    assert top_units(torch.zeros(1, 4), k=2).tolist() == [[0, 1]]
    assert top_units(INFLUENCE, k=8).tolist() == [[[0, 2, 1], [2, 0, 1]], [[0, 2, 1], [1, 0, 2]]]
    assert top_units(INFLUENCE).dtype == torch.int64


def test_image_maxima_of_grouped_patches() -> None:
    acts = torch.tensor([[1.0, 5.0], [3.0, 0.0], [2.0, 2.0], [0.0, 7.0]])
    images, maxima = image_maxima(acts, torch.tensor([4, 4, 9, 9]))
    assert images.tolist() == [4, 9]
    assert maxima.tolist() == [[3.0, 5.0], [2.0, 7.0]]


def test_tally_counts_every_image_for_every_class_by_hand() -> None:
    tally = InfluenceTally(FC, k=2)
    tally.update(MAX_ACT, [0, 1])
    tally.finish()
    # Class 0: image 0 -> units 0, 2 (tie at 2 -> lower index first); image 1 -> units 0 (1.0), 2 (0.0).
    # Class 1: image 0 -> units 2, 0 (1.0 ties unit 1 -> lower index); image 1 -> units 1, 0.
    assert tally.frequency.tolist() == [[2, 0, 2], [2, 1, 1]]
    np.testing.assert_array_equal(tally.influence_sum, [[3.0, -8.0, 2.0], [1.5, 4.0, 12.0]])
    assert tally.images == 2


def test_an_image_is_its_patches_maximum_even_across_batches() -> None:
    """Patches of one image split over two batches count once, with the maximum over all of them."""
    split = InfluenceTally(FC, k=1)
    split.update(torch.tensor([[2.0, 0.0, 0.0]]), [7])
    split.update(torch.tensor([[0.0, 0.0, 4.0], [1.0, 3.0, 0.0]]), [7, 8])
    split.finish()
    whole = InfluenceTally(FC, k=1)
    whole.update(torch.tensor([[2.0, 0.0, 4.0], [1.0, 3.0, 0.0]]), [7, 8])
    whole.finish()
    np.testing.assert_array_equal(split.frequency, whole.frequency)
    assert split.images == whole.images == 2


def test_patches_not_grouped_by_image_are_refused() -> None:
    tally = InfluenceTally(FC, k=1)
    tally.update(MAX_ACT, [0, 1])
    with pytest.raises(ValueError, match="grouped by image"):
        tally.update(MAX_ACT[:1], [0])


def brute_force_frequency(acts: np.ndarray, image_of: np.ndarray, fc: np.ndarray, k: int) -> np.ndarray:
    """The reference code's counting, written out: per image the max over its patches, then for every
    class the image's k most influential units (ties to the lower unit), counted."""
    frequency = np.zeros(fc.shape, dtype=np.int64)
    for image in np.unique(image_of):
        image_max = acts[image_of == image].max(axis=0)
        for c in range(fc.shape[0]):
            influence = image_max * fc[c]
            for u in sorted(range(len(influence)), key=lambda u: (-influence[u], u))[:k]:
                frequency[c, u] += 1
    return frequency


def test_tally_streaming_merge_and_state_dict_equal_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    acts = torch.rand(90, 12, generator=gen)
    image_of = torch.sort(torch.randint(0, 25, (90,), generator=gen)).values
    fc = torch.randn(3, 12, generator=gen)
    whole = InfluenceTally(fc, k=4)
    whole.update(acts, image_of)
    whole.finish()
    expected = brute_force_frequency(acts.numpy(), image_of.numpy(), fc.numpy(), 4)
    np.testing.assert_array_equal(whole.frequency, expected)
    images = len(torch.unique(image_of))
    assert whole.images == images and (whole.frequency.sum(axis=1) == images * 4).all()

    # Shards hold whole images: cut at an image boundary.
    cut = int((image_of == image_of[40]).nonzero()[0])
    shard_a, shard_b = InfluenceTally(fc, k=4), InfluenceTally(fc, k=4)
    for rows in (slice(0, 10), slice(10, cut)):
        shard_a.update(acts[rows], image_of[rows])
    shard_b.update(acts[cut:], image_of[cut:])
    shard_a.finish(), shard_b.finish()
    buffer = io.BytesIO()
    torch.save(shard_b.state_dict(), buffer)
    shard_a.merge(InfluenceTally.from_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)))
    np.testing.assert_array_equal(shard_a.frequency, whole.frequency)
    np.testing.assert_allclose(shard_a.influence_sum, whole.influence_sum, rtol=1e-12)
    assert shard_a.images == whole.images


def test_tally_merge_rejects_other_shapes_and_unfinished_tallies() -> None:
    with pytest.raises(ValueError):
        InfluenceTally(FC, k=2).merge(InfluenceTally(FC, k=8))
    open_tally = InfluenceTally(FC, k=2)
    open_tally.update(MAX_ACT, [0, 1])
    with pytest.raises(ValueError, match="finish"):
        InfluenceTally(FC, k=2).merge(open_tally)


def test_select_units_orders_by_frequency_then_influence_then_index() -> None:
    frequency = np.array([[5, 3, 3, 0, 3], [0, 0, 0, 0, 0]])
    influence_sum = np.array([[0.0, 1.0, 2.0, 9.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    # Units 1, 2, 4 tie at 3; 2 and 4 tie again on influence 2.0 -> lower index first.
    assert select_units(frequency, influence_sum, per_class=3) == {0: [0, 2, 4], 1: []}
    # Never-influential units (frequency 0) are not selected even when there is room.
    assert select_units(frequency, influence_sum, per_class=20) == {0: [0, 2, 4, 1], 1: []}


def test_per_class_lists_may_share_a_unit() -> None:
    """As in the reference code: a unit frequent for two classes is in both lists."""
    frequency = np.array([[6, 3, 1, 0], [5, 0, 4, 11]])
    assert select_units(frequency, np.zeros((2, 4)), per_class=2) == {0: [0, 1], 1: [3, 0]}


def test_coverage_by_hand() -> None:
    # 2 images x 2 slots = 4 slots per class; class 0's filled by units 0 (twice), 1 and 2.
    frequency = np.array([[2, 1, 1, 0], [0, 2, 0, 2]])
    assert coverage(frequency, {0: [0]}, k=2) == {0: 0.5, 1: 0.0}
    assert coverage(frequency, {0: [0, 2], 1: [3]}, k=2) == {0: 0.75, 1: 0.5}
    with pytest.raises(ValueError):
        coverage(np.array([[2, 1, 0, 0]]), {0: [0]}, k=2)  # 3 slots cannot come from top-2 counts


def test_coverage_is_the_reference_share_of_all_images_top_slots() -> None:
    """coverage = (slots the 20 fill) / (8 x images), computed from the brute-force counts."""
    gen = torch.Generator().manual_seed(3)
    acts, fc = torch.rand(300, 64, generator=gen), torch.randn(3, 64, generator=gen)
    image_of = torch.arange(300) // 3
    tally = InfluenceTally(fc)
    tally.update(acts, image_of)
    tally.finish()
    selected = select_units(tally.frequency, tally.influence_sum)
    expected = brute_force_frequency(acts.numpy(), image_of.numpy(), fc.numpy(), 8)
    for c, units in selected.items():
        assert 0 < len(units) <= 20
        assert coverage(tally.frequency, selected)[c] == pytest.approx(expected[c, units].sum() / (8 * 100))
