"""A bounded local cache of media objects, for workers that need a file on disk (torch loads a checkpoint
from a path) while media live in a bucket.

Objects are cached under a flat name derived from their media name. Media names are written once
(``files.unique_name`` puts a uuid in each), so a cached copy never goes stale; a process that rewrites a
name drops its own copy (``discard``). After each fetch the least recently used copies are removed until
the folder holds at most ``max_bytes`` (the copy just fetched stays, even alone over the cap). Copies land
by rename, so two workers sharing the folder never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = ["LocalFileCache"]

_TEMP_PREFIX = ".fetch-"


class LocalFileCache:
    """Local copies of media objects in ``folder``, at most ``max_bytes`` of them (least recently used go)."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)

    def path_for(self, name: str) -> Path:
        """Where the copy of media ``name`` lives (a digest keeps names flat and of bounded length)."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        return self.folder / f"{digest}{PurePosixPath(name).suffix[:16]}"

    def get(self, name: str, fetch: Callable[[IO[bytes]], None]) -> Path:
        """The local copy of ``name``, fetched with ``fetch(handle)`` (which writes the object's bytes into
        ``handle``) when there is none; a hit counts as a use for the eviction order."""
        path = self.path_for(name)
        if path.is_file():
            os.utime(path)  # most recently used
            return path
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.folder, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(handle, "wb") as file:
                fetch(file)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self.evict(keep=path)
        return path

    def put(self, name: str, source: Path) -> Path:
        """Move the local file ``source`` (the bytes just uploaded as ``name``) into the cache."""
        path = self.path_for(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.replace(source, path)
        self.evict(keep=path)
        return path

    def discard(self, name: str) -> None:
        self.path_for(name).unlink(missing_ok=True)

    def size(self) -> int:
        """Bytes the cached copies take."""
        return sum(size for _, size, _ in self._entries())

    def evict(self, *, keep: Path | None = None) -> list[Path]:
        """Remove least recently used copies (never ``keep``) until at most ``max_bytes`` remain."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        removed: list[Path] = []
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)  # another worker may have removed it first
            total -= size
            removed.append(path)
        return removed

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(last use, size, path) of every complete copy (fetches in progress are not counted)."""
        entries: list[tuple[float, int, Path]] = []
        if not self.folder.is_dir():
            return entries
        for path in self.folder.iterdir():
            if path.name.startswith(_TEMP_PREFIX):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        return entries
