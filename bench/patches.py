"""Benchmark: vectorised DeepMiner patch extraction vs a per-patch Python loop.

Run from the project root: ``.venv/bin/python bench/patches.py [--images 100] [--repeats 7]``.

Both paths get the same tissue mask, so they do the same work: the naive path
loops over the grid, sums ``mask[y0:y1, x0:x1]`` per patch and per finding, and
crops by slicing (stacked into one array, as crop_patches returns). The tissue
mask (Otsu + components, shared by both) is most of the vectorised path's time,
and the extraction job stores boxes and labels only (crops are cut later, when
a model trains), so the target is checked on what the job does per patch: grid
+ labels with the mask given. Labels + crops and the end-to-end figure (tissue
mask + grid + labels + crops) are reported beside it. Timings are medians over repeats run in
alternation, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from anywhere

from mining.patches import (
    CLASSES,
    PatchParams,
    crop_patches,
    extract_patches,
    patch_geometry,
    tissue_mask,
)
from mining.phantoms import generate_mammogram_phantoms

TARGET_SPEEDUP = 10.0

Finding = tuple[np.ndarray, str]
Case = tuple[np.ndarray, list[Finding]]  # pixels uint8 (H, W), findings
# Kept boxes int32 (N, 4), labels int64 (N,), tissue fractions float32 (N,).
Labels = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_cases(count: int) -> list[Case]:
    """Demo phantoms as (pixels, [(mask, pathology), ...])."""
    return [
        (image.pixels, [(f.mask, f.pathology) for f in image.findings])
        for image in generate_mammogram_phantoms(count, seed=0)
    ]


# ----------------------------------------------------------------- vectorised path


def vectorised_labels(pixels: np.ndarray, findings: list[Finding], tissue: np.ndarray | None) -> Labels:
    """extract_patches (which computes the tissue mask when it is None)."""
    patch_set = extract_patches(pixels, findings, tissue=tissue)
    return patch_set.boxes, patch_set.labels, patch_set.tissue_fraction


def vectorised_crops(pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return crop_patches(pixels, boxes, side=patch_geometry(pixels.shape[1])[0])


# ---------------------------------------------------------------------- naive path


def naive_labels(pixels: np.ndarray, findings: list[Finding], tissue: np.ndarray | None) -> Labels:
    """One Python iteration per grid patch, counting pixels by slicing."""
    params = PatchParams()
    if tissue is None:
        tissue = tissue_mask(pixels)
    height, width = pixels.shape
    side, stride = patch_geometry(width, params)
    area = side * side
    # Most severe first, so the first class that qualifies is the label.
    by_class = [
        (CLASSES.index(name), [(m, int(m.sum())) for m, p in findings if p == name]) for name in ("malignant", "benign")
    ]
    boxes, labels, fractions = [], [], []
    for y0 in range(0, height - side + 1, stride):
        for x0 in range(0, width - side + 1, stride):
            window = (slice(y0, y0 + side), slice(x0, x0 + side))
            tissue_count = int(tissue[window].sum())
            if tissue_count < params.min_tissue * area - 1e-9:
                continue
            boxes.append((x0, y0, x0 + side, y0 + side))
            labels.append(_naive_label(window, area, by_class, params.min_finding_fraction))
            fractions.append(tissue_count / area)
    return (
        np.array(boxes, dtype=np.int32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.array(fractions, dtype=np.float32),
    )


def _naive_label(
    window: tuple[slice, slice],
    area: int,
    by_class: list[tuple[int, list[tuple[np.ndarray, int]]]],
    fraction: float,
) -> int:
    """Label of one patch, checking each finding's share of the patch and of itself."""
    for index, masks in by_class:
        if not masks:
            continue
        inside = [int(mask[window].sum()) for mask, _ in masks]
        if any(a > 0 and n >= fraction * a - 1e-9 for n, (_, a) in zip(inside, masks, strict=True)):
            return index
        union = np.logical_or.reduce([mask[window] for mask, _ in masks]) if len(masks) > 1 else None
        covered = inside[0] if union is None else int(union.sum())
        if covered > 0 and covered >= fraction * area - 1e-9:
            return index
    return CLASSES.index("normal")


