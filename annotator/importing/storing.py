"""Phase 2 of an import: every image's media files, then all rows in one transaction; if anything
fails, the files written so far are deleted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.contrib.auth.models import User
from django.db import transaction

from mining.imaging import display_uint8, finding_overlay, read_image, read_mask, thumbnail_uint8
from mining.progress import ProgressFn

from ..errors import ApplicationError
from ..files import delete_quietly, unique_name, write_png_atomic
from ..models import Concept, Dataset, Finding, Image
from ..services.renditions import rendition_write
from .records import ImageSpec
from .threads import in_threads

__all__ = ["DEFAULT_MODALITY", "THUMBNAIL_SIDE", "write_dataset"]

# Modality recorded for PNG/JPEG/TIFF images, which carry none.
DEFAULT_MODALITY = {"mammogram": "MG", "hip_fracture": "DX"}
THUMBNAIL_SIDE = 256
# Image columns stored as the spec holds them (in alphabetical order).
_SPEC_COLUMNS = (
    "bit_depth",
    "height",
    "label",
    "laterality",
    "metadata",
    "patient_id",
    "sha256",
    "source_name",
    "split",
    "view",
    "width",
)


@dataclass
class _StoredImage:
    file: str
    display: str
    thumbnail: str
    overlay: str
    masks: list[str]


def write_dataset(
    *,
    name: str,
    kind: str,
    layout: str,
    classes: list[str],
    specs: list[ImageSpec],
    created_by: User | None,
    max_pixels: int,
    progress: ProgressFn,
    folder: Path,
) -> Dataset:
    """Phase 2: store every image's files on a few threads, then the Dataset and all its rows in one
    transaction; the files written so far are deleted if anything fails."""
    written: list[str] = []
    try:
        stored = in_threads(lambda spec: _store_files(spec, max_pixels, written), specs, progress, "stored")
        with transaction.atomic():
            dataset = Dataset(
                name=name,
                kind=kind,
                source=layout,
                classes=classes,
                created_by=created_by,
                description=f"Imported from {folder.name or folder} ({layout}), {len(specs)} images.",
            )
            dataset.full_clean()
            dataset.save()
            _create_rows(dataset, kind, specs, stored)
    except BaseException:
        # BaseException too: a Ctrl-C half way through a long import must not leave orphan files.
        delete_quietly(written)
        raise
    return dataset


def _store_files(spec: ImageSpec, max_pixels: int, written: list[str]) -> _StoredImage:
    """Decode again (phase 1 kept no pixels: a real dataset does not fit in memory) and write the
    image, its display rendition, its thumbnail, its finding overlay and its masks; every name written
    goes to ``written``."""
    loaded = read_image(spec.path, max_pixels=max_pixels)
    if loaded.shape != (spec.height, spec.width):
        raise ApplicationError(f"{spec.source_name} changed during the import")
    masks = [read_mask(finding.mask_path, loaded.shape) for finding in spec.findings]

    def write(folder: str, suffix: str, array: np.ndarray) -> str:
        name = unique_name(folder, spec.stem, suffix)
        written.append(name)  # before writing: a failed write may leave a file behind (append is thread-safe)
        return write_png_atomic(name, array)

    image_name = write("images", ".png", loaded.pixels)
    voi = loaded.metadata.get("voi")
    display_name = rendition_write(stem=spec.stem, pixels=loaded.pixels, voi=voi, written=written)
    # The thumbnail in the same window as the rendition and the tiles, so the dataset page matches them.
    thumbnail = thumbnail_uint8(display_uint8(loaded.pixels, voi), THUMBNAIL_SIDE)
    overlay = finding_overlay(
        [(mask, finding.pathology) for mask, finding in zip(masks, spec.findings, strict=True)], thumbnail.shape
    )
    thumbnail_name = write("thumbnails", ".png", thumbnail)
    overlay_name = write("overlays", ".png", overlay)
    mask_names = [write("masks", f"-mask{i}.png", mask) for i, mask in enumerate(masks, start=1)]
    return _StoredImage(image_name, display_name, thumbnail_name, overlay_name, mask_names)


def _create_rows(dataset: Dataset, kind: str, specs: list[ImageSpec], stored: list[_StoredImage]) -> None:
    """Image, Finding and Finding.concepts rows in three bulk inserts (one query per batch)."""
    images = [_image_row(dataset, kind, spec, files) for spec, files in zip(specs, stored, strict=True)]
    Image.objects.bulk_create(images, batch_size=500)
    findings: list[Finding] = []
    codes: list[tuple[str, ...]] = []
    for image, spec, files in zip(images, specs, stored, strict=True):
        for finding, mask_name in zip(spec.findings, files.masks, strict=True):
            row = Finding(
                image=image,
                pathology=finding.pathology,
                lesion_type=finding.lesion_type,
                description=finding.description,
                mask=mask_name,
                area=finding.area,
                bbox=finding.bbox,
            )
            row.full_clean(exclude=["image"], validate_unique=False, validate_constraints=False)
            findings.append(row)
            codes.append(finding.concepts)
    Finding.objects.bulk_create(findings, batch_size=500)
    concept_ids = dict(Concept.objects.values_list("code", "id"))
    links = [
        Finding.concepts.through(finding_id=finding.pk, concept_id=concept_ids[code])
        for finding, finding_codes in zip(findings, codes, strict=True)
        for code in finding_codes
    ]
    Finding.concepts.through.objects.bulk_create(links, batch_size=1000)


def _image_row(dataset: Dataset, kind: str, spec: ImageSpec, files: _StoredImage) -> Image:
    image = Image(
        dataset=dataset,
        file=files.file,
        display=files.display,
        thumbnail=files.thumbnail,
        overlay=files.overlay,
        modality=spec.modality or DEFAULT_MODALITY[kind],
        **{column: getattr(spec, column) for column in _SPEC_COLUMNS},
    )
    image.full_clean(exclude=["dataset"], validate_unique=False, validate_constraints=False)
    return image
