"""Media through Django's storage API (``STORAGES["default"]``): the filesystem under MEDIA_ROOT (the
default) or an S3-compatible bucket (django-storages). A reader (web, another worker) never sees half a
file, and a row is pointed at a name only after its object is whole.

- **Filesystem**: a temp file in the same folder and ``os.replace``; a folder is written in a hidden
  sibling and renamed into place. Every file is readable by its group (``settings.FILE_UPLOAD_PERMISSIONS``,
  0640 by default here), so a web server or worker running as another user of that group can read what
  this one wrote; ``tempfile.mkstemp`` alone would leave 0600.
- **Bucket**: one PUT per object, which S3 makes visible whole or not at all. A folder has no rename, so
  its objects are written in the order given and the caller's last one says the folder is complete (the
  deep-zoom descriptor). A worker that needs a local file (a torch checkpoint) gets a copy from a bounded
  local cache (``media_local_file``; ``annotator.media_cache``).

``media_path`` is the filesystem case's path and nothing more; code that must work on a bucket uses the
other functions here. Copying every object between two storages: ``annotator.media_objects``.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, storages
from PIL import Image as PILImage

from .media_cache import LocalFileCache

__all__ = [
    "delete_quietly",
    "delete_tree_quietly",
    "file_mode",
    "media_cache",
    "media_exists",
    "media_is_local",
    "media_local_file",
    "media_path",
    "media_read_bytes",
    "media_storage",
    "read_mask",
    "read_png",
    "storage_delete_tree",
    "storage_file_names",
    "storage_write_bytes",
    "unique_name",
    "write_bytes_atomic",
    "write_local_file_atomic",
    "write_png_atomic",
    "write_tree_atomic",
]

DEFAULT_FILE_MODE = 0o640


def file_mode() -> int:
    """The mode of every media file: FILE_UPLOAD_PERMISSIONS when set, else owner read-write, group read."""
    mode = getattr(settings, "FILE_UPLOAD_PERMISSIONS", None)
    return DEFAULT_FILE_MODE if mode is None else int(mode)


def media_storage() -> Storage:
    """The storage media live in (``STORAGES["default"]``)."""
    return storages["default"]


def media_is_local(storage: Storage | None = None) -> bool:
    """Whether ``storage`` (the media storage by default) is a folder on this machine."""
    return isinstance(storage or media_storage(), FileSystemStorage)


def media_path(name: str) -> Path:
    """The file of media ``name`` under MEDIA_ROOT: the filesystem case only (a bucket has no path)."""
    return Path(settings.MEDIA_ROOT) / name


def media_cache() -> LocalFileCache:
    """The bounded cache of local copies of bucket objects (MEDIA_CACHE_DIR, MEDIA_CACHE_MAX_BYTES)."""
    return LocalFileCache(Path(settings.MEDIA_CACHE_DIR), settings.MEDIA_CACHE_MAX_BYTES)


def unique_name(folder: str, stem: str, suffix: str) -> str:
    """A storage name under `folder` that no other writer can pick (uuid4), keeping `stem` readable."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80] or "file"
    return f"{folder.strip('/')}/{safe}-{uuid.uuid4().hex[:12]}{suffix}"


def _local_target(storage: Storage, name: str) -> Path:
    return Path(storage.path(name))  # safe_join: a name never leaves the storage's folder


def storage_write_bytes(storage: Storage, name: str, data: bytes, *, durable: bool = True) -> str:
    """Write ``data`` as ``name`` into ``storage``, whole for any reader (see the module docstring)."""
    if not media_is_local(storage):
        saved = storage.save(name, ContentFile(data))
        if saved != name:  # a bucket overwrites (AWS_S3_FILE_OVERWRITE); a renamed object would orphan the row
            storage.delete(saved)
            raise OSError(f"the media storage stored {name!r} as {saved!r}")
        return name
    target = _local_target(storage, name)
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


def write_bytes_atomic(name: str, data: bytes, *, durable: bool = True) -> str:
    """Write `data` as media `name`: whole or not at all for readers (the filesystem: a temp file and
    os.replace; a bucket: one PUT).

    durable=False skips the fsync: still atomic for readers, for derived files a re-run can rebuild.
    """
    storage = media_storage()
    if not media_is_local(storage):
        media_cache().discard(name)
    return storage_write_bytes(storage, name, data, durable=durable)


def write_png_atomic(name: str, array: np.ndarray, *, durable: bool = True, compress_level: int = 3) -> str:
    """Write a 2-D uint8/uint16/bool array (or (H, W, 3|4) uint8) as a lossless PNG (bool as 1-bit)."""
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG", optimize=False, compress_level=compress_level)
    return write_bytes_atomic(name, buffer.getvalue(), durable=durable)


