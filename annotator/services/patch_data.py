"""Patches of a dataset as arrays for mining/: the edge where database rows and media files become
tensors. One read of each image, one query for the patch rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mining.data import PatchTable, crop_table

from ..errors import ApplicationError
from ..files import read_png
from ..models import Dataset, Image, Patch

__all__ = ["PatchSplit", "patch_split_load"]


@dataclass
class PatchSplit:
    """The patches of some splits of a dataset.

    patch_ids: int64 (N,) Patch primary keys, in the order of `table` and `crops`.
    image_ids: the Image primary key of each entry of `table.image_index`'s target list.
    crops: uint8 (N, S, S).
    metadata: per patch, the image's view and metadata (for evaluation breakdowns).
    """

    table: PatchTable
    patch_ids: np.ndarray
    image_ids: list[int]
    crops: torch.Tensor
    metadata: list[dict[str, Any]]
    rows: np.ndarray  # int64 (N,) index of each patch in the whole, unsharded split (stable ids across shards)
    total: int  # patches in the whole split

    def __len__(self) -> int:
        return len(self.patch_ids)


def patch_split_load(
    *,
    dataset: Dataset,
    splits: Sequence[str],
    classes: Sequence[str],
    size: int | None = None,
    shard: tuple[int, int] | None = None,
) -> PatchSplit:
    """Load and crop every patch of `dataset` whose image is in `splits`, resized to `size` if given.

    shard=(i, n) keeps only the patches of every n-th image starting at i (a whole image per shard, so
    each shard reads its own images); `rows` keeps their positions in the whole split.
    """
    rows = list(
        Patch.objects.filter(image__dataset=dataset, image__split__in=list(splits))
        .order_by("image_id", "y0", "x0")
        .values_list("id", "image_id", "x0", "y0", "x1", "y1", "label")
    )
    if not rows:
        raise ApplicationError(
            f"dataset {dataset.name!r} has no patches in split(s) {', '.join(splits)}: run patch extraction first"
        )
    total = len(rows)
    positions = np.arange(total, dtype=np.int64)
    if shard is not None:
        index, count = shard
        all_images = sorted({row[1] for row in rows})
        mine = set(all_images[index::count])
        positions = np.array([i for i, row in enumerate(rows) if row[1] in mine], dtype=np.int64)
        rows = [rows[i] for i in positions.tolist()]
    image_ids = sorted({row[1] for row in rows})
    position = {image_id: index for index, image_id in enumerate(image_ids)}
    label_index = {name: index for index, name in enumerate(classes)}
    table = PatchTable(
        boxes=np.array([row[2:6] for row in rows], dtype=np.int64),
        image_index=np.array([position[row[1]] for row in rows], dtype=np.int64),
        labels=np.array([label_index.get(row[6], -1) for row in rows], dtype=np.int64),
    )
    images = Image.objects.in_bulk(image_ids)
    pixels = [read_png(images[image_id].file.name) for image_id in image_ids]
    image_meta = [{"view": images[i].view, "laterality": images[i].laterality, **images[i].metadata} for i in image_ids]
    return PatchSplit(
        table=table,
        patch_ids=np.array([row[0] for row in rows], dtype=np.int64),
        image_ids=image_ids,
        crops=crop_table(pixels, table, size),
        metadata=[image_meta[index] for index in table.image_index.tolist()],
        rows=positions,
        total=total,
    )
