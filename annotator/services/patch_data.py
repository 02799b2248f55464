"""Patches of a dataset as arrays for mining/: the edge where database rows and media files become
tensors. One read of each image, one query for the patch rows."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mining.data import PatchTable, crop_table
from mining.patch_store import Crops

from ..errors import ApplicationError
from ..models import Dataset, Image, Patch
from .network_input import network_pixels
from .patch_store import patch_store_open

__all__ = ["PatchSplit", "patch_split_load", "shard_bounds"]


@dataclass
class PatchSplit:
    """The patches of some splits of a dataset.

    patch_ids: int64 (N,) Patch primary keys, in the order of `table` and `crops`.
    image_ids: the Image primary key of each entry of `table.image_index`'s target list.
    crops: uint8 (N, S, S): rows of the dataset's patch store, read a batch at a time, when it has one
    at this side (``services.patch_store``); else a tensor cropped in memory.
    metadata: per patch, the image's view and metadata (for evaluation breakdowns).
    """

    table: PatchTable
    patch_ids: np.ndarray
    image_ids: list[int]
    crops: Crops
    metadata: list[dict[str, Any]]
    rows: np.ndarray  # int64 (N,) index of each patch in the whole, unsharded split (stable ids across shards)
    total: int  # patches in the whole split

    def __len__(self) -> int:
        return len(self.patch_ids)

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) each patch's class index (as ``image_data.ImageSplit.labels``)."""
        return self.table.labels


def patch_split_load(
    *,
    dataset: Dataset,
    splits: Sequence[str],
    classes: Sequence[str],
    window: str,
    size: int | None = None,
    shard: tuple[int, int] | None = None,
    patients: Collection[str] | None = None,
    exclude_patients: Collection[str] = (),
) -> PatchSplit:
    """Load and crop every patch of `dataset` whose image is in `splits`, resized to `size` if given, in
    the grey-level `window` (``network_input``: the model's, or ``TRAINING_WINDOW`` for a new one).

    patients, if given, keeps only the images of those patient ids; exclude_patients drops the images
    of those (how training keeps its validation carve-out of the train split apart).

    shard=(i, n) keeps only the patches of shard i of n: consecutive images holding about 1/n of the
    patches each (whole images, so each shard reads only its own; see `shard_bounds`); `rows` keeps
    their positions in the whole split.
    """
    # Patients are filtered here rather than in SQL: a carve-out can hold more ids than a query may bind.
    keep = None if patients is None else set(patients)
    drop = set(exclude_patients)
    rows = [
        row[:-1]
        for row in Patch.objects.filter(image__dataset=dataset, image__split__in=list(splits))
        .order_by("image_id", "y0", "x0")
        .values_list("id", "image_id", "x0", "y0", "x1", "y1", "label", "image__patient_id")
        if (keep is None or row[-1] in keep) and row[-1] not in drop
    ]
    if not rows:
        which = "" if keep is None and not drop else " for the chosen patients"
        raise ApplicationError(
            f"dataset {dataset.name!r} has no patches in split(s) {', '.join(splits)}{which}: run patch extraction first"
        )
    total = len(rows)
    positions = np.arange(total, dtype=np.int64)
    if shard is not None:
        index, count = shard
        # Rows come ordered by image, so a shard of consecutive images is one slice of them.
        _, sizes = np.unique(np.array([row[1] for row in rows]), return_counts=True)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        bounds = shard_bounds(sizes, count)
        positions = np.arange(starts[bounds[index]], starts[bounds[index + 1]], dtype=np.int64)
        rows = rows[positions[0] : positions[-1] + 1] if len(positions) else []
    image_ids = sorted({row[1] for row in rows})
    position = {image_id: index for index, image_id in enumerate(image_ids)}
    label_index = {name: index for index, name in enumerate(classes)}
    table = PatchTable(
        boxes=np.array([row[2:6] for row in rows], dtype=np.int64),
        image_index=np.array([position[row[1]] for row in rows], dtype=np.int64),
        labels=np.array([label_index.get(row[6], -1) for row in rows], dtype=np.int64),
    )
    images = Image.objects.in_bulk(image_ids)
    image_meta = [{"view": images[i].view, "laterality": images[i].laterality, **images[i].metadata} for i in image_ids]
    patch_ids = np.array([row[0] for row in rows], dtype=np.int64)
    crops: Crops | None = patch_store_open(dataset=dataset, patch_ids=patch_ids, side=size or table.side, window=window)
    if crops is None:  # no store (extracted before stores): every crop in memory
        crops = crop_table([network_pixels(images[image_id], window) for image_id in image_ids], table, size)
    return PatchSplit(
        table=table,
        patch_ids=patch_ids,
        image_ids=image_ids,
        crops=crops,
        metadata=[image_meta[index] for index in table.image_index.tolist()],
        rows=positions,
        total=total,
    )


def shard_bounds(sizes: Sequence[int] | np.ndarray, count: int) -> list[int]:
    """Split consecutive items of the given sizes (patches per image) into `count` runs of about equal
    total size: returns count + 1 rising indices, run i being items bounds[i]:bounds[i+1].

    A run starts at the first item whose middle lies past i/count of the total, so runs differ by
    about one item at most; every run gets at least one item when there are `count` or more.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    n = len(sizes)
    middles = np.cumsum(sizes) - sizes / 2
    total = float(sizes.sum())
    bounds = [0]
    for i in range(1, count):
        wanted = int(np.searchsorted(middles, i * total / count))
        bounds.append(max(min(max(wanted, bounds[-1] + 1), n - (count - i)), bounds[-1]))
    return [*bounds, n]
