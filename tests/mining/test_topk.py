"""mining.topk: streaming per-unit top-N and exact quantile threshold, merged across shards.

Streaming results are checked against brute force over all activations held at once.
"""

from __future__ import annotations

import math

import pytest
import torch

from mining.topk import UnitTopK, quantile_count
from tests.mining.topk_reference import assert_matches, brute_force, random_features, stream, through_bytes


@pytest.mark.parametrize("batch_size", [1, 7, 64, 300])
def test_streaming_equals_brute_force(batch_size: int) -> None:
    features = random_features(300)
    ids = torch.randperm(300, generator=torch.Generator().manual_seed(1)) + 1000  # not in input order
    topk = stream(features, ids, batch_size, top_n=16, quantile=0.02)
    assert topk.kept == 16
    assert_matches(topk, brute_force(features, ids, 16, 0.02))


def test_streaming_with_ties_keeps_lower_ids_like_brute_force() -> None:
    # Small integers: almost every score ties (like ReLU zeros on a real network).
    features = torch.randint(0, 3, (120, 4, 2, 2), generator=torch.Generator().manual_seed(2)).float()
    ids = torch.randperm(120, generator=torch.Generator().manual_seed(3))
    for batch_size in (5, 33):
        assert_matches(stream(features, ids, batch_size, top_n=10, quantile=0.05), brute_force(features, ids, 10, 0.05))


def test_fewer_inputs_than_top_n() -> None:
    features = random_features(5)
    topk = stream(features, torch.arange(5), 2, top_n=8)
    assert topk.kept == 5
    assert_matches(topk, brute_force(features, torch.arange(5), 8, 0.005))
    assert topk.ids[:, 5:].eq(-1).all()


def test_merge_of_shards_equals_single_pass_exactly() -> None:
    features = random_features(301, seed=4)
    ids = torch.arange(301)
    whole = stream(features, ids, 50, top_n=12, quantile=0.01)
    # Each shard keeps the dataset-wide K = ceil(0.01 * 301 * 12) = 37 largest of its own values:
    # the merged top 37 may all come from one shard.
    shard_a = stream(features[:130], ids[:130], 17, dataset_size=301, top_n=12, quantile=0.01)
    shard_b = stream(features[130:], ids[130:], 64, dataset_size=301, top_n=12, quantile=0.01)
    merged = through_bytes(shard_a)  # through bytes, as a shard's state travels to the merge
    merged.merge(through_bytes(shard_b))
    assert merged.k_values == whole.k_values == quantile_count(0.01, 301 * 12)
    assert (merged.inputs_seen, merged.positions_seen, merged.total_positions) == (301, 301 * 12, 301 * 12)
    with pytest.raises(ValueError, match="total_positions"):
        merged.merge(stream(features[:130], ids[:130], 17, top_n=12, quantile=0.01))
    for name in ("scores", "ids", "maps"):
        assert torch.equal(getattr(merged, name), getattr(whole, name)), name
    assert torch.equal(merged.level_values.sort(dim=1).values, whole.level_values.sort(dim=1).values)
    assert torch.equal(merged.thresholds(), whole.thresholds())
    assert_matches(merged, brute_force(features, ids, 12, 0.01))


def test_threshold_is_the_exact_top_quantile() -> None:
    features = random_features(400, units=3, h=5, w=5, seed=5)
    topk = stream(features, torch.arange(400), 37)  # quantile 0.005 of 10 000 positions: K = 50
    assert topk.k_values == 50
    values = features.permute(1, 0, 2, 3).reshape(3, -1)
    n = values.shape[1]
    expected = torch.sort(values, dim=1, descending=True).values[:, 49]
    assert torch.equal(topk.thresholds(), expected)
    # The same value as torch.quantile at the K-th largest's rank, and the quantile's definition holds.
    by_quantile = torch.quantile(values, (n - 50) / (n - 1), dim=1, interpolation="nearest")
    assert torch.equal(topk.thresholds(), by_quantile)
    share_at_least = (values >= topk.thresholds()[:, None]).float().mean(dim=1)
    share_above = (values > topk.thresholds()[:, None]).float().mean(dim=1)
    assert (share_at_least >= 0.005).all() and (share_above < 0.005).all()


def test_quantile_count_is_not_thrown_off_by_float_rounding() -> None:
    assert quantile_count(0.005, 16000) == 80
    assert quantile_count(0.005, 16001) == 81
    assert quantile_count(0.005, 1) == 1


def test_rejects_changed_shapes() -> None:
    topk = UnitTopK(2, total_positions=100)
    topk.update(torch.zeros(1, 2, 3, 3), torch.tensor([0]))
    with pytest.raises(ValueError):
        topk.update(torch.zeros(1, 2, 4, 4), torch.tensor([1]))
    with pytest.raises(ValueError):
        topk.update(torch.zeros(1, 3, 3, 3), torch.tensor([1]))


def test_state_dict_survives_torch_save() -> None:
    features = random_features(30)
    topk = stream(features, torch.arange(30), 8, top_n=4)
    again = through_bytes(topk)
    assert math.isclose(again.quantile, topk.quantile)
    assert_matches(again, brute_force(features, torch.arange(30), 4, 0.005))