@contextmanager
def write_local_file_atomic(name: str) -> Iterator[Path]:
    """A local path to write media ``name`` at (for writers that want a path, such as torch.save); when the
    block ends without an error the file becomes ``name``, whole, and a failed block leaves nothing."""
    storage = media_storage()
    local = media_is_local(storage)
    target = _local_target(storage, name) if local else None
    parent = target.parent if target is not None else Path(settings.MEDIA_CACHE_DIR)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=".tmp-"))
    try:
        path = staging / posixpath.basename(name)
        yield path
        if target is not None:
            path.chmod(file_mode())
            os.replace(path, target)
        else:
            with path.open("rb") as handle:
                saved = storage.save(name, File(handle, name=name))
            if saved != name:
                storage.delete(saved)
                raise OSError(f"the media storage stored {name!r} as {saved!r}")
            media_cache().put(name, path)  # the writer (a training worker) is the next to load it
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_tree_atomic(folder: str, files: Iterable[tuple[str, bytes]]) -> bool:
    """Write a whole folder of ``(relative name, bytes)`` as media `folder`.

    Filesystem: the files go into a hidden sibling folder first (no fsync: derived files), which is renamed
    into place, so a reader sees the folder complete or not at all; returns False, keeping the existing
    one, when another writer got there first. Bucket: the objects are written in the given order, the
    last one only after all others (callers make it the folder's completeness mark); returns False when
    that last object was already there (another writer completed the same folder).
    """
    storage = media_storage()
    if not media_is_local(storage):
        return _write_tree_objects(storage, folder.strip("/"), files)
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


def _write_tree_objects(storage: Storage, folder: str, files: Iterable[tuple[str, bytes]]) -> bool:
    pending: tuple[str, bytes] | None = None
    for item in files:
        if pending is not None:
            storage_write_bytes(storage, f"{folder}/{pending[0]}", pending[1], durable=False)
        pending = item
    if pending is None:
        return True
    last = f"{folder}/{pending[0]}"
    if storage.exists(last):
        return False
    storage_write_bytes(storage, last, pending[1], durable=False)
    return True


def storage_file_names(storage: Storage, folder: str = "") -> Iterator[str]:
    """Every file's name under ``folder`` of ``storage`` (all of them for ""), in no set order; the
    filesystem's hidden staging files and folders (``.tmp-*``) are not media and are left out."""
    folder = folder.strip("/")
    try:
        directories, names = storage.listdir(folder)
    except FileNotFoundError:
        return
    prefix = f"{folder}/" if folder else ""
    for name in names:
        if not name.startswith(".tmp-"):
            yield prefix + name
    for directory in directories:
        if not directory.startswith(".tmp-"):
            yield from storage_file_names(storage, prefix + directory)


def storage_delete_tree(storage: Storage, folder: str) -> None:
    """Remove every object under ``folder`` of ``storage``; a missing folder is fine, "" is refused."""
    folder = folder.strip("/")
    if not folder:
        return
    if media_is_local(storage):
        shutil.rmtree(_local_target(storage, folder), ignore_errors=True)
        return
    for name in list(storage_file_names(storage, folder)):
        storage.delete(name)


def delete_tree_quietly(folder: str) -> None:
    """Remove a folder written by ``write_tree_atomic``; a missing one is fine."""
    storage_delete_tree(media_storage(), folder)


def delete_quietly(names: list[str]) -> None:
    """Remove files written by a step that was rolled back; missing files are fine."""
    storage = media_storage()
    local = media_is_local(storage)
    for name in names:
        if not name:
            continue
        if local:
            media_path(name).unlink(missing_ok=True)
        else:
            storage.delete(name)  # deleting a missing key is no error on S3
            media_cache().discard(name)


def media_exists(name: str) -> bool:
    """Whether media ``name`` is stored (a file, not a folder)."""
    storage = media_storage()
    if media_is_local(storage):
        return media_path(name).is_file()
    return bool(name) and storage.exists(name)


def media_read_bytes(name: str) -> bytes:
    """The bytes of media ``name`` (FileNotFoundError when there is none)."""
    storage = media_storage()
    if media_is_local(storage):
        return media_path(name).read_bytes()
    with storage.open(name, "rb") as handle:
        data = handle.read()
    return data if isinstance(data, bytes) else data.encode()


def media_local_file(name: str) -> Path:
    """A local file holding media ``name``: the file itself on the filesystem, else a copy from the bounded
    local cache (fetched now when it has none). Open it at once: the cache may evict it later."""
    storage = media_storage()
    if media_is_local(storage):
        return media_path(name)

    def fetch(handle: IO[bytes]) -> None:
        with storage.open(name, "rb") as source:
            shutil.copyfileobj(source, handle, 1024 * 1024)

    return media_cache().get(name, fetch)


def read_png(name: str) -> np.ndarray:
    """A stored PNG as an array: (H, W) for grayscale (uint8 or uint16), bool never (masks are 0/255)."""
    source = media_path(name) if media_is_local() else io.BytesIO(media_read_bytes(name))
    with PILImage.open(source) as img:
        return np.asarray(img)


def read_mask(name: str) -> np.ndarray:
    """A stored binary mask as bool (H, W)."""
    return read_png(name) > 0
