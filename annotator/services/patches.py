"""Patch extraction for a dataset: the first real job. Cuts every image into DeepMiner patches
(mining.patches) and stores their boxes and labels, replacing any earlier extraction."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, fields
from typing import Any

import numpy as np
from django.db import transaction

from mining.data import PatchTable, crop_table
from mining.patches import CLASSES, PatchParams, extract_patches
from mining.progress import CancelFn, ProgressFn, check_cancel

from ..errors import ApplicationError
from ..files import delete_tree_quietly, read_mask, read_png
from ..models import Dataset, Job, Patch
from .job_state import JobReporter
from .network_input import TRAINING_WINDOW, store_window, windowed
from .patch_store import PatchStoreWriter, patch_store_folder, patch_store_new_folder

__all__ = ["patch_params_from", "patch_params_validate", "patches_extract", "run_extract_patches"]


def patch_params_from(params: dict[str, Any]) -> PatchParams:
    """PatchParams from a job's params, ignoring unrelated keys; out-of-range values are refused."""
    known = {f.name for f in fields(PatchParams)}
    values = {k: float(v) for k, v in params.items() if k in known}
    result = PatchParams(**values)
    for name in ("side_fraction", "stride_fraction", "min_tissue", "min_finding_fraction"):
        value = getattr(result, name)
        if not 0 < value <= 1:
            raise ApplicationError(f"{name} must be in (0, 1], got {value}")
    return result


def patches_extract(
    *, dataset: Dataset, params: PatchParams, progress: ProgressFn, cancelled: CancelFn
) -> dict[str, Any]:
    """Extract and store the patches of every image of `dataset`, and their crops as the dataset's patch
    store (``services.patch_store``) at the side of the first image's patches, in the window training
    uses (``network_input``); returns counts per split and label, and the store's folder."""
    images = list(dataset.images.prefetch_related("findings").order_by("id"))
    if not images:
        raise ApplicationError(f"dataset {dataset.name!r} has no images")
    rows: list[Patch] = []
    counts: Counter[tuple[str, str]] = Counter()
    store: PatchStoreWriter | None = None
    old_store, folder = patch_store_folder(dataset), patch_store_new_folder(dataset)
    window = store_window(dataset, TRAINING_WINDOW)
    try:
        for index, image in enumerate(images, start=1):
            check_cancel(cancelled)
            pixels = read_png(image.file.name)
            findings = [(read_mask(f.mask.name), f.pathology) for f in image.findings.all()]
            patch_set = extract_patches(pixels, findings, params)
            # Rows (and so the store) in the order patch_data reads them: image, then y0, x0.
            corners = patch_set.boxes.reshape(-1, 4)
            order = np.lexsort((corners[:, 0], corners[:, 1]))
            boxes, labels = corners[order], patch_set.labels[order]
            for (x0, y0, x1, y1), label, tissue in zip(
                boxes.tolist(), labels.tolist(), patch_set.tissue_fraction[order].tolist(), strict=True
            ):
                rows.append(
                    Patch(image=image, x0=x0, y0=y0, x1=x1, y1=y1, label=CLASSES[label], tissue_fraction=tissue)
                )
                counts[(image.split, CLASSES[label])] += 1
            if len(boxes):
                table = PatchTable(boxes, np.zeros(len(boxes), dtype=np.int64), labels)
                store = store or PatchStoreWriter(folder, table.side, window)
                # Patches are found on the stored pixels; the network sees them through the window.
                store.add(crop_table([windowed(pixels, image, window)], table, store.side))
            progress(index, len(images), f"Image {index}/{len(images)}: {len(patch_set.boxes)} patches")
        check_cancel(cancelled)
        # Replace, never duplicate: the old extraction disappears in the same transaction the new one appears.
        with transaction.atomic():
            Patch.objects.filter(image__dataset=dataset).delete()
            Patch.objects.bulk_create(rows, batch_size=2000)
        if store is not None:
            store.finish(np.array([row.pk for row in rows], dtype=np.int64))
    except BaseException:
        delete_tree_quietly(folder)
        raise
    if old_store:
        delete_tree_quietly(old_store)  # its patch rows are gone: no reader would take it any more
    by_split: dict[str, dict[str, int]] = {}
    for (split, label), n in sorted(counts.items()):
        by_split.setdefault(split, {})[label] = n
    return {
        "patches": len(rows),
        "images": len(images),
        "by_split": by_split,
        "params": asdict(params),
        "store": {"folder": folder, "side": store.side, "chunks": len(store.chunks)} if store else None,
    }


def patch_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    if dataset is None:
        raise ApplicationError("a patch extraction job needs a dataset")
    return asdict(patch_params_from(params))


def run_extract_patches(job: Job, reporter: JobReporter) -> dict[str, Any]:
    if job.dataset is None:
        raise ApplicationError("a patch extraction job needs a dataset")
    return patches_extract(
        dataset=job.dataset,
        params=patch_params_from(job.params),
        progress=reporter.progress,
        cancelled=reporter.cancelled,
    )
