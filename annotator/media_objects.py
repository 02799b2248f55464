"""Every media object of a storage, and copying them to another: for moving an installation between the
filesystem and a bucket (or two databases' media), e.g. a migration command.

Storages are named by their ``settings.STORAGES`` alias ("default" is where the app reads media). A copy
writes each object whole (``files.storage_write_bytes``) before the next, so a copy stopped half way can
be run again: objects already there with the same size are skipped.

    from annotator.media_objects import media_copy_all, media_object_names
    names = list(media_object_names("default"))
    copied, skipped = media_copy_all(source="default", target="bucket")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.core.files.storage import Storage, storages

from .files import storage_file_names, storage_write_bytes

__all__ = ["media_copy", "media_copy_all", "media_object_names"]


def _storage(alias: str | Storage) -> Storage:
    return alias if isinstance(alias, Storage) else storages[alias]


def media_object_names(alias: str | Storage = "default", folder: str = "") -> Iterator[str]:
    """The name of every media object in storage ``alias`` (under ``folder`` when given), in no set order."""
    return storage_file_names(_storage(alias), folder)


def media_copy(names: Iterable[str], *, source: str | Storage, target: str | Storage) -> tuple[int, int]:
    """Copy the objects ``names`` from storage ``source`` to ``target`` under the same names; an object
    the target already has with the same size is skipped. Returns (copied, skipped)."""
    origin, destination = _storage(source), _storage(target)
    copied = skipped = 0
    for name in names:
        if destination.exists(name) and destination.size(name) == origin.size(name):
            skipped += 1
            continue
        with origin.open(name, "rb") as handle:
            data = handle.read()
        storage_write_bytes(destination, name, data)
        copied += 1
    return copied, skipped


def media_copy_all(*, source: str | Storage, target: str | Storage) -> tuple[int, int]:
    """Copy every media object of ``source`` to ``target`` (see ``media_copy``). Returns (copied, skipped)."""
    return media_copy(media_object_names(source), source=source, target=target)
