"""Benchmark: training and mining throughput on this machine's device, in fp32 and in the auto precision.

Run from the project root: ``.venv/bin/python bench/gpu.py [--side 32] [--train-steps 24] [--mine-patches 384]``.

The device is what a worker with ``DEEPMINER_DEVICE=auto`` gets (CUDA when there is a GPU, else the CPU)
and the auto precision what ``DEEPMINER_PRECISION=auto`` gives there (bf16 autocast on a GPU with bf16,
else fp16 with a loss scaler; fp32 on the CPU, where the two columns measure the same thing twice and
their ratio shows the noise). Defaults: 32-px patches on the CPU (under two minutes on 2 busy cores),
128-px on a GPU, with more steps and patches.

Network: torchvision resnet18 (random init, 3 classes) through the project's own code, the same initial
weights and the same patches for both precisions:
  * training: ``mining.training.train_one_epoch`` (AdamW, balanced sampling, flips, channels_last,
    pinned non-blocking copies on CUDA), patches per second over ``--train-steps`` steps after one
    warm-up epoch, then ``evaluate`` on held-out patches (malignant-vs-rest AUC of each run);
  * mining: ``mining.pipeline.run_mining_pass`` (top-64 maps, exact top-0.5% thresholds, influence) with
    the fp32-trained network, patches per second (median of ``--repeats``), and how many of the 20
    selected units per class the auto precision shares with fp32.
The patches are a learnable toy (0: a bright square, 1: darker tissue, 2: stripes, on a smooth noisy
background), so the AUCs mean something. Targets: fp32's AUC at least 0.9, the auto run's within 0.05 of it, at least 18
of 20 selected units shared per class, and on a GPU auto at least 1.5x fp32's mining throughput (no speed
target on the CPU, where auto is fp32: on a busy 2-core machine the same code's ratio wandered 0.36-2.18).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from anywhere

from mining.devices import select_device  # noqa: E402
from mining.influence import select_units  # noqa: E402
from mining.networks import feature_extractor  # noqa: E402
from mining.pipeline import run_mining_pass  # noqa: E402
from mining.precision import Precision, select_precision  # noqa: E402
from mining.training import TrainConfig, TrainingRun, evaluate, train_one_epoch  # noqa: E402

TARGET_AUC_GAP = 0.05
TARGET_FP32_AUC = 0.9  # the network must have learned the toy, or agreeing AUCs say nothing
TARGET_SHARED_UNITS = 18  # of the 20 selected per class
TARGET_MINING_SPEEDUP = {"cuda": 1.5}  # none on the CPU: auto is fp32 there, the ratio is only noise
THREADS = 2
CLASS_NAMES = ["normal", "benign", "malignant"]


def toy_patches(count: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (count, side, side) patches and int64 (count,) labels, classes in turn (see the module doc)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    background = F.interpolate(torch.rand(count, 1, 8, 8, generator=gen), size=(side, side), mode="bicubic")[:, 0]
    pixels = 0.35 + 0.2 * background + 0.05 * torch.randn(count, side, side, generator=gen)
    square = side // 4
    corners = torch.randint(0, side - square, (count, 2), generator=gen)
    for i in torch.nonzero(labels == 0).flatten().tolist():
        y, x = corners[i].tolist()
        pixels[i, y : y + square, x : x + square] = 0.9
    pixels[labels == 1] -= 0.2
    pixels[labels == 2, ::4] += 0.3
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8), labels


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 3)
    return model.to(device)


def train_run(
    initial: nn.Module, patches: torch.Tensor, labels: torch.Tensor, config: TrainConfig, precision: Precision
) -> tuple[nn.Module, float]:
    """A copy of ``initial`` trained for one epoch of ``config`` in ``precision``; and its patches per second."""
    device = next(initial.parameters()).device
    warm = TrainingRun.start(copy.deepcopy(initial), config, config.batch_size * 2, precision=precision)
    train_one_epoch(warm, patches[: config.batch_size * 2], labels[: config.batch_size * 2], 1)  # kernels, autotune
    model = copy.deepcopy(initial)
    run = TrainingRun.start(model, config, len(patches), precision=precision)
    synchronize(device)
    started = time.perf_counter()
    train_one_epoch(run, patches, labels, 1)
    synchronize(device)
    return model, run.steps_per_epoch * run.batch_size / (time.perf_counter() - started)


def mine_run(extractor: nn.Module, patches: torch.Tensor, weight: torch.Tensor, precision: Precision) -> tuple:
    """One first mining pass in ``precision``: (result, patches per second)."""
    device = next(extractor.parameters()).device
    synchronize(device)
    started = time.perf_counter()
    result = run_mining_pass(
        extractor, patches, weight, batch_size=64 if device.type == "cpu" else 256, precision=precision
    )
    synchronize(device)
    return result, len(patches) / (time.perf_counter() - started)


def main() -> None:
    device = select_device("auto")
    gpu = device.type == "cuda"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=128 if gpu else 32)
    parser.add_argument("--train-steps", type=int, default=60 if gpu else 24)
    parser.add_argument("--batch-size", type=int, default=128 if gpu else 32)
    parser.add_argument("--mine-patches", type=int, default=8192 if gpu else 384)
    parser.add_argument("--repeats", type=int, default=3 if gpu else 2)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    auto = select_precision("auto", device)
    precisions = {"fp32": Precision("fp32", device.type), "auto": auto}
    name = torch.cuda.get_device_name(device) if gpu else "cpu"

    config = TrainConfig.from_scratch(epochs=1, batch_size=args.batch_size, warmup_fraction=0.1)
    train_x, train_y = toy_patches(args.train_steps * args.batch_size, args.side, seed=1)
    val_x, val_y = toy_patches(300, args.side, seed=2)
    mine_x, _ = toy_patches(args.mine_patches, args.side, seed=3)
    initial = network(device)

    trained: dict[str, nn.Module] = {}
    train_speed: dict[str, float] = {}
    val_auc: dict[str, float | None] = {}
    for key, precision in precisions.items():
        trained[key], train_speed[key] = train_run(initial, train_x, train_y, config, precision)
        val_auc[key] = evaluate(trained[key], val_x, val_y, CLASS_NAMES, precision=precision).aucs["malignant"]

    extractor = feature_extractor(trained["fp32"])
    weight = trained["fp32"].fc.weight.detach().cpu()
    mine_speeds: dict[str, list[float]] = {key: [] for key in precisions}
    selections = {}
    mine_run(extractor, mine_x[:128], weight, auto)  # warm-up
    for _ in range(args.repeats):  # alternate, so drift on a busy machine hits both alike
        for key, precision in precisions.items():
            result, speed = mine_run(extractor, mine_x, weight, precision)
            mine_speeds[key].append(speed)
            selections[key] = select_units(result.influence.frequency, result.influence.influence_sum)
    mine_speed = {key: statistics.median(speeds) for key, speeds in mine_speeds.items()}
    shared = min(len(set(units) & set(selections["auto"][c])) for c, units in selections["fp32"].items())
    gap = abs((val_auc["auto"] or 0.0) - (val_auc["fp32"] or 0.0))
    train_ratio = train_speed["auto"] / train_speed["fp32"]
    mine_ratio = mine_speed["auto"] / mine_speed["fp32"]

    print(f"device {device} ({name}), auto precision {auto.name}, {args.side}-px patches, resnet18")
    print(f"{'what':40s} {'fp32':>10s} {'auto':>10s} {'auto/fp32':>10s}")
    print(f"{'training, patches/s':40s} {train_speed['fp32']:10.1f} {train_speed['auto']:10.1f} {train_ratio:10.2f}")
    print(
        f"{'mining (first pass), patches/s':40s} {mine_speed['fp32']:10.1f} {mine_speed['auto']:10.1f} {mine_ratio:10.2f}"
    )
    print(f"{'validation malignant AUC':40s} {val_auc['fp32'] or 0:10.3f} {val_auc['auto'] or 0:10.3f} {gap:10.3f}")
    print(f"{'selected units shared with fp32 (min/20)':40s} {'':10s} {shared:10d}")

    targets = {
        "fp32_auc_min": TARGET_FP32_AUC,
        "auc_gap_max": TARGET_AUC_GAP,
        "selected_units_shared_min": TARGET_SHARED_UNITS,
        "mining_speedup_auto_vs_fp32_min": TARGET_MINING_SPEEDUP.get(device.type),
    }
    figures = {
        "device_name": name,
        "precision_auto": auto.name,
        "side": args.side,
        "train_patches_per_s": {key: round(value, 1) for key, value in train_speed.items()},
        "mine_patches_per_s": {key: round(value, 1) for key, value in mine_speed.items()},
        "train_speedup_auto_vs_fp32": round(train_ratio, 3),
        "mining_speedup_auto_vs_fp32": round(mine_ratio, 3),
        "val_auc_malignant": {key: None if value is None else round(value, 4) for key, value in val_auc.items()},
        "auc_gap": round(gap, 4),
        "selected_units_shared_min": shared,
    }
    met = (
        val_auc["fp32"] is not None
        and val_auc["auto"] is not None
        and val_auc["fp32"] >= TARGET_FP32_AUC
        and gap <= TARGET_AUC_GAP
        and shared >= TARGET_SHARED_UNITS
        and mine_ratio >= TARGET_MINING_SPEEDUP.get(device.type, 0.0)
    )
    line = {"bench": "gpu", "device": str(device), "figures": figures, "targets": targets, "met": bool(met)}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