def naive_crops(pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    side = patch_geometry(pixels.shape[1])[0]
    crops = [pixels[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes.tolist()]
    return np.stack(crops) if crops else np.empty((0, side, side), pixels.dtype)


# ------------------------------------------------------------------------- timing


def check_identical(cases: list[Case], tissues: list[np.ndarray]) -> list[np.ndarray]:
    """Assert both paths agree on boxes, labels, fractions and crops; return the boxes."""
    kept = []
    for (pixels, findings), tissue in zip(cases, tissues, strict=True):
        fast, slow = vectorised_labels(pixels, findings, tissue), naive_labels(pixels, findings, tissue)
        for a, b in zip(fast, slow, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), "labels differ between the paths"
        crops = vectorised_crops(pixels, fast[0])
        assert np.array_equal(crops, naive_crops(pixels, slow[0])), "crops differ between the paths"
        kept.append(fast)
    return kept


def seconds(task: Callable[[int], object], count: int) -> float:
    """Wall time of ``task(i)`` for every case i."""
    gc.collect()
    start = time.perf_counter()
    for i in range(count):
        task(i)
    return time.perf_counter() - start


def measure(cases: list[Case], tissues: list[np.ndarray], boxes: list[np.ndarray], repeats: int) -> dict:
    """Median seconds over all cases for each (stage, path)."""
    tasks: dict[tuple[str, str], Callable[[int], object]] = {}
    for path, labels, crops in (
        ("vectorised", vectorised_labels, vectorised_crops),
        ("naive", naive_labels, naive_crops),
    ):

        def stage(i, labels=labels, crops=crops, tissue=True):
            pixels, findings = cases[i]
            kept = labels(pixels, findings, tissues[i] if tissue else None)
            return crops(pixels, kept[0])

        tasks["labels+crops", path] = stage
        tasks["labels", path] = lambda i, labels=labels: labels(*cases[i], tissues[i])
        tasks["crops", path] = lambda i, crops=crops: crops(cases[i][0], boxes[i])
        tasks["end to end", path] = lambda i, stage=stage: stage(i, tissue=False)
    tasks["tissue mask", "shared"] = lambda i: tissue_mask(cases[i][0])

    runs: dict[tuple[str, str], list[float]] = {key: [] for key in tasks}
    for _ in range(repeats):  # alternate, so drifting machine load hits every path alike
        for key, task in tasks.items():
            runs[key].append(seconds(task, len(cases)))
    return {key: statistics.median(values) for key, values in runs.items()}


# ------------------------------------------------------------------------ report


def make_figures(median: dict, n_images: int, kept: list[np.ndarray], labels: np.ndarray, repeats: int) -> dict:
    """Throughputs and speedups; the target's speedup is grid + labels with the mask given (the job's work)."""
    n_patches = sum(len(b) for b in kept)
    counts = np.bincount(labels, minlength=len(CLASSES))

    def speedup(stage: str) -> float:
        return round(median[stage, "naive"] / median[stage, "vectorised"], 2)

    figures: dict[str, float | int | str] = {
        "images": n_images,
        "kept_patches": n_patches,
        **{f"patches_{name}": int(c) for name, c in zip(CLASSES, counts, strict=True)},
        "repeats": repeats,
        "speedup_vs_naive": speedup("labels"),
        "speedup_measured_on": "grid + labels as the extraction job runs them, same tissue mask given to both",
        "speedup_labels_and_crops": speedup("labels+crops"),
        "speedup_crops_only": speedup("crops"),
        "speedup_end_to_end": speedup("end to end"),
    }
    for stage in ("labels+crops", "end to end"):
        for path in ("vectorised", "naive"):
            key = f"{path}_{stage.replace(' ', '_').replace('+', '_')}"
            figures[f"{key}_images_per_s"] = round(n_images / median[stage, path], 1)
            figures[f"{key}_patches_per_s"] = round(n_patches / median[stage, path])
    figures["tissue_mask_ms_per_image"] = round(1e3 * median["tissue mask", "shared"] / n_images, 3)
    return figures


def print_table(figures: dict, median: dict) -> None:
    n_images, n_patches = figures["images"], figures["kept_patches"]
    print(
        f"patches bench: {n_images} phantoms, {n_patches} kept patches ({figures['patches_normal']} normal / "
        f"{figures['patches_benign']} benign / {figures['patches_malignant']} malignant); both paths give "
        f"identical boxes, labels, fractions and crops; median of {figures['repeats']} runs"
    )
    header = f"{'stage':<44}{'path':<12}{'ms/image':>10}{'images/s':>10}{'patches/s':>11}{'speedup':>9}"
    print(header)
    print("-" * len(header))
    stages = {
        "labels": "grid + labels, tissue mask given (the job) *",
        "labels+crops": "grid + labels + crops, tissue mask given",
        "crops": "  of which cropping (memory copy)",
        "end to end": "end to end: tissue mask+grid+labels+crops",
    }
    for stage, title in stages.items():
        for path in ("vectorised", "naive"):
            secs = median[stage, path]
            ratio = f"{median[stage, 'naive'] / secs:.1f}x" if path == "vectorised" else ""
            print(
                f"{title if path == 'vectorised' else '':<44}{path:<12}{1e3 * secs / n_images:>10.3f}"
                f"{n_images / secs:>10.1f}{n_patches / secs:>11.0f}{ratio:>9}"
            )
    secs = median["tissue mask", "shared"]
    print(
        f"{'tissue mask alone (in both end-to-end rows)':<44}{'shared':<12}{1e3 * secs / n_images:>10.3f}"
        f"{n_images / secs:>10.1f}"
    )
    print(f"* the target row: {figures['speedup_vs_naive']:.1f}x vs a target of {TARGET_SPEEDUP:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    cases = load_cases(args.images)
    tissues = [tissue_mask(pixels) for pixels, _ in cases]
    kept = check_identical(cases, tissues)
    median = measure(cases, tissues, [k[0] for k in kept], args.repeats)

    figures = make_figures(median, len(cases), [k[0] for k in kept], np.concatenate([k[1] for k in kept]), args.repeats)
    print_table(figures, median)
    print(
        json.dumps(
            {
                "bench": "patches",
                "figures": figures,
                "targets": {"speedup_vs_naive": TARGET_SPEEDUP},
                "met": bool(figures["speedup_vs_naive"] >= TARGET_SPEEDUP),
            }
        )
    )


if __name__ == "__main__":
    main()
