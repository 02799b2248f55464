"""Patch crops on disk: a dataset's uint8 crops in chunk files, read a batch at a time.

A store is ``count`` crops of side S cut once (by the patch job) into chunk files of ``chunk_rows``
crops each, every chunk one ``.npy`` array uint8 (rows, S, S). ``PatchStore`` is a torch ``Dataset``
over some rows of such a store that indexes like the in-memory crop tensor (an int, a slice, int or
bool rows: uint8 (S, S) or (B, S, S)), so training and both mining passes take either.

Chunks are read with positional reads (``os.pread``) from files kept open, not memory-mapped: pages of
a mapping stay in the process's resident set until it is unmapped, so mapping every chunk of a pass
would grow RSS with the dataset; a read holds only the batch. An open file also stays readable when a
bounded local cache (chunks of a bucket) evicts it meanwhile. Consecutive rows of one chunk are one
read, which makes a mining pass's sequential batches a few reads each.

``batches`` streams given row batches through a ``DataLoader`` with worker processes and prefetch when
``workers`` > 0 (each worker opens its own files), in the order given, so results match the in-memory
tensor bit for bit.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .windowing import WINDOW_PERCENTILE

__all__ = ["Crops", "PatchStore", "StoreManifest", "chunk_bytes", "gather"]

MANIFEST_VERSION = 1


@dataclass
class StoreManifest:
    """What a store holds; written last, so a store without one is incomplete.

    chunks: the chunk files' names (in the writer's storage), chunk i holding rows i*chunk_rows onwards;
    patch_ids: the name of an int64 (count,) ``.npy``, the Patch primary key of each row.
    """

    side: int
    count: int
    chunk_rows: int
    chunks: list[str]
    patch_ids: str
    version: int = MANIFEST_VERSION
    window: str = WINDOW_PERCENTILE  # the crops' grey-level window (mining.windowing); stores before it had this one

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StoreManifest:
        """Raises ValueError for a manifest of another version or with missing or inconsistent fields."""
        try:
            values = json.loads(data)
            manifest = cls(**values)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a patch store manifest: {exc}") from exc
        if manifest.version != MANIFEST_VERSION:
            raise ValueError(f"patch store manifest version {manifest.version}, expected {MANIFEST_VERSION}")
        if manifest.chunk_rows < 1 or len(manifest.chunks) != -(-manifest.count // manifest.chunk_rows):
            raise ValueError(f"{len(manifest.chunks)} chunks for {manifest.count} rows of {manifest.chunk_rows}")
        return manifest


def chunk_bytes(crops: np.ndarray | torch.Tensor) -> bytes:
    """One chunk file's bytes: uint8 (rows, S, S) as ``.npy``."""
    array = crops.numpy() if isinstance(crops, torch.Tensor) else crops
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise ValueError(f"a chunk is uint8 (rows, S, S), got {array.dtype} {array.shape}")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class PatchStore(Dataset[torch.Tensor]):
    """Rows ``rows`` of a store (all of them by default), as a dataset of uint8 (S, S) crops.

    chunk_file(i): a local path of chunk i (called once per chunk and process, when it is first read;
    it may fetch the chunk). workers, prefetch: of the ``DataLoader`` that ``batches`` uses (0: read in
    this process).
    """

    def __init__(
        self,
        manifest: StoreManifest,
        chunk_file: Callable[[int], Path],
        rows: np.ndarray | None = None,
        *,
        workers: int = 0,
        prefetch: int = 2,
    ) -> None:
        self.manifest = manifest
        self.chunk_file = chunk_file
        self.rows = np.arange(manifest.count, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= manifest.count):
            raise ValueError(f"rows outside the store's {manifest.count}")
        self.workers, self.prefetch = workers, prefetch
        self._files: dict[int, tuple[int, int]] = {}  # chunk -> (file descriptor, offset of row 0)
        self._pid = os.getpid()

    # ---- what the crop tensor offers
    dtype = torch.uint8
    ndim = 3

    @property
    def shape(self) -> torch.Size:
        side = self.manifest.side
        return torch.Size((len(self.rows), side, side))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> torch.Tensor:
        """uint8 (S, S) for an int; uint8 (B, S, S) for a slice, int rows or a bool mask (N,)."""
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            return self._read(self.rows[[int(index)]])[0]
        if isinstance(index, slice):
            return self._read(self.rows[index])
        picked = np.asarray(index.cpu().numpy() if isinstance(index, torch.Tensor) else index)
        if picked.dtype == np.bool_:
            if picked.shape != self.rows.shape:
                raise IndexError(f"a mask of {picked.shape} for {len(self.rows)} rows")
            return self._read(self.rows[picked])
        return self._read(self.rows[picked.astype(np.int64, copy=False)])

    def subset(self, positions: np.ndarray) -> PatchStore:
        """The rows at ``positions`` (of this one) as another store view over the same files."""
        return PatchStore(
            self.manifest, self.chunk_file, self.rows[positions], workers=self.workers, prefetch=self.prefetch
        )

    def numpy(self) -> np.ndarray:
        """Every row in memory, uint8 (N, S, S): for small stores and tests (it is what a store avoids)."""
        return self[:].numpy()

    # ---- streaming

    def batches(self, row_sets: Iterable[torch.Tensor | np.ndarray | slice]) -> Iterator[torch.Tensor]:
        """uint8 (B, S, S) per entry of ``row_sets`` (rows of this view), in order; read ahead by
        ``workers`` processes when there are any and this process may start them."""
        # A daemonic process (a Celery prefork child) may not start children; it reads in-process.
        if self.workers < 1 or multiprocessing.current_process().daemon:
            for rows in row_sets:
                yield self[rows]
            return
        loader = DataLoader(
            self,
            batch_size=None,  # each sampled item is already a batch's rows
            sampler=list(row_sets),
            num_workers=self.workers,
            prefetch_factor=self.prefetch,
        )
        yield from loader

    # ---- reading

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        side, per_chunk = self.manifest.side, self.manifest.chunk_rows
        out = np.empty((len(rows), side, side), dtype=np.uint8)
        chunks, offsets = np.divmod(rows, per_chunk)
        for chunk in np.unique(chunks).tolist():
            where = np.flatnonzero(chunks == chunk)
            within = offsets[where]
            if len(within) > 1 and np.all(np.diff(within) == 1):
                out[where] = self._pread(chunk, int(within[0]), len(within))
            else:
                for target, offset in zip(where.tolist(), within.tolist(), strict=True):
                    out[target] = self._pread(chunk, offset, 1)[0]
        return torch.from_numpy(out)

    def _pread(self, chunk: int, offset: int, count: int) -> np.ndarray:
        fd, start = self._open(chunk)
        size = self.manifest.side * self.manifest.side
        data = os.pread(fd, count * size, start + offset * size)
        if len(data) != count * size:
            raise OSError(f"patch store chunk {chunk} is short: rows {offset}..{offset + count - 1} missing")
        return np.frombuffer(data, dtype=np.uint8).reshape(count, self.manifest.side, self.manifest.side)

    def _open(self, chunk: int) -> tuple[int, int]:
        if self._pid != os.getpid():  # a forked DataLoader worker: descriptors are shared, open its own
            self._files, self._pid = {}, os.getpid()
        if chunk not in self._files:
            self._files[chunk] = _open_chunk(self.chunk_file(chunk), self.manifest, chunk)
        return self._files[chunk]

    def close(self) -> None:
        for fd, _ in self._files.values():
            os.close(fd)
        self._files = {}

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = {}, -1  # a spawned worker opens its own
        return state


def _open_chunk(path: Path, manifest: StoreManifest, chunk: int) -> tuple[int, int]:
    """An open descriptor of chunk ``chunk`` and the offset of its row 0, after checking its header."""
    expected = min(manifest.chunk_rows, manifest.count - chunk * manifest.chunk_rows)
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        start = handle.tell()
    if dtype != np.uint8 or fortran or tuple(shape) != (expected, manifest.side, manifest.side):
        raise ValueError(f"patch store chunk {chunk} holds {dtype} {shape}, expected uint8 {expected} rows")
    return os.open(path, os.O_RDONLY), start


Crops = torch.Tensor | PatchStore  # a split's crops: in memory, or rows of a store


def gather(crops: Crops, row_sets: Sequence[torch.Tensor | slice]) -> Iterator[torch.Tensor]:
    """uint8 (B, S, S) of ``crops`` for each entry of ``row_sets``, in order (a store reads ahead)."""
    if isinstance(crops, PatchStore):
        return crops.batches(row_sets)
    return (crops[rows] for rows in row_sets)
