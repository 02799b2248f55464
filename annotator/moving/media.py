"""Copying an installation's media files from one Django storage to another, each verified by checksum.

Everything under the source storage travels (images, masks, patches, checkpoints, explanation maps,
deep-zoom tiles), not only what file fields name: JSON columns name files too. Left-over staging folders of
interrupted atomic writes (``.tmp-*``) stay behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db.models import FileField

from annotator.errors import ApplicationError

from .tables import copied_models

STAGING_PREFIX = ".tmp-"
_CHUNK = 1024 * 1024


@dataclass
class MediaReport:
    files: int = 0
    bytes: int = 0
    copied: int = 0
    already_there: int = 0
    # Named by a row but absent from the source storage already: nothing to copy, reported, not hidden.
    missing_in_source: list[str] = field(default_factory=list)


def target_storage(spec: str) -> Storage:
    """A storage alias of settings.STORAGES (e.g. an S3 bucket's), else a folder for a FileSystemStorage."""
    if spec == "staticfiles":
        raise ApplicationError("--media-to staticfiles is the static files' storage, not one for media")
    if spec in settings.STORAGES:
        return storages[spec]
    folder = Path(spec).resolve()
    if folder == Path(settings.MEDIA_ROOT).resolve():
        raise ApplicationError("--media-to is this installation's own media folder: name another one")
    return FileSystemStorage(location=folder)


def storage_files(storage: Storage, folder: str = "") -> Iterator[str]:
    """Every file name under ``folder`` of ``storage``, depth first, staging leftovers skipped."""
    folders, files = storage.listdir(folder)
    prefix = f"{folder}/" if folder else ""
    for name in sorted(files):
        if not name.startswith(STAGING_PREFIX):
            yield prefix + name
    for sub in sorted(folders):
        if not sub.startswith(STAGING_PREFIX):
            yield from storage_files(storage, prefix + sub)


def file_checksum(storage: Storage, name: str) -> tuple[int, str]:
    """(size, SHA-256) of a stored file, read back through the storage."""
    digest, size = hashlib.sha256(), 0
    with storage.open(name, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def referenced_media(alias: str) -> set[str]:
    """Every file name a file field of a copied table holds at ``alias``."""
    names: set[str] = set()
    for model in copied_models():
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, FileField):
                column = model._base_manager.using(alias).exclude(**{model_field.attname: ""})
                names.update(column.values_list(model_field.attname, flat=True).iterator(2000))
    return names


def media_copy(*, source: Storage, target: Storage, referenced: set[str]) -> MediaReport:
    """Copy every file of ``source`` missing from ``target`` and check each one's checksum there.

    A file already in the target with the same bytes counts as done (a re-run); one with other bytes is
    refused, never overwritten. Then every referenced name must be in the target."""
    report = MediaReport()
    for name in storage_files(source):
        expected = file_checksum(source, name)
        report.files += 1
        report.bytes += expected[0]
        if target.exists(name):
            if file_checksum(target, name) != expected:
                raise ApplicationError(
                    f"media file {name} is already in the target storage with other contents; "
                    "the move overwrites nothing: remove it there (or name an empty storage) and run again"
                )
            report.already_there += 1
            continue
        with source.open(name, "rb") as handle:
            saved = target.save(name, File(handle, name=name))
        if saved != name or file_checksum(target, name) != expected:
            raise ApplicationError(f"media file {name} did not arrive intact in the target storage (stored as {saved})")
        report.copied += 1
    for name in sorted(referenced):
        if not target.exists(name):
            if source.exists(name):
                raise ApplicationError(f"media file {name} is in the source storage but not in the target")
            report.missing_in_source.append(name)
    return report
