"""Copying an installation's media files from one Django storage to another, each verified by checksum.

Everything under the source storage travels (images, masks, patches, checkpoints, explanation maps,
deep-zoom tiles), not only what file fields name: JSON columns name files too. Left-over staging files of
interrupted atomic writes (``.tmp-*``) stay behind (``files.storage_file_names``). Each file is written
whole (``files.storage_write_bytes``), so a copy stopped half way leaves no partial file to trip a re-run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db.models import FileField

from annotator.errors import ApplicationError
from annotator.files import storage_file_names, storage_write_bytes

from .tables import copied_models

_CHUNK = 1024 * 1024


@dataclass
class MediaReport:
    files: int = 0
    bytes: int = 0
    copied: int = 0
    already_there: int = 0
    # Named by a row but absent from the source storage already: nothing to copy, reported, not hidden.
    missing_in_source: list[str] = field(default_factory=list)


def bucket_storage(bucket: str) -> Storage:
    """The S3-compatible bucket ``bucket`` as the new installation's settings make it for DEEPMINER_S3_BUCKET
    (the same AWS_* variables: endpoint, region, keys, addressing; private objects)."""
    return storages.create_storage(settings.S3_MEDIA_STORAGE(bucket))


def target_storage(spec: str) -> Storage:
    """``s3://bucket``, a storage alias of settings.STORAGES, else a folder for a FileSystemStorage."""
    if spec.startswith("s3://"):
        bucket = spec.removeprefix("s3://").strip("/")
        if not bucket or "/" in bucket:
            raise ApplicationError("--media-to s3://BUCKET names one bucket, e.g. s3://deepminer-media")
        return bucket_storage(bucket)
    if spec == "staticfiles":
        raise ApplicationError("--media-to staticfiles is the static files' storage, not one for media")
    if spec in settings.STORAGES:
        return storages[spec]
    folder = Path(spec).resolve()
    if folder == Path(settings.MEDIA_ROOT).resolve():
        raise ApplicationError("--media-to is this installation's own media folder: name another one")
    return FileSystemStorage(location=folder)


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
    for name in sorted(storage_file_names(source)):
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
            storage_write_bytes(target, name, handle.read())
        if file_checksum(target, name) != expected:
            raise ApplicationError(f"media file {name} did not arrive intact in the target storage")
        report.copied += 1
    for name in sorted(referenced):
        if not target.exists(name):
            if source.exists(name):
                raise ApplicationError(f"media file {name} is in the source storage but not in the target")
            report.missing_in_source.append(name)
    return report
