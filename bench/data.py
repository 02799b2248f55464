"""Benchmark: training from the on-disk patch store vs from an in-memory crop tensor, and the store's memory
as the dataset grows.

Run from the project root: ``.venv/bin/python bench/data.py [--side 64] [--steps 10] [--repeats 3]``.

Stores are written as the patch job writes them (``mining.patch_store.chunk_bytes``, 1024 crops a chunk)
into a temporary folder, from synthetic uint8 crops (structured noise; the reads do not care what the
pixels are). 64-px crops keep the 100k store at 400 MiB on disk (128 px would be 1.6 GB; the reading
path is the same, a chunk row is side² bytes).

Speed. ``mining.training.train_one_epoch`` (resnet18, fc -> 3 classes, AdamW, balanced sampling,
dihedral augmentation, channels_last, batch 64, 2 threads) over a 10k-crop store's rows and over the same
crops as one tensor, ``--steps`` optimiser steps an epoch; the two alternate ``--repeats`` times and
the medians of images/s are compared (target: store >= 0.9x in-memory); the gather of a batch of 64
random rows is also timed alone for both. Loader workers: 0 (the CPU
default: the forward passes already use the cores).

Memory. Each size (10k and 100k crops) runs in a fresh subprocess: a whole epoch of ``train_one_epoch``
(every crop drawn once on average, balanced, batch 256) with a tiny two-layer CNN, so the data path
dominates, then the peak resident size (VmHWM from /proc/self/status) is read. Target: < 20% growth
from 10k to 100k. The imports alone (torch with its CUDA libraries, torchvision, sklearn) hold most of
it, so the peak over the resident size just before the epoch is printed as well.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from anywhere

from mining.patch_store import PatchStore, StoreManifest, chunk_bytes  # noqa: E402
from mining.training import TrainConfig, TrainingRun, train_one_epoch  # noqa: E402

CHUNK_ROWS = 1024
SIZES = (10_000, 100_000)


def write_store(folder: Path, count: int, side: int, seed: int = 0) -> StoreManifest:
    """A store of ``count`` synthetic crops under ``folder``, chunk by chunk (never all in memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    ramp = np.linspace(0, 120, side, dtype=np.float32)
    for start in range(0, count, CHUNK_ROWS):
        rows = min(CHUNK_ROWS, count - start)
        noise = rng.integers(0, 100, (rows, side, side), dtype=np.uint8)
        crops = (noise + ramp[None, None, :].astype(np.uint8)).astype(np.uint8)
        names.append(f"chunk{len(names)}.npy")
        (folder / names[-1]).write_bytes(chunk_bytes(crops))
    manifest = StoreManifest(side, count, CHUNK_ROWS, names, "patch_ids.npy")
    (folder / "manifest.json").write_bytes(manifest.to_json())
    return manifest


def open_store(folder: Path) -> PatchStore:
    manifest = StoreManifest.from_json((folder / "manifest.json").read_bytes())
    return PatchStore(manifest, lambda i: folder / manifest.chunks[i])


def labels_for(count: int) -> torch.Tensor:
    return torch.from_numpy((np.arange(count) % 10 == 0).astype(np.int64) + (np.arange(count) % 17 == 0))


def _epoch_speed(crops: torch.Tensor | PatchStore, labels: torch.Tensor, steps: int) -> float:
    """images/s of one epoch of ``steps`` steps of resnet18 training."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    config = TrainConfig.from_scratch(epochs=1, batch_size=64, progress_every=10_000)
    run = TrainingRun.start(model, config, len(labels))
    run.steps_per_epoch = steps
    started = time.perf_counter()
    train_one_epoch(run, crops, labels, 1)
    return steps * 64 / (time.perf_counter() - started)


def speed(folder: Path, steps: int, repeats: int) -> dict[str, float]:
    store = open_store(folder)
    memory = store[:]  # the same crops as one tensor
    labels = labels_for(len(store))
    rates: dict[str, list[float]] = {"memory": [], "store": []}
    _epoch_speed(memory, labels, 2)  # warm-up: allocator, kernels
    for repeat in range(repeats):  # alternating which goes first: the machine's load drifts
        for mode in ("memory", "store") if repeat % 2 == 0 else ("store", "memory"):
            rates[mode].append(_epoch_speed(memory if mode == "memory" else store, labels, steps))
    result = {mode: statistics.median(values) for mode, values in rates.items()}
    generator = torch.Generator().manual_seed(1)
    for mode, crops in (("memory", memory), ("store", store)):  # the gather alone, 64 random rows
        started = time.perf_counter()
        for _ in range(100):
            crops[torch.randint(0, len(labels), (64,), generator=generator)]
        result[f"{mode}_gather_ms"] = (time.perf_counter() - started) * 10
    return result


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def memory_child(folder: Path) -> dict[str, float]:
    """One epoch over the whole store with a tiny network; peak RSS (bytes) and throughput."""
    torch.set_num_threads(2)
    store = open_store(folder)
    labels = labels_for(len(store))
    torch.manual_seed(0)
    config = TrainConfig.from_scratch(epochs=1, batch_size=256, progress_every=10_000)
    run = TrainingRun.start(TinyNet(), config, len(store))
    before = _vm("VmRSS")  # the interpreter, torch and the project's imports
    started = time.perf_counter()
    train_one_epoch(run, store, labels, 1)
    seconds = time.perf_counter() - started
    return {"count": len(store), "peak_rss": _vm("VmHWM"), "rss_before": before, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(memory_child(args.child)))
        return
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="bench-data-", dir=os.environ.get("BENCH_DIR")) as tmp:
        folders = {count: Path(tmp) / f"n{count}" for count in SIZES}
        for count, folder in folders.items():
            write_store(folder, count, args.side, seed=count)
        rates = speed(folders[SIZES[0]], args.steps, args.repeats)
        children = {}
        for count, folder in folders.items():
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(folder)], capture_output=True, text=True, check=True
            )
            children[count] = json.loads(out.stdout.strip().splitlines()[-1])
        disk = sum(f.stat().st_size for f in folders[SIZES[1]].iterdir())
    ratio = rates["store"] / rates["memory"]
    small, big = children[SIZES[0]]["peak_rss"], children[SIZES[1]]["peak_rss"]
    growth = big / small - 1
    print(f"{'training, resnet18, ' + str(args.side) + ' px, batch 64':<44} {'images/s (median)':>18}")
    print(f"{'  in-memory tensor':<44} {rates['memory']:>18.1f}")
    print(f"{'  patch store (10k crops, 0 loader workers)':<44} {rates['store']:>18.1f}")
    print(f"{'  store / in-memory':<44} {ratio:>18.3f}")
    print(f"{'  gather of 64 random rows, ms: memory':<44} {rates['memory_gather_ms']:>18.2f}")
    print(f"{'  gather of 64 random rows, ms: store':<44} {rates['store_gather_ms']:>18.2f}")
    print(
        f"\n{'one epoch, tiny CNN, batch 256':<30} {'crops':>8} {'peak RSS MiB':>13} {'over imports':>13} {'seconds':>8}"
    )
    for count in SIZES:
        child = children[count]
        over = (child["peak_rss"] - child["rss_before"]) / 2**20
        print(f"{'':<30} {count:>8} {child['peak_rss'] / 2**20:>13.1f} {over:>13.1f} {child['seconds']:>8.1f}")
    print(f"peak RSS growth 10k -> 100k: {100 * growth:.1f}% (store of 100k on disk: {disk / 2**20:.0f} MiB)")
    figures = {
        "side": args.side,
        "memory_images_per_s": round(rates["memory"], 2),
        "store_images_per_s": round(rates["store"], 2),
        "store_vs_memory": round(ratio, 4),
        "peak_rss_mib_10k": round(small / 2**20, 1),
        "peak_rss_mib_100k": round(big / 2**20, 1),
        "peak_rss_growth": round(growth, 4),
        "peak_rss_over_imports_mib_10k": round((small - children[SIZES[0]]["rss_before"]) / 2**20, 1),
        "peak_rss_over_imports_mib_100k": round((big - children[SIZES[1]]["rss_before"]) / 2**20, 1),
        "gather_ms_memory": round(rates["memory_gather_ms"], 3),
        "gather_ms_store": round(rates["store_gather_ms"], 3),
        "store_mib_100k": round(disk / 2**20, 1),
    }
    targets = {"store_vs_memory": ">= 0.9", "peak_rss_growth": "< 0.2"}
    met = ratio >= 0.9 and growth < 0.2
    print(json.dumps({"bench": "data", "figures": figures, "targets": targets, "met": met}))


if __name__ == "__main__":
    main()
