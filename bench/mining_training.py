"""Benchmark: ``mining.training.train`` vs a bare PyTorch loop on the same patches.

Run from the project root: ``.venv/bin/python bench/mining_training.py [--batches 16] [--repeats 5]``.

Both paths train a ResNet-18 (3 classes) on the same uint8 128-px patches with AdamW, batch 64,
2 threads, channels_last. ``train`` runs one epoch with everything the product uses -- class-balanced
sampling, dihedral augmentation, per-step learning rate, progress and cancel checks, and the
end-of-epoch validation (on 1/8 as many patches as it trains on, as with 80/10/10 splits; the figure
includes it). The bare loop only does forward / backward / step (the same fused AdamW) on inputs
converted beforehand, so it is the ceiling. Both
models get one untimed warm-up step (oneDNN builds its kernels on first use); repeats alternate
the two paths (and which goes first) and the figures are medians, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from anywhere

from mining.data import to_input
from mining.networks import build_network
from mining.training import TrainConfig, train

TARGET_RATIO = 0.9
SIDE = 128
BATCH = 64
VAL_FRACTION = 1 / 8  # validation patches per training patch, as with 80 / 10 / 10 patient splits


def make_patches(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 128, 128) smooth-noise patches and int64 (n,) labels, 80/10/10 imbalanced."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 1, SIDE // 8, SIDE // 8), generator=g)
    smooth = F.interpolate(coarse, size=(SIDE, SIDE), mode="bilinear", align_corners=False)[:, 0]
    labels = torch.where(torch.arange(n) % 10 < 8, 0, torch.arange(n) % 2 + 1)
    return (smooth * 255).to(torch.uint8), labels


def time_train(model: torch.nn.Module, data: tuple[torch.Tensor, ...], config: TrainConfig) -> tuple[float, float]:
    """Seconds for one epoch of ``train``: its training steps alone, and all of it (validation included)."""
    marks: list[float] = []

    def progress(done: int, total: int, message: str) -> None:
        if message.endswith("validating"):  # train reports this once the epoch's last step is done
            marks.append(time.perf_counter())

    started = time.perf_counter()
    train(model, *data, config, progress=progress)
    return marks[0] - started, time.perf_counter() - started


def bare_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: list, targets: list) -> float:
    """Seconds for forward / backward / step over ready-made channels_last float batches."""
    model.train()
    started = time.perf_counter()
    for x, y in zip(inputs, targets, strict=True):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def run(batches: int, repeats: int) -> dict:
    torch.set_num_threads(2)
    train_x, train_y = make_patches(batches * BATCH, seed=0)
    val_x, val_y = make_patches(round(batches * BATCH * VAL_FRACTION), seed=1)
    config = TrainConfig.from_scratch(epochs=1, batch_size=BATCH)
    torch.manual_seed(0)
    ours = build_network("resnet18", 3).model
    bare = build_network("resnet18", 3).model.to(memory_format=torch.channels_last)
    # The same optimiser as train's (fused AdamW), so the ratio measures the loop, not the optimiser.
    optimizer = torch.optim.AdamW(bare.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    inputs = [to_input(train_x[i : i + BATCH]) for i in range(0, len(train_x), BATCH)]
    targets = [train_y[i : i + BATCH] for i in range(0, len(train_y), BATCH)]
    # Warm-up: one step each, untimed.
    train(ours, train_x[:BATCH], train_y[:BATCH], val_x, val_y, config)
    bare_steps(bare, optimizer, inputs[:1], targets[:1])
    steps_s, ours_s, bare_s = [], [], []
    for repeat in range(repeats):
        # Alternate which path goes first, so a burst of load elsewhere does not always hit one.
        for path in ("ours", "bare") if repeat % 2 == 0 else ("bare", "ours"):
            if path == "ours":
                steps, epoch = time_train(ours, (train_x, train_y, val_x, val_y), config)
                steps_s.append(steps)
                ours_s.append(epoch)
            else:
                bare_s.append(bare_steps(bare, optimizer, inputs, targets))
    images = batches * BATCH
    ours_rate, bare_rate = images / statistics.median(ours_s), images / statistics.median(bare_s)
    steps_rate = images / statistics.median(steps_s)
    return {
        "train_images_per_s": round(ours_rate, 2),
        "train_steps_images_per_s": round(steps_rate, 2),
        "bare_loop_images_per_s": round(bare_rate, 2),
        "training_vs_bare_loop": round(ours_rate / bare_rate, 3),
        "training_steps_vs_bare_loop": round(steps_rate / bare_rate, 3),
        # Best-of-repeats ratio: less hurt by a burst of load elsewhere than the medians.
        "training_vs_bare_loop_best": round(min(bare_s) / min(ours_s), 3),
        "train_seconds": [round(s, 2) for s in ours_s],
        "train_steps_seconds": [round(s, 2) for s in steps_s],
        "bare_loop_seconds": [round(s, 2) for s in bare_s],
        "images_per_repeat": images,
        "validation_patches": len(val_x),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=16, help="batches of 64 per epoch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    figures = run(args.batches, args.repeats)
    print(f"resnet18, {SIDE}-px patches, batch {BATCH}, 2 threads, {figures['images_per_repeat']} images a repeat")
    print(f"{'path':<34}{'images/s (median)':>18}  seconds per repeat")
    print(f"{'train, 1 epoch incl. validation':<34}{figures['train_images_per_s']:>18.1f}  {figures['train_seconds']}")
    print(
        f"{'train, its steps alone':<34}{figures['train_steps_images_per_s']:>18.1f}  {figures['train_steps_seconds']}"
    )
    print(f"{'bare loop (fwd/bwd/step)':<34}{figures['bare_loop_images_per_s']:>18.1f}  {figures['bare_loop_seconds']}")
    print(
        f"ratio {figures['training_vs_bare_loop']:.3f} with validation (target >= {TARGET_RATIO}), "
        f"{figures['training_steps_vs_bare_loop']:.3f} steps alone, "
        f"{figures['training_vs_bare_loop_best']:.3f} best-of-repeats with validation"
    )
    met = figures["training_vs_bare_loop"] >= TARGET_RATIO
    targets = {"training_vs_bare_loop": TARGET_RATIO}
    print(json.dumps({"bench": "mining_training", "figures": figures, "targets": targets, "met": met}))


if __name__ == "__main__":
    main()
