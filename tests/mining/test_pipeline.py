"""mining.pipeline: the mining pass on tiny hand-built "networks" (modules returning {"features",
"logits"}), checked against brute force, and the glue to what is stored (concept masks, IoUs, sprites)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from mining.data import PIXEL_MEAN, PIXEL_STD
from mining.dissection import concept_iou
from mining.influence import top_units
from mining.pipeline import mask_sprite, patch_concept_masks, run_dissection_pass, run_mining_pass
from mining.progress import Cancelled
from mining.topk import quantile_count
from tests.mining.topk_reference import assert_matches, brute_force, random_features, through_bytes

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


# ----------------------------------------------------------------------------- the pass


def test_mining_pass_with_a_lookup_net_equals_brute_force() -> None:
    gen = torch.Generator().manual_seed(6)
    table = torch.rand(70, 6, 2, 3, generator=gen)
    fc = torch.randn(3, 6, generator=gen)
    net = LookupNet(table, fc).train()
    threads = torch.get_num_threads()
    calls: list[tuple[int, int, str]] = []
    result = run_mining_pass(
        net,
        encode_ids(70),
        fc,
        batch_size=16,
        top_n=5,
        quantile=0.02,
        per_image_top=2,
        progress=lambda done, total, message: calls.append((done, total, message)),
    )
    assert [c[:2] for c in calls] == [(16, 70), (32, 70), (48, 70), (64, 70), (70, 70)]
    assert set(net.seen) == {(False, True, True)}  # eval mode, inference_mode, channels_last
    assert torch.get_num_threads() == threads  # the statistics' single-thread section restored it

    assert_matches(result.topk, brute_force(table, torch.arange(70), 5, 0.02))
    assert result.probs.shape == (70, 3)

    logits = table.amax(dim=(2, 3)) @ fc.T
    np.testing.assert_allclose(result.probs, torch.softmax(logits, dim=1).numpy(), rtol=1e-6)
    # Without image indices every patch is its own image, counted toward every class.
    expected = np.zeros((3, 6), dtype=np.int64)
    for c in range(3):
        for units in top_units(table.amax(dim=(2, 3)) * fc[c], k=2).tolist():
            expected[c, units] += 1
    np.testing.assert_array_equal(result.influence.frequency, expected)
    assert result.influence.images == 70


def test_mining_pass_counts_influence_per_image_over_its_patches() -> None:
    gen = torch.Generator().manual_seed(8)
    table, fc = torch.rand(30, 5, 2, 2, generator=gen), torch.randn(2, 5, generator=gen)
    image_of = torch.arange(30) // 4  # 8 images, the last with 2 patches; batches cut through images
    result = run_mining_pass(LookupNet(table, fc), encode_ids(30), fc, image_index=image_of, batch_size=7)
    image_max = torch.stack([table[image_of == i].amax(dim=(0, 2, 3)) for i in range(8)])
    expected = np.zeros((2, 5), dtype=np.int64)
    for c in range(2):
        for units in top_units(image_max * fc[c], k=8).tolist():
            expected[c, units] += 1
    np.testing.assert_array_equal(result.influence.frequency, expected)
    assert result.influence.images == 8


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
    merged = through_bytes(shards[0].topk)
    merged.merge(through_bytes(shards[1].topk))
    assert_matches(merged, brute_force(table, ids, 6, 0.05))
    assert torch.equal(merged.thresholds(), whole.topk.thresholds())
    shards[0].influence.merge(shards[1].influence)
    np.testing.assert_array_equal(shards[0].influence.frequency, whole.influence.frequency)


# ----------------------------------------------------------------------------- what is stored with the units


def test_patch_concept_masks_crop_merge_and_resize():
    mass = np.zeros((8, 8), dtype=bool)
    mass[2:4, 2:4] = True
    far = np.zeros((8, 8), dtype=bool)
    far[7, 7] = True
    found = patch_concept_masks(
        [(mass, ["mass_shape.oval", "mass_margin.circumscribed"]), (far, ["x"])], (0, 0, 4, 4), 4
    )
    assert set(found) == {"mass_shape.oval", "mass_margin.circumscribed"}  # the far finding misses the patch
    assert found["mass_shape.oval"].sum() == 4 and found["mass_shape.oval"][2:4, 2:4].all()
    doubled = patch_concept_masks([(mass, ["m"])], (0, 0, 4, 4), 8)
    assert doubled["m"].shape == (8, 8) and doubled["m"].sum() == 16 and doubled["m"][4:8, 4:8].all()


def test_dissection_pass_equals_brute_force_over_every_patch() -> None:
    """Network Dissection IoU: every patch's upsampled, thresholded map against its concept masks."""
    gen = torch.Generator().manual_seed(12)
    table, fc = torch.rand(40, 6, 3, 3, generator=gen), torch.ones(2, 6)
    side = 12
    thresholds = torch.quantile(table.permute(1, 0, 2, 3).reshape(6, -1), 0.9, dim=1)
    rng = np.random.default_rng(0)
    concepts = [{code: rng.random((side, side)) > 0.6 for code in ("a", "b") if rng.random() < 0.5} for _ in range(40)]
    calls: list[tuple[int, int]] = []

    def concepts_of(start: int, stop: int) -> list[dict[str, np.ndarray]]:
        calls.append((start, stop))
        return concepts[start:stop]

    tally = run_dissection_pass(LookupNet(table, fc), encode_ids(40), thresholds, concepts_of, side, batch_size=16)
    assert calls == [(0, 16), (16, 32), (32, 40)]
    up = torch.nn.functional.interpolate(table, size=(side, side), mode="bilinear", align_corners=False)
    masks = (up > thresholds.view(1, -1, 1, 1)).numpy()  # (N, U, S, S)
    empty = np.zeros((side, side), dtype=bool)
    got = tally.ious()
    for u in range(6):
        expected = concept_iou(masks[:, u], {c: np.stack([p.get(c, empty) for p in concepts]) for c in ("a", "b")})
        for code in ("a", "b"):
            assert got[code][u] == pytest.approx(expected[code], abs=1e-12)


def test_mask_sprite_places_rank_i_at_tile_i():
    masks = np.zeros((3, 2, 2), dtype=bool)
    masks[2, 1, 1] = True
    sheet = mask_sprite(masks, columns=2)
    assert sheet.shape == (4, 4)
    assert sheet.sum() == 1 and sheet[3, 1]  # tile 2 = row 1, column 0; its pixel (1, 1)
