"""mining.topk: streaming per-unit top-N and exact quantile threshold, the mining pass, unit masks.

Streaming results are checked against brute force over all activations held at once; the
mining pass runs tiny hand-built "networks" (modules returning {"features", "logits"}).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from mining.data import PIXEL_MEAN, PIXEL_STD
from mining.influence import top_units
from mining.progress import Cancelled
from mining.topk import (
    UnitTopK,
    heat_tiles,
    quantile_count,
    run_mining_pass,
    to_image_box,
    unit_masks,
    unit_responses,
)

# ----------------------------------------------------------------------------- helpers


def stream(
    features: torch.Tensor, ids: torch.Tensor, batch_size: int, dataset_size: int | None = None, **kwargs: Any
) -> UnitTopK:
    """UnitTopK fed `features` (N, U, h, w) in batches; kwargs: top_n, quantile."""
    n, units, h, w = features.shape
    topk = UnitTopK(units, total_positions=(dataset_size or n) * h * w, **kwargs)
    for start in range(0, n, batch_size):
        topk.update(features[start : start + batch_size], ids[start : start + batch_size])
    return topk


def brute_force(features: torch.Tensor, ids: torch.Tensor, top_n: int, quantile: float) -> dict[str, torch.Tensor]:
    """Everything held at once: per unit sort all inputs by (max desc, id asc); sort all positions."""
    n, units, h, w = features.shape
    flat = features.flatten(2)
    scores = flat.amax(dim=2)  # (N, U)
    kept = min(top_n, n)
    out: dict[str, list] = {"scores": [], "ids": [], "cells": [], "maps": [], "thresholds": []}
    k = quantile_count(quantile, n * h * w)
    for u in range(units):
        order = sorted(range(n), key=lambda i: (-float(scores[i, u]), int(ids[i])))[:kept]
        out["scores"].append(scores[order, u])
        out["ids"].append(ids[order])
        cells = flat[order, u].argmax(dim=1)  # first maximum in row-major order
        out["cells"].append(torch.stack((cells // w, cells % w), dim=-1))
        out["maps"].append(features[order, u])
        out["thresholds"].append(torch.sort(flat[:, u].reshape(-1), descending=True).values[k - 1])
    return {name: torch.stack(values) for name, values in out.items()}


def assert_matches(topk: UnitTopK, expected: dict[str, torch.Tensor]) -> None:
    n = topk.kept
    assert torch.equal(topk.scores[:, :n], expected["scores"])
    assert torch.equal(topk.ids[:, :n], expected["ids"])
    assert torch.equal(topk.locations()[:, :n], expected["cells"])
    assert torch.equal(topk.response_maps()[:, :n], expected["maps"])
    assert torch.equal(topk.thresholds(), expected["thresholds"])


def random_features(n: int, units: int = 5, h: int = 3, w: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, units, h, w, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- UnitTopK


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
    merged = UnitTopK.from_bytes(shard_a.to_bytes())  # through bytes, as a chord hands it over
    merged.merge(UnitTopK.from_bytes(shard_b.to_bytes()))
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


# ----------------------------------------------------------------------------- tiny networks


def encode_ids(n: int, side: int = 8) -> torch.Tensor:
    """uint8 (n, side, side) patches carrying their own index in pixels (0, 0) and (0, 1)."""
    patches = torch.zeros((n, side, side), dtype=torch.uint8)
    index = torch.arange(n)
    patches[:, 0, 0] = (index % 256).to(torch.uint8)
    patches[:, 0, 1] = (index // 256).to(torch.uint8)
    return patches


class LookupNet(nn.Module):
    """Returns a fixed feature table's rows for the patch indices encoded in the input pixels.

    logits = (max over space of features) @ fc.T, so influences can be computed by hand.
    Records whether it ran in eval mode, under inference_mode, on channels_last input.
    """

    def __init__(self, table: torch.Tensor, fc: torch.Tensor) -> None:
        super().__init__()
        self.table, self.fc = table, fc
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append(
            (self.training, torch.is_inference_mode_enabled(), x.is_contiguous(memory_format=torch.channels_last))
        )
        pixels = torch.round((x[:, 0, 0, :2] * PIXEL_STD + PIXEL_MEAN) * 255).long()
        features = self.table[pixels[:, 0] + 256 * pixels[:, 1]]
        return {"features": features, "logits": features.amax(dim=(2, 3)) @ self.fc.T}


def test_mining_pass_with_a_lookup_net_equals_brute_force() -> None:
    gen = torch.Generator().manual_seed(6)
    table = torch.rand(70, 6, 2, 3, generator=gen)
    fc = torch.randn(3, 6, generator=gen)
    net = LookupNet(table, fc).train()
    threads = torch.get_num_threads()
    calls: list[tuple[int, int, str]] = []
    result = run_mining_pass(
        net, encode_ids(70), fc, batch_size=16, top_n=5, quantile=0.02, per_image_top=2,
        progress=lambda done, total, message: calls.append((done, total, message)),
    )  # fmt: skip
    assert [c[:2] for c in calls] == [(16, 70), (32, 70), (48, 70), (64, 70), (70, 70)]
    assert set(net.seen) == {(False, True, True)}  # eval mode, inference_mode, channels_last
    assert torch.get_num_threads() == threads  # the statistics' single-thread section restored it

    assert_matches(result.topk, brute_force(table, torch.arange(70), 5, 0.02))
    assert result.probs.shape == (70, 3)

    logits = table.amax(dim=(2, 3)) @ fc.T
    np.testing.assert_allclose(result.probs, torch.softmax(logits, dim=1).numpy(), rtol=1e-6)
    decided = logits.argmax(dim=1)
    influence = table.amax(dim=(2, 3)) * fc[decided]
    expected = np.zeros((3, 6), dtype=np.int64)
    for c, units in zip(decided.tolist(), top_units(influence, k=2).tolist(), strict=True):
        expected[c, units] += 1
    np.testing.assert_array_equal(result.influence.frequency, expected)
    np.testing.assert_array_equal(result.influence.inputs_per_class, np.bincount(decided, minlength=3))


def test_mining_pass_takes_an_iterable_of_batches_and_input_ids() -> None:
    table = random_features(40, units=4, h=2, w=2, seed=7).relu()
    fc = torch.ones(2, 4)
    patches = encode_ids(40)
    ids = torch.arange(40) * 10
    batched = (patches[i : i + 9] for i in range(0, 40, 9))
    result = run_mining_pass(LookupNet(table, fc), batched, fc, num_inputs=40, input_ids=ids, top_n=3)
    assert_matches(result.topk, brute_force(table, ids, 3, 0.005))
    with pytest.raises(ValueError, match="num_inputs"):
        run_mining_pass(LookupNet(table, fc), iter([patches]), fc)
    with pytest.raises(ValueError):
        run_mining_pass(LookupNet(table, fc), iter([patches]), fc, num_inputs=30)


def test_mining_pass_stops_between_batches_when_cancelled() -> None:
    table, fc = random_features(40, units=4, h=2, w=2), torch.ones(2, 4)
    net = LookupNet(table, fc)
    with pytest.raises(Cancelled):
        run_mining_pass(net, encode_ids(40), fc, batch_size=10, cancelled=lambda: len(net.seen) >= 2)
    assert len(net.seen) == 2


class RecordingNet(nn.Module):
    """Features (B, U, 4, 4) pooled from the input; remembers the largest tensor it returned and
    how many earlier batches' feature memory is still alive when it is called again.

    Each batch's features live in their own numpy buffer (torch.from_numpy shares it, and every
    view or slice of the tensor keeps it alive), so a weak reference to the buffer sees any
    tensor still pointing into that batch, not just the tensor object itself.
    """

    def __init__(self, units: int) -> None:
        super().__init__()
        self.scale = torch.linspace(-1.0, 1.0, units).view(1, units, 1, 1)
        self.fc = torch.randn(3, units, generator=torch.Generator().manual_seed(8))
        self.largest = 0
        self.most_alive = 0
        self.buffers: list[weakref.ref] = []

    def alive(self) -> int:
        return sum(ref() is not None for ref in self.buffers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # No gc.collect(): a batch must be freed by reference counting alone, not by a later sweep.
        self.most_alive = max(self.most_alive, self.alive())
        pooled = torch.nn.functional.adaptive_avg_pool2d(x[:, :1], (4, 4)) * self.scale
        buffer = np.empty(tuple(pooled.shape), dtype=np.float32)
        features = torch.from_numpy(buffer)
        features.copy_(pooled)
        self.largest = max(self.largest, features.numel())
        self.buffers.append(weakref.ref(buffer))
        return {"features": features, "logits": features.amax(dim=(2, 3)) @ self.fc.T}


def lazy_batches(n: int, batch_size: int, side: int = 16) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(9)
    for start in range(0, n, batch_size):
        yield torch.randint(0, 256, (min(batch_size, n - start), side, side), dtype=torch.uint8, generator=gen)


def test_pass_never_holds_all_activations() -> None:
    units, batch = 32, 50
    sizes = {}
    for n in (200, 2000):
        net = RecordingNet(units)
        result = run_mining_pass(net, lazy_batches(n, batch), net.fc, num_inputs=n, top_n=16)
        # The network only ever produced one batch of features, and the pass let each go before
        # asking for the next (the previous batch's dict may still be bound while the call runs).
        assert net.largest == batch * units * 4 * 4
        assert net.most_alive <= 1
        assert net.alive() <= 1
        pending = result.topk.nbytes()["levels"]
        _ = result.topk.level_values  # folds the pending candidates in
        sizes[n] = result.topk.nbytes()
        k = quantile_count(0.005, n * 16)  # 16 and 160 values a unit
        assert sizes[n]["levels"] == units * (k + 1) * 4  # K values and their minimum
        assert pending <= units * (2 * k + 1) * 4  # plus fewer than K candidates a unit waiting to be folded in
    # Top-N part: scores, ids and 16 maps of 4 x 4 per unit, whatever the number of inputs.
    assert sizes[200]["top_n"] == sizes[2000]["top_n"] == units * 16 * (4 + 8 + 16 * 4)
    assert sizes[2000]["levels"] < 0.01 * 2000 * units * 16 * 4  # vs all activations


# ----------------------------------------------------------------------------- masks and boxes


def test_unit_masks_binarise_the_upsampled_map_at_the_threshold() -> None:
    # Input 0's map [[0, 0], [0, 4]] upsamples (bilinear, align_corners=False, 2 -> 4) to
    # 4 * outer(a, a) with a = [0, .25, .75, 1]; input 1's map [[1, 0], [0, 0]] to outer(b, b),
    # b = [1, .75, .25, 0]. K = ceil(0.25 * 8) = 2: the threshold is the 2nd largest value, 1.0.
    maps = torch.tensor([[[[0.0, 0.0], [0.0, 4.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    topk = UnitTopK(1, top_n=4, quantile=0.25, total_positions=8)
    topk.update(maps, torch.tensor([7, 3]))
    assert topk.thresholds().tolist() == [1.0]
    masks, boxes = unit_masks(topk, 0, patch_side=4)
    a = np.array([0, 0.25, 0.75, 1])
    expected = 4 * np.outer(a, a) > 1.0  # values equal to 1.0 (cells (1, 3), (3, 1)) stay out
    assert expected.sum() == 4
    np.testing.assert_array_equal(masks[0], expected)
    assert not masks[1].any()  # the peak 1.0 is not above the threshold
    # Box of the mask; for the empty one the argmax cell (0, 0) scaled to the patch.
    assert boxes.tolist() == [[2, 2, 4, 4], [0, 0, 2, 2]]


def test_empty_mask_box_rounds_the_cell_outwards() -> None:
    # K = 4 of 8 positions: the threshold is 9, so input 1 (peak 2 at cell (0, 1)) has an empty mask.
    maps = torch.tensor([[[[9.0, 9.0], [9.0, 9.0]]], [[[0.0, 2.0], [0.0, 0.0]]]])
    topk = UnitTopK(1, top_n=2, quantile=0.5, total_positions=8)
    topk.update(maps, torch.tensor([0, 1]))
    masks, boxes = unit_masks(topk, 0, patch_side=5)
    assert not masks[1].any()
    assert boxes[1].tolist() == [2, 0, 5, 3]  # cell (h=0, w=1) of 2 on 5 px covers x [2.5, 5), y [0, 2.5)


def test_to_image_box() -> None:
    assert to_image_box(np.array([100, 200, 228, 328]), np.array([2, 2, 4, 4])).tolist() == [102, 202, 104, 204]
    both = to_image_box(np.array([[0, 0, 8, 8], [10, 20, 18, 28]]), np.array([[1, 2, 3, 4], [0, 0, 8, 8]]))
    assert both.tolist() == [[1, 2, 3, 4], [10, 20, 18, 28]]
    # A 128-px patch fed to the network at 64 px: boxes scale by 2.
    assert to_image_box(np.array([100, 200, 228, 328]), np.array([2, 2, 4, 4]), patch_side=64).tolist() == [
        104, 204, 108, 208,
    ]  # fmt: skip


def test_state_dict_survives_torch_save() -> None:
    features = random_features(30)
    topk = stream(features, torch.arange(30), 8, top_n=4)
    again = UnitTopK.from_bytes(topk.to_bytes())
    assert math.isclose(again.quantile, topk.quantile)
    assert_matches(again, brute_force(features, torch.arange(30), 4, 0.005))


def test_mining_pass_shards_merge_to_the_single_pass() -> None:
    table, fc = random_features(60, units=4, h=2, w=3, seed=10), torch.randn(2, 4)
    patches, ids = encode_ids(60), torch.arange(60)
    whole = run_mining_pass(LookupNet(table, fc), patches, fc, batch_size=8, top_n=6, quantile=0.05)
    shards = [
        run_mining_pass(
            LookupNet(table, fc), patches[rows], fc, input_ids=ids[rows], dataset_size=60, top_n=6, quantile=0.05
        )
        for rows in (slice(0, 25), slice(25, 60))
    ]
    merged = UnitTopK.from_bytes(shards[0].topk.to_bytes())
    merged.merge(UnitTopK.from_bytes(shards[1].topk.to_bytes()))
    assert_matches(merged, brute_force(table, ids, 6, 0.05))
    assert torch.equal(merged.thresholds(), whole.topk.thresholds())
    shards[0].influence.merge(shards[1].influence)
    np.testing.assert_array_equal(shards[0].influence.frequency, whole.influence.frequency)


def test_heat_tiles_scale_responses_to_the_units_peak():
    responses = torch.tensor([[[0.0, 2.0], [4.0, -1.0]]])
    tiles = heat_tiles(responses, peak=4.0)
    assert tiles.dtype == np.uint8
    assert tiles.tolist() == [[[0, 128], [255, 0]]]
    assert heat_tiles(responses, peak=0.0).tolist() == [[[0, 0], [0, 0]]]


def test_unit_masks_threshold_the_same_responses_heat_tiles_colour():
    acts = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])  # (N=2, U=1, 2, 2)
    topk = stream(acts, torch.arange(2), batch_size=2, top_n=2, quantile=0.25)  # threshold: top 2 of 8 values
    responses = unit_responses(topk, 0, 4)
    assert responses.shape == (2, 4, 4)
    masks, _ = unit_masks(topk, 0, 4)
    given, _ = unit_masks(topk, 0, 4, responses=responses)
    assert np.array_equal(masks, given)
    assert np.array_equal(masks, (responses > topk.thresholds()[0]).numpy())
    assert 0 < masks.sum() < masks.size  # the threshold (2.0) splits the first map
