"""mining.patch_store: crops read back from chunk files equal the in-memory tensor, and training and both
mining passes give bit-identical results from either (with and without DataLoader worker processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mining.patch_store import PatchStore, StoreManifest, chunk_bytes
from mining.pipeline import run_dissection_pass, run_mining_pass
from mining.training import TrainConfig, train


def write_store(folder: Path, crops: torch.Tensor, chunk_rows: int) -> StoreManifest:
    """Chunk files of ``crops`` under ``folder`` as the patch job lays them out, and their manifest."""
    names = []
    for start in range(0, len(crops), chunk_rows):
        names.append(f"chunk{len(names)}.npy")
        (folder / names[-1]).write_bytes(chunk_bytes(crops[start : start + chunk_rows]))
    manifest = StoreManifest(int(crops.shape[-1]), len(crops), chunk_rows, names, "patch_ids.npy")
    return StoreManifest.from_json(manifest.to_json())


def open_store(folder: Path, crops: torch.Tensor, chunk_rows: int = 7, **kwargs: int) -> PatchStore:
    manifest = write_store(folder, crops, chunk_rows)
    return PatchStore(manifest, lambda i: folder / manifest.chunks[i], **kwargs)


def random_crops(n: int, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, side, side), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_every_kind_of_index_reads_what_the_tensor_holds(tmp_path: Path) -> None:
    crops = random_crops(30)
    store = open_store(tmp_path, crops)  # 5 chunks, the last one of 2 rows
    assert store.shape == crops.shape and len(store) == 30 and store.dtype == torch.uint8
    assert torch.equal(store[:], crops)
    assert torch.equal(store[13], crops[13])
    assert torch.equal(store[np.int64(29)], crops[29])
    assert torch.equal(store[3:17], crops[3:17])  # runs across chunk edges
    rows = torch.tensor([29, 0, 7, 7, 13, 6])
    assert torch.equal(store[rows], crops[rows])
    mask = np.arange(30) % 4 == 1
    assert torch.equal(store[mask], crops[torch.from_numpy(mask)])
    view = store.subset(np.array([20, 2, 9]))
    assert torch.equal(view[:], crops[[20, 2, 9]]) and torch.equal(view[1], crops[2])


def test_batches_through_loader_workers_come_in_order(tmp_path: Path) -> None:
    crops = random_crops(40)
    store = open_store(tmp_path, crops, workers=2, prefetch=2)
    row_sets = [torch.tensor([39, 1, 2]), slice(5, 21), torch.tensor([0])]
    got = list(store.batches(row_sets))
    assert [tuple(batch.shape) for batch in got] == [(3, 16, 16), (16, 16, 16), (1, 16, 16)]
    for batch, rows in zip(got, row_sets, strict=True):
        assert torch.equal(batch, crops[rows])


def test_a_short_chunk_or_a_wrong_one_is_refused(tmp_path: Path) -> None:
    crops = random_crops(10)
    manifest = write_store(tmp_path, crops, 4)
    chunk = tmp_path / manifest.chunks[1]
    chunk.write_bytes(chunk.read_bytes()[:-5])  # a truncated copy
    store = PatchStore(manifest, lambda i: tmp_path / manifest.chunks[i])
    assert torch.equal(store[0:4], crops[0:4])
    with pytest.raises(OSError, match="chunk 1 is short"):
        store[7]
    (tmp_path / manifest.chunks[2]).write_bytes(chunk_bytes(crops[:3]))  # 3 rows where 2 belong
    with pytest.raises(ValueError, match="chunk 2 holds"):
        store[9]
    with pytest.raises(ValueError, match="3 chunks for 10 rows of 5"):
        StoreManifest.from_json(StoreManifest(16, 10, 5, manifest.chunks, "ids").to_json())
    with pytest.raises(ValueError, match="rows outside"):
        PatchStore(manifest, lambda i: tmp_path, np.array([10]))
    with pytest.raises(ValueError, match="uint8"):
        chunk_bytes(crops.float())


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_seeded_training_from_a_store_gives_the_same_weights_and_history(tmp_path: Path, workers: int) -> None:
    train_x, val_x = random_crops(96, seed=1), random_crops(30, seed=2)
    train_y, val_y = torch.arange(96) % 3, torch.arange(30) % 3
    config = TrainConfig.from_scratch(epochs=2, batch_size=16, eval_batch_size=8)
    (tmp_path / "t").mkdir()
    (tmp_path / "v").mkdir()
    stores = open_store(tmp_path / "t", train_x, 10, workers=workers), open_store(tmp_path / "v", val_x, 10)
    runs = []
    for x, v in ((train_x, val_x), stores):
        model = _tiny_net()
        result = train(model, x, train_y, v, val_y, config)
        runs.append((result, model.state_dict()))
    (memory, memory_weights), (stored, stored_weights) = runs
    assert [{k: h[k] for k in h if k != "seconds"} for h in memory.history] == [
        {k: h[k] for k in h if k != "seconds"} for h in stored.history
    ]
    assert memory.best_epoch == stored.best_epoch
    assert np.array_equal(memory.val_probs, stored.val_probs)
    assert all(torch.equal(memory_weights[key], stored_weights[key]) for key in memory_weights)
    assert all(torch.equal(memory.best_state[key], stored.best_state[key]) for key in memory.best_state)


class _FeatureNet(nn.Module):
    """A seeded conv net returning {"features": (B, 6, 4, 4), "logits": (B, 3)}, as mining's extractor."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 6, 3, stride=4, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.conv(x))
        return {"features": features, "logits": self.fc(features.mean(dim=(2, 3)))}


@pytest.mark.parametrize("workers", [0, 2])
def test_both_mining_passes_from_a_store_give_the_same_units_and_ious(tmp_path: Path, workers: int) -> None:
    crops = random_crops(50, seed=4)
    store = open_store(tmp_path, crops, 8, workers=workers)
    net = _FeatureNet()
    images = torch.arange(50) // 5  # ten images of five patches

    def concepts(start: int, stop: int) -> list[dict[str, np.ndarray]]:
        return [{"a": (crops[i, :, :] > 128).numpy()} if i % 3 else {} for i in range(start, stop)]

    results = []
    for patches in (crops, store):
        mined = run_mining_pass(net, patches, net.fc.weight, image_index=images, batch_size=16, top_n=5)
        tally = run_dissection_pass(net, patches, mined.topk.thresholds(), concepts, 16, batch_size=16)
        results.append((mined, tally))
    (memory, memory_ious), (stored, stored_ious) = results
    assert torch.equal(memory.topk.ids, stored.topk.ids) and torch.equal(memory.topk.scores, stored.topk.scores)
    assert torch.equal(memory.topk.thresholds(), stored.topk.thresholds())
    assert np.array_equal(memory.influence.frequency, stored.influence.frequency)
    assert np.array_equal(memory.probs, stored.probs)
    assert {c: v.tolist() for c, v in memory_ious.ious().items()} == {
        c: v.tolist() for c, v in stored_ious.ious().items()
    }
    assert memory_ious.ious()["a"].max() > 0  # the concept was seen at all
