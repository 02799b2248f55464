"""Uploading an image to explain: decoded by the import's reader (PNG, JPEG, TIFF, DICOM) with its pixel
limit and decompression-bomb guard, stored as a lossless grayscale PNG and recorded for its uploader.

Nothing is kept from a bad upload: every refusal comes before any file is written, and if recording the
row fails the written file goes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from mining.imaging import ImageReadError, ImageTooLargeError, LoadedImage, read_image

from ..errors import ApplicationError
from ..files import delete_quietly, delete_tree_quietly, unique_name, write_png_atomic
from ..models import UploadedImage
from .explanations import explanation_files
from .renditions import deepzoom_folder, rendition_write

__all__ = ["upload_create", "upload_delete"]

_CHUNK = 1 << 20


def _decoded(uploaded: UploadedFile) -> LoadedImage:
    """Decode the upload from a local file (Django's temporary file, or a copy of an in-memory one)."""
    path = getattr(uploaded, "temporary_file_path", None)
    if callable(path):
        return read_image(Path(path()), max_pixels=settings.MAX_IMAGE_PIXELS)
    with tempfile.NamedTemporaryFile(prefix="deepminer-upload-", suffix=Path(uploaded.name or "").suffix) as copy:
        for chunk in uploaded.chunks(_CHUNK):
            copy.write(chunk)
        copy.flush()
        return read_image(Path(copy.name), max_pixels=settings.MAX_IMAGE_PIXELS)


def upload_create(*, owner: Any, uploaded: UploadedFile | None) -> UploadedImage:
    """Store an uploaded image for ``owner``; ApplicationError (400 bad file, 413 too large) otherwise."""
    if uploaded is None:
        raise ApplicationError("choose an image file to upload (PNG, JPEG, TIFF or DICOM)")
    if not uploaded.size:
        raise ApplicationError(f"{uploaded.name} is empty (0 bytes)")
    if uploaded.size > settings.UPLOAD_MAX_BYTES:
        raise ApplicationError(
            f"{uploaded.name} is {uploaded.size:,} bytes; uploads are limited to {settings.UPLOAD_MAX_BYTES:,}",
            status=413,
        )
    try:
        loaded = _decoded(uploaded)
    except ImageTooLargeError as exc:
        raise ApplicationError(f"{uploaded.name}: {exc}", status=413) from exc
    except ImageReadError as exc:
        raise ApplicationError(f"{uploaded.name} is not an image this product can read: {exc}") from exc
    original = Path(uploaded.name or "upload").name[:255]
    name = unique_name("uploads", Path(original).stem, ".png")
    written = [name]
    try:
        write_png_atomic(name, loaded.pixels)
        voi = loaded.metadata.get("voi")  # kept: the zoomable view and the network window use it too
        display = rendition_write(stem=Path(original).stem, pixels=loaded.pixels, voi=voi, written=written)
        with transaction.atomic():
            upload = UploadedImage.objects.create(
                owner=owner,
                file=name,
                display=display,
                original_name=original,
                width=int(loaded.pixels.shape[1]),
                height=int(loaded.pixels.shape[0]),
                bit_depth=loaded.bit_depth,
                modality=loaded.modality[:16],
                voi=voi,
            )
    except BaseException:
        delete_quietly(written)
        raise
    return upload


def upload_delete(*, upload: UploadedImage) -> None:
    """Remove an upload, its explanations and every file they name."""
    names = [upload.file.name, upload.display.name]
    pyramid = deepzoom_folder(upload) if upload.display else ""
    for explanation in upload.explanations.all():
        names += explanation_files(explanation)
    upload.delete()
    transaction.on_commit(lambda: delete_quietly(names))
    if pyramid:
        transaction.on_commit(lambda: delete_tree_quietly(pyramid))
