"""Benchmark: the streaming mining pass vs a naive forward pass, and its memory as the data grows.

Run from the project root: ``.venv/bin/python bench/mining_pass.py [--patches 1000] [--repeats 3]``.

Network: torchvision resnet18 (weights=None, fc -> 3 classes) seen through
``create_feature_extractor(model, {"layer4": "features", "fc": "logits"})``, the extractor
``mining.networks.feature_extractor`` builds; 2 threads.

Speed. The same ~1000 structured random 128-px uint8 patches go through
  * naive: a plain forward pass, fp32 NCHW, ``model(x)`` under ``torch.no_grad``, batch 64,
    the same uint8 -> float normalisation;
  * mining: ``run_mining_pass`` (inference_mode, channels_last, per-unit top-64 maps, exact
    top-0.5% levels, influence counts, probabilities), batch 64.
  * both passes: ``run_mining_pass`` then ``run_dissection_pass`` at its thresholds (every unit's
    IoU sums with a concept on every third patch), what the mine job computes (target: at most 2.2x
    the naive forward's time; the memory below includes the second pass).
Runs alternate and the medians of the repeats are compared (target: mining >= 1.0x naive). The
pass's own cost besides the forward (input conversion, UnitTopK, InfluenceTally, softmax) is
timed separately, by running run_mining_pass on an extractor that replays recorded outputs of
the same batches; minus the input conversion (timed alone), it gives the statistics' share.

Memory. Each size (1k and 10k patches) is mined in a fresh subprocess from patches generated
lazily per batch, so the input never exists as a whole. tracemalloc does not see torch's
allocations, so the process's resident memory is read from /proc/self/status: the peak (VmHWM)
of the whole process (the target: < 20% growth from 1k to 10k), the pass's own increment (peak
during the pass, after resetting VmHWM through /proc/self/clear_refs, minus the resident size
just before it), and the resident size between batches after the first 1k patches and at the end.
Each size runs twice: with glibc's default malloc (what a worker sees; the target is judged on
it) and with MALLOC_MMAP_THRESHOLD_ fixed at 128 KiB. glibc otherwise raises its mmap threshold
after the forward pass frees its large buffers, so later ones come from a heap that fragments
and RSS drifts by tens of MiB from run to run; with the threshold fixed those buffers go back to
the OS and RSS follows live memory, which shows what the pass itself keeps (its state:
top-N maps, constant, and the quantile's K values, 0.5% of the positions).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from anywhere

from mining.data import PIXEL_MEAN, PIXEL_STD, batches, to_input  # noqa: E402
from mining.pipeline import run_dissection_pass, run_mining_pass  # noqa: E402

TARGET_RATIO = 1.0
TARGET_BOTH_PASSES = 2.2  # the first pass and the second (IoU over every patch): at most 2.2 plain forwards
MASK_SIDE = 64
TARGET_GROWTH = 0.2
SIDE = 128
BATCH = 64
THREADS = 2


def build_network() -> tuple[nn.Module, nn.Module]:
    """resnet18 with a 3-class head, in eval mode, and its {"features", "logits"} extractor."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 3)
    model.eval()
    return model, create_feature_extractor(model, {"layer4": "features", "fc": "logits"})


def structured_batches(count: int, batch_size: int = BATCH, seed: int = 0) -> Iterator[torch.Tensor]:
    """uint8 (B, 128, 128) batches, generated lazily: smooth tissue-like background, bright blobs, noise."""
    gen = torch.Generator().manual_seed(seed)
    for rows in batches(count, batch_size):
        n = rows.stop - rows.start
        background = F.interpolate(torch.rand(n, 1, 8, 8, generator=gen), size=(SIDE, SIDE), mode="bicubic")
        yy, xx = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
        centre = torch.rand(n, 3, 2, generator=gen) * SIDE
        radius = 2 + torch.rand(n, 3, 1, 1, generator=gen) * 10
        dist = (yy - centre[..., 0, None, None]) ** 2 + (xx - centre[..., 1, None, None]) ** 2
        blobs = torch.exp(-dist / (2 * radius**2)).sum(dim=1, keepdim=True)
        noise = 0.05 * torch.randn(n, 1, SIDE, SIDE, generator=gen)
        pixels = (0.6 * background + 0.5 * blobs + noise).clamp(0, 1)[:, 0]
        yield (pixels * 255).round().to(torch.uint8)


def naive_forward(model: nn.Module, patches: torch.Tensor) -> None:
    """The baseline: fp32 NCHW, model(x) under no_grad, batch 64, no hooks, nothing kept."""
    with torch.no_grad():
        for rows in batches(len(patches), BATCH):
            x = patches[rows].float().div(255).sub(PIXEL_MEAN).div(PIXEL_STD)
            model(x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous())


def mining_pass(extractor: nn.Module, patches: torch.Tensor, fc_weight: torch.Tensor) -> None:
    run_mining_pass(extractor, patches, fc_weight, batch_size=BATCH)


