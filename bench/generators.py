"""Benchmark: the phantom generators and the bootstrap AUC interval, the timings the tests used to assert.

Run from the project root: ``.venv/bin/python bench/generators.py [--repeats 3]``.

Tests assert behaviour only (DEVELOPERS.md: no timed assertions in tests), so the speeds the phantom and
metrics tests once checked with a stopwatch are measured here, each beside a baseline from the same run:

1. Mammogram phantoms (10 images at 512 x 640): CPU seconds per image, target <= 0.1 s. Baseline: encoding
   the same images as PNG with Pillow, which the demo import does to every phantom anyway.
2. Hip phantoms (200 images at 512 x 512): CPU seconds for the lot, target < 15 s. Baseline: PNG encoding.
3. ``mining.metrics.auc_ci`` on 5,000 scores with 500 bootstrap resamples: target < 2 s. Baseline: the
   textbook stratified bootstrap, scikit-learn's ``roc_auc_score`` on each of 500 resamples.

CPU time (``time.process_time``) is robust to a machine shared with other jobs; medians over repeats.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from anywhere

from mining.metrics import auc_ci
from mining.phantoms import generate_hip_phantoms, generate_mammogram_phantoms

TARGET_MAMMOGRAM_S_PER_IMAGE = 0.1
TARGET_HIPS_200_S = 15.0
TARGET_AUC_CI_S = 2.0
N_BOOT = 500


def cpu_seconds(work: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of ``work()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return statistics.median(times)


def encode_pngs(images: list[np.ndarray]) -> None:
    for pixels in images:
        PILImage.fromarray(pixels).save(io.BytesIO(), format="PNG")


def naive_bootstrap(y: np.ndarray, s: np.ndarray, n_boot: int) -> tuple[float, float]:
    """The textbook stratified bootstrap: resample each class, call scikit-learn's AUC each time."""
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    aucs = []
    for _ in range(n_boot):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        aucs.append(roc_auc_score(y[idx], s[idx]))
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    mammograms = [im.pixels for im in generate_mammogram_phantoms(10, seed=1)]
    hips = [im.pixels for im in generate_hip_phantoms(200, seed=2)]
    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.3
    s = rng.normal(size=5000) + y

    rows = {
        "mammogram_s_per_image": cpu_seconds(lambda: list(generate_mammogram_phantoms(10, seed=1)), args.repeats) / 10,
        "mammogram_png_s_per_image": cpu_seconds(lambda: encode_pngs(mammograms), args.repeats) / 10,
        "hips_200_s": cpu_seconds(lambda: generate_hip_phantoms(200, seed=2), args.repeats),
        "hips_200_png_s": cpu_seconds(lambda: encode_pngs(hips), args.repeats),
        "auc_ci_s": cpu_seconds(lambda: auc_ci(y, s, n_boot=N_BOOT, seed=0), args.repeats),
        "auc_ci_naive_s": cpu_seconds(lambda: naive_bootstrap(y, s, N_BOOT), args.repeats),
    }
    figures = {key: round(value, 4) for key, value in rows.items()}
    figures["auc_ci_speedup_vs_naive"] = round(rows["auc_ci_naive_s"] / rows["auc_ci_s"], 1)

    print(f"{'what':52s} {'ours':>10s} {'baseline':>10s}")
    print(f"{'mammogram phantom, CPU s per image (PNG encode)':52s} {rows['mammogram_s_per_image']:10.4f} "
          f"{rows['mammogram_png_s_per_image']:10.4f}")  # fmt: skip
    print(f"{'200 hip phantoms, CPU s (PNG encode)':52s} {rows['hips_200_s']:10.3f} {rows['hips_200_png_s']:10.3f}")
    print(f"{'auc_ci, 5k scores x 500 resamples, CPU s (naive)':52s} {rows['auc_ci_s']:10.4f} "
          f"{rows['auc_ci_naive_s']:10.4f}")  # fmt: skip

    targets = {
        "mammogram_s_per_image": TARGET_MAMMOGRAM_S_PER_IMAGE,
        "hips_200_s": TARGET_HIPS_200_S,
        "auc_ci_s": TARGET_AUC_CI_S,
    }
    met = all(rows[key] <= target for key, target in targets.items())
    print(json.dumps({"bench": "generators", "figures": figures, "targets": targets, "met": met}))


if __name__ == "__main__":
    main()
