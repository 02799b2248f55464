"""A dataset's patch store in media (``mining.patch_store``): written once by the patch job, opened by
every job that reads patches, so training and mining hold a batch of crops, not the dataset's.

Layout: an extraction's folder ``patchstore/dataset<id>-<uuid>/`` (named in the extraction job's result,
``store``) holds one store per patch side and grey-level window, ``side<S>/`` for the percentile window and
``side<S>-dicom-voi/`` for the VOI one (``network_input``; a dataset without VOI keeps only the former,
which serves both): ``chunk<i>.npy`` (``CHUNK_ROWS`` crops each, in
the order of the patch rows: image, then y0, x0), ``patch_ids.npy`` and, written last, ``manifest.json``.
Every file goes whole through ``files.write_bytes_atomic``, so it works on a bucket too, where chunks are
read through the bounded local cache. The patch job writes the store at its patches' own side while it
extracts; the first job that asks for another side (a training's ``patch_size``) writes that one, image
by image. Two jobs writing the same side at once write the same bytes, file by file, so either's is
whole. A dataset extracted before stores has no folder: its callers crop in memory as before.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mining.data import PatchTable, crop_table
from mining.patch_store import PatchStore, StoreManifest, chunk_bytes
from mining.windowing import WINDOW_PERCENTILE

from ..files import media_exists, media_local_file, media_read_bytes, write_bytes_atomic
from ..models import Dataset, Image, Job, Patch
from .compute import worker_device
from .network_input import network_pixels, store_window

__all__ = [
    "CHUNK_ROWS",
    "PatchStoreWriter",
    "loader_workers",
    "patch_store_folder",
    "patch_store_new_folder",
    "patch_store_open",
]

CHUNK_ROWS = 1024  # 16 MiB a chunk at 128 px: one bucket GET fetches many batches' worth
MANIFEST, PATCH_IDS = "manifest.json", "patch_ids.npy"


@dataclass
class PatchStoreWriter:
    """Appends crops (uint8 (n, side, side), in patch-row order) and writes a chunk whenever one is full."""

    folder: str  # the extraction's store folder; this side's files go under side<S>[-<window>]/
    side: int
    window: str = WINDOW_PERCENTILE  # the crops' (services.network_input.store_window)
    chunk_rows: int = CHUNK_ROWS
    chunks: list[str] = field(default_factory=list)
    count: int = 0
    _pending: list[torch.Tensor] = field(default_factory=list)

    @property
    def side_folder(self) -> str:
        return _side_folder(self.folder, self.side, self.window)

    def add(self, crops: torch.Tensor) -> None:
        if crops.dtype != torch.uint8 or tuple(crops.shape[1:]) != (self.side, self.side):
            raise ValueError(f"crops must be uint8 (n, {self.side}, {self.side}), got {tuple(crops.shape)}")
        self._pending.append(crops)
        self.count += len(crops)
        while sum(len(part) for part in self._pending) >= self.chunk_rows:
            self._flush(self.chunk_rows)

    def finish(self, patch_ids: np.ndarray) -> None:
        """Write the last chunk, the ids of the rows and, last, the manifest."""
        if len(patch_ids) != self.count:
            raise ValueError(f"{len(patch_ids)} patch ids for {self.count} stored crops")
        if self._pending:
            self._flush(sum(len(part) for part in self._pending))
        ids = io.BytesIO()
        np.save(ids, np.asarray(patch_ids, dtype=np.int64), allow_pickle=False)
        write_bytes_atomic(f"{self.side_folder}/{PATCH_IDS}", ids.getvalue(), durable=False)
        manifest = StoreManifest(self.side, self.count, self.chunk_rows, self.chunks, PATCH_IDS, window=self.window)
        write_bytes_atomic(f"{self.side_folder}/{MANIFEST}", manifest.to_json())

    def _flush(self, rows: int) -> None:
        joined = torch.cat(self._pending)
        chunk, rest = joined[:rows], joined[rows:]
        self._pending = [rest] if len(rest) else []
        name = f"chunk{len(self.chunks)}.npy"
        # Derived files a re-run of the job rebuilds: atomic, no fsync (the manifest, last, is durable).
        write_bytes_atomic(f"{self.side_folder}/{name}", chunk_bytes(chunk), durable=False)
        self.chunks.append(name)


@dataclass
class _ChunkFiles:
    """Chunk i's local file (the file itself, or a bucket object's cached copy); picklable for loader
    workers."""

    folder: str
    chunks: list[str]

    def __call__(self, chunk: int) -> Path:
        return media_local_file(f"{self.folder}/{self.chunks[chunk]}")


def patch_store_folder(dataset: Dataset) -> str | None:
    """The store folder of the dataset's latest successful patch extraction (None before stores)."""
    job = (
        Job.objects.filter(dataset=dataset, kind=Job.Kind.EXTRACT_PATCHES, status=Job.Status.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .first()
    )
    store = (job.result or {}).get("store") if job else None
    return str(store["folder"]) if isinstance(store, dict) and store.get("folder") else None


def patch_store_new_folder(dataset: Dataset) -> str:
    """A fresh extraction's store folder (a uuid: an older extraction's readers keep theirs meanwhile)."""
    return f"patchstore/dataset{dataset.pk}-{uuid.uuid4().hex[:12]}"


def _side_folder(folder: str, side: int, window: str) -> str:
    return f"{folder}/side{side}" if window == WINDOW_PERCENTILE else f"{folder}/side{side}-{window}"


def patch_store_open(*, dataset: Dataset, patch_ids: np.ndarray, side: int, window: str) -> PatchStore | None:
    """The rows of the dataset's store holding ``patch_ids`` (int64 (N,)), in that order, at ``side`` in
    ``window`` (written now, from the images, when the extraction has no such store yet); None when the
    dataset's extraction has no store folder, or its store does not hold exactly those patches."""
    folder = patch_store_folder(dataset)
    if folder is None or side < 1:
        return None
    window = store_window(dataset, window)
    where = _side_folder(folder, side, window)
    if not media_exists(f"{where}/{MANIFEST}"):
        _store_write(dataset, folder, side, window)
    try:
        manifest = StoreManifest.from_json(media_read_bytes(f"{where}/{MANIFEST}"))
        stored = np.load(io.BytesIO(media_read_bytes(f"{where}/{manifest.patch_ids}")), allow_pickle=False)
    except (OSError, ValueError):  # gone with a newer extraction
        return None
    if manifest.side != side or manifest.window != window or len(stored) != manifest.count:
        return None
    order = np.argsort(stored, kind="stable")
    found = np.searchsorted(stored[order], patch_ids).clip(0, max(len(stored) - 1, 0))
    rows = order[found] if len(stored) else found
    if not len(stored) or not np.array_equal(stored[rows], patch_ids):
        return None  # patches re-extracted since, or not all of them stored
    return PatchStore(manifest, _ChunkFiles(where, manifest.chunks), rows, workers=loader_workers())


def _store_write(dataset: Dataset, folder: str, side: int, window: str) -> None:
    """Write the store of every patch of ``dataset`` at ``side`` in ``window``, one image in memory at a time."""
    rows = list(
        Patch.objects.filter(image__dataset=dataset)
        .order_by("image_id", "y0", "x0")
        .values_list("id", "image_id", "x0", "y0", "x1", "y1")
    )
    writer = PatchStoreWriter(folder, side, window)
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    image_of = np.array([row[1] for row in rows], dtype=np.int64)
    boxes = np.array([row[2:] for row in rows], dtype=np.int64).reshape(-1, 4)
    images = Image.objects.in_bulk(np.unique(image_of).tolist())
    for image_id in np.unique(image_of).tolist():  # ascending: the rows' order
        mine = image_of == image_id
        blank = np.zeros(int(mine.sum()), dtype=np.int64)  # one image; labels are not cropped
        table = PatchTable(boxes[mine], blank, blank)
        writer.add(crop_table([network_pixels(images[image_id], window)], table, side))
    writer.finish(ids)


def loader_workers() -> int:
    """Reader processes per store (DEEPMINER_LOADER_WORKERS): by default 2 on a GPU worker, where reading
    ahead overlaps the device's work, and none on a CPU one, whose cores the forward passes already use."""
    value = os.environ.get("DEEPMINER_LOADER_WORKERS", "")
    if value.strip():
        return max(0, int(value))
    return 2 if worker_device().type == "cuda" else 0