def blob_concepts(start: int, stop: int) -> list[dict[str, np.ndarray]]:
    """Concept masks for the second pass: every third patch holds a disc of "mass" (64 x 64)."""
    yy, xx = np.mgrid[0:MASK_SIDE, 0:MASK_SIDE]
    disc = (yy - 32) ** 2 + (xx - 24) ** 2 < 14**2
    return [{"mass": disc} if index % 3 == 0 else {} for index in range(start, stop)]


def both_passes(extractor: nn.Module, patches: torch.Tensor, fc_weight: torch.Tensor, count: int) -> None:
    """What the mine job computes: the first pass, then the second at its thresholds."""
    first = run_mining_pass(extractor, patches, fc_weight, batch_size=BATCH)
    run_dissection_pass(
        extractor, patches, first.topk.thresholds(), blob_concepts, MASK_SIDE, num_inputs=count, batch_size=BATCH
    )


def record_outputs(extractor: nn.Module, patches: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """The extractor's outputs for every batch, held at once (only to time the pass without its forward)."""
    with torch.inference_mode():
        return [extractor(to_input(patches[rows])) for rows in batches(len(patches), BATCH)]


class Replay(nn.Module):
    """An "extractor" handing back recorded outputs in order: run_mining_pass without the forward."""

    def __init__(self, outputs: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.outputs = outputs
        self.next = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.next += 1
        return self.outputs[self.next - 1]


def conversion_seconds(patches: torch.Tensor) -> float:
    """Time of to_input alone over all batches (both paths convert uint8 to float likewise)."""
    start = time.perf_counter()
    for rows in batches(len(patches), BATCH):
        to_input(patches[rows])
    return time.perf_counter() - start


def bookkeeping_seconds(
    outputs: list[dict[str, torch.Tensor]], patches: torch.Tensor, fc_weight: torch.Tensor
) -> float:
    """Time of everything run_mining_pass does besides the forward (input conversion, statistics)."""
    start = time.perf_counter()
    run_mining_pass(Replay(outputs), patches, fc_weight, batch_size=BATCH)
    return time.perf_counter() - start


def measure_speed(count: int, repeats: int) -> dict[str, float]:
    model, extractor = build_network()
    fc_weight = model.fc.weight.detach()
    patches = torch.cat(list(structured_batches(count)))
    naive_forward(model, patches[:BATCH])  # warm-up: oneDNN picks its kernels on first use
    mining_pass(extractor, patches[:BATCH], fc_weight)
    outputs = record_outputs(extractor, patches)
    naive, mining, both, rest, convert = [], [], [], [], []
    for _ in range(repeats):  # alternate, so load from other processes hits both alike
        start = time.perf_counter()
        naive_forward(model, patches)
        naive.append(time.perf_counter() - start)
        start = time.perf_counter()
        mining_pass(extractor, patches, fc_weight)
        mining.append(time.perf_counter() - start)
        start = time.perf_counter()
        both_passes(extractor, patches, fc_weight, count)
        both.append(time.perf_counter() - start)
        rest.append(bookkeeping_seconds(outputs, patches, fc_weight))
        convert.append(conversion_seconds(patches))
    naive_s, mining_s, both_s, rest_s, convert_s = (statistics.median(v) for v in (naive, mining, both, rest, convert))
    per_batch = 1000 / -(-count // BATCH)
    return {
        "patches": count,
        "naive_images_per_s": count / naive_s,
        "mining_images_per_s": count / mining_s,
        "pass_vs_naive_forward": naive_s / mining_s,
        "both_passes_images_per_s": count / both_s,
        "both_passes_over_naive_forward_time": both_s / naive_s,
        "pass_without_forward_ms_per_batch": rest_s * per_batch,
        "input_conversion_ms_per_batch": convert_s * per_batch,
        "statistics_ms_per_batch": (rest_s - convert_s) * per_batch,
        "statistics_share_of_pass": (rest_s - convert_s) / mining_s,
    }


# ---------------------------------------------------------------------- memory (one subprocess a size)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(count: int) -> dict[str, float]:
    """Mine `count` lazily generated patches in this (fresh) process; resident memory in MiB."""
    torch.set_num_threads(THREADS)
    model, extractor = build_network()
    mining_pass(extractor, next(structured_batches(BATCH, seed=1)), model.fc.weight.detach())  # warm-up
    before = _status_kib("VmRSS")
    try:  # "5" resets the peak (VmHWM) to the current size, so the peak below is the pass's own
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    after_1k: list[int] = []  # resident KiB between batches, once 1k patches are done

    def sample(done: int, total: int, message: str) -> None:
        if done >= min(1000, total) and not after_1k:
            after_1k.append(_status_kib("VmRSS"))

    result = run_mining_pass(
        extractor,
        structured_batches(count),
        model.fc.weight.detach(),
        num_inputs=count,
        batch_size=BATCH,
        progress=sample,
    )
    # The second pass too: the mine job's peak is the larger of the two.
    run_dissection_pass(
        extractor,
        structured_batches(count),
        result.topk.thresholds(),
        blob_concepts,
        MASK_SIDE,
        num_inputs=count,
        batch_size=BATCH,
    )
    peak, end = _status_kib("VmHWM"), _status_kib("VmRSS")
    state = result.topk.nbytes()
    return {
        "patches": count,
        "peak_rss_mib": peak / 1024,
        "pass_increment_mib": (peak - before) / 1024 if reset else float("nan"),
        "rss_after_1k_mib": after_1k[0] / 1024,
        "rss_at_end_mib": end / 1024,
        "topk_top_n_mib": state["top_n"] / 2**20,
        "topk_levels_mib": state["levels"] / 2**20,
    }


ALLOCATORS = {"default": {}, "fixed_mmap": {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def measure_memory(count: int, allocator: str) -> dict[str, float]:
    """Run memory_child(count) in a fresh interpreter with the allocator's environment."""
    env = {**os.environ, **ALLOCATORS[allocator]}
    command = [sys.executable, __file__, "--memory-child", str(count)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=1000, help="patches for the speed comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[1000, 10000])
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return

    memory = {name: [measure_memory(n, name) for n in args.memory_sizes] for name in ALLOCATORS}
    speed = measure_speed(args.patches, args.repeats)
    growth = {name: large["peak_rss_mib"] / small["peak_rss_mib"] - 1 for name, (small, large) in memory.items()}

    print(f"resnet18 -> 3 classes, {SIDE}-px patches, batch {BATCH}, {THREADS} threads, medians of {args.repeats}")
    print(f"{'path':<44}{'images/s':>10}")
    print(f"{'naive forward (fp32 NCHW, no_grad)':<44}{speed['naive_images_per_s']:>10.1f}")
    print(f"{'run_mining_pass (top-k, levels, influence)':<44}{speed['mining_images_per_s']:>10.1f}")
    print(f"{'both passes (first + IoU over every patch)':<44}{speed['both_passes_images_per_s']:>10.1f}")
    print(f"pass / naive: {speed['pass_vs_naive_forward']:.2f}x (target >= {TARGET_RATIO})")
    print(
        f"both passes take {speed['both_passes_over_naive_forward_time']:.2f}x the naive forward's time "
        f"(target <= {TARGET_BOTH_PASSES})"
    )
    print(
        f"pass without the forward: {speed['pass_without_forward_ms_per_batch']:.1f} ms a batch, of which "
        f"input conversion {speed['input_conversion_ms_per_batch']:.1f} ms (the naive path's too) and "
        f"statistics {speed['statistics_ms_per_batch']:.1f} ms = {100 * speed['statistics_share_of_pass']:.1f}% "
        "of the pass"
    )
    print()
    print_memory(memory, growth)

    figures = {k: round(v, 4) for k, v in speed.items()}
    for name, rows in memory.items():
        for row in rows:
            size = f"{row['patches'] // 1000}k"
            for key in ("peak_rss_mib", "pass_increment_mib", "rss_after_1k_mib", "rss_at_end_mib"):
                figures[f"{key}_{size}_{name}"] = round(row[key], 1)
        figures[f"peak_memory_growth_{name}"] = round(growth[name], 4)
    figures["topk_levels_mib_10k"] = round(memory["default"][1]["topk_levels_mib"], 2)
    figures["peak_memory_growth_10k_vs_1k"] = round(growth["default"], 4)
    met = (
        speed["pass_vs_naive_forward"] >= TARGET_RATIO
        and speed["both_passes_over_naive_forward_time"] <= TARGET_BOTH_PASSES
        and growth["default"] < TARGET_GROWTH
    )
    targets = {
        "pass_vs_naive_forward": TARGET_RATIO,
        "both_passes_over_naive_forward_time": TARGET_BOTH_PASSES,
        "peak_memory_growth_10k_vs_1k": TARGET_GROWTH,
    }
    print(json.dumps({"bench": "mining_pass", "figures": figures, "targets": targets, "met": met}))


def print_memory(memory: dict[str, list[dict[str, float]]], growth: dict[str, float]) -> None:
    header = ("malloc", "patches", "peak RSS", "pass adds", "RSS @1k", "RSS @end", "top-N", "levels")
    print("resident memory, MiB")
    print(f"{header[0]:<12}" + "".join(f"{h:>11}" for h in header[1:]))
    for name, rows in memory.items():
        for row in rows:
            cells = ("peak_rss_mib", "pass_increment_mib", "rss_after_1k_mib", "rss_at_end_mib")
            print(
                f"{name:<12}{row['patches']:>11}"
                + "".join(f"{row[c]:>11.1f}" for c in cells)
                + f"{row['topk_top_n_mib']:>11.2f}{row['topk_levels_mib']:>11.2f}"
            )
    for name, value in growth.items():
        target = f" (target < {100 * TARGET_GROWTH:.0f}%)" if name == "default" else ""
        print(f"peak RSS growth 10k vs 1k, {name} malloc: {100 * value:.1f}%{target}")


if __name__ == "__main__":
    main()
