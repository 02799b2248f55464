"""Atomic writes into MEDIA_ROOT: a reader (web, another worker) never sees half a file.

Every file written here is readable by its group (``settings.FILE_UPLOAD_PERMISSIONS``, 0640 by default
here), so a web server or a worker running as another user of that group can read what this one wrote;
``tempfile.mkstemp`` alone would leave 0600.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image as PILImage

__all__ = [
    "delete_quietly",
    "delete_tree_quietly",
    "file_mode",
    "media_path",
    "read_mask",
    "read_png",
    "unique_name",
    "write_bytes_atomic",
    "write_png_atomic",
    "write_tree_atomic",
]

DEFAULT_FILE_MODE = 0o640


def file_mode() -> int:
    """The mode of every media file: FILE_UPLOAD_PERMISSIONS when set, else owner read-write, group read."""
    mode = getattr(settings, "FILE_UPLOAD_PERMISSIONS", None)
    return DEFAULT_FILE_MODE if mode is None else int(mode)


def media_path(name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / name


def unique_name(folder: str, stem: str, suffix: str) -> str:
    """A storage name under `folder` that no other writer can pick (uuid4), keeping `stem` readable."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80] or "file"
    return f"{folder.strip('/')}/{safe}-{uuid.uuid4().hex[:12]}{suffix}"


def write_bytes_atomic(name: str, data: bytes, *, durable: bool = True) -> str:
    """Write `data` to MEDIA_ROOT/name via a temp file in the same folder and os.replace.

    durable=False skips the fsync: still atomic for readers, for derived files a re-run can rebuild.
    """
    target = media_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return name


def write_png_atomic(name: str, array: np.ndarray, *, durable: bool = True, compress_level: int = 3) -> str:
    """Write a 2-D uint8/uint16/bool array (or (H, W, 3|4) uint8) as a lossless PNG (bool as 1-bit)."""
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG", optimize=False, compress_level=compress_level)
    return write_bytes_atomic(name, buffer.getvalue(), durable=durable)


def write_tree_atomic(folder: str, files: Iterable[tuple[str, bytes]]) -> bool:
    """Write a whole folder of ``(relative name, bytes)`` at MEDIA_ROOT/folder in one rename.

    The files go into a hidden sibling folder first (no fsync: derived files), which is renamed into
    place, so a reader sees the folder complete or not at all. Returns False, keeping the existing one,
    when another writer got there first.
    """
    target = media_path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        staging.chmod(0o750)
        mode = file_mode()
        for relative, data in files:
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
            return False
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def delete_tree_quietly(folder: str) -> None:
    """Remove a folder written by ``write_tree_atomic``; a missing one is fine."""
    if folder.strip("/"):
        shutil.rmtree(media_path(folder), ignore_errors=True)


def delete_quietly(names: list[str]) -> None:
    """Remove files written by a step that was rolled back; missing files are fine."""
    for name in names:
        if name:
            media_path(name).unlink(missing_ok=True)


def read_png(name: str) -> np.ndarray:
    """A stored PNG as an array: (H, W) for grayscale (uint8 or uint16), bool never (masks are 0/255)."""
    with PILImage.open(media_path(name)) as img:
        return np.asarray(img)


def read_mask(name: str) -> np.ndarray:
    """A stored binary mask as bool (H, W)."""
    return read_png(name) > 0
