"""Writes for datasets: importing a folder of images as a new Dataset, all or nothing.

The layouts, checks and storage are in the annotator.importing package; this is the service over them.

Import runs in two phases. Phase 1 reads and decodes everything and collects every bad row with
its line number (nothing written). If any row is bad, ``ApplicationError("N bad rows ...",
extra={"errors": [{"line", "reason"[, "file"]}, ...]})`` is raised. Phase 2 writes the media files
(image PNG keeping its bit depth, 8-bit thumbnail, finding-outline overlay, one mask PNG per finding)
then all rows in one transaction; if anything fails the files written so far are deleted.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User

from mining.progress import ProgressFn, no_progress

from ..errors import ApplicationError
from ..importing.cbis_ddsm import parse_cbis_ddsm
from ..importing.checks import check_concepts, check_labels, decode_all, resolve_splits
from ..importing.manifest import parse_manifest
from ..importing.records import RowError
from ..importing.roots import specs_inside
from ..importing.storing import write_dataset
from ..models import Dataset

__all__ = ["CLASSES_BY_KIND", "LAYOUTS", "dataset_import"]

LAYOUTS = ("manifest", "cbis-ddsm")
CLASSES_BY_KIND: dict[str, list[str]] = {
    "mammogram": ["normal", "benign", "malignant"],
    "hip_fracture": ["no_fracture", "fracture"],
}


def dataset_import(
    *,
    name: str,
    folder: Path | str,
    manifest: Path | str | None = None,
    layout: str = "manifest",
    kind: str = "mammogram",
    seed: int = 0,
    created_by: User | None = None,
    max_pixels: int | None = None,
    progress: ProgressFn = no_progress,
    confine_to: Path | None = None,
) -> Dataset:
    """Import every image of ``folder`` into a new Dataset, or nothing at all.

    ``manifest`` defaults to ``folder/manifest.csv`` (a relative path is tried in the folder first);
    ``max_pixels`` defaults to settings.MAX_IMAGE_PIXELS. Raises ApplicationError listing every bad
    row (see the module docstring). ``confine_to`` (the browser import's root): the manifest and every
    image and mask must resolve inside it, symlinks followed; each one outside is a bad row.
    """
    name = name.strip()
    folder = Path(folder)
    classes = _check_arguments(name=name, folder=folder, layout=layout, kind=kind)
    limit = settings.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels

    if layout == "manifest":
        manifest_path = _manifest_path(folder, manifest)
        real_root = os.path.realpath(confine_to) if confine_to is not None else None
        if real_root is not None and not Path(os.path.realpath(manifest_path)).is_relative_to(real_root):
            raise ApplicationError(f"manifest {manifest_path.name} is a link leading outside the import root")
        specs, errors = parse_manifest(manifest_path, folder, classes=classes)
    else:
        specs, errors = parse_cbis_ddsm(folder)
    if confine_to is not None:
        specs, outside = specs_inside(specs, confine_to)
        errors += outside
    errors += check_concepts(specs)
    errors += check_labels(specs, kind)
    errors += resolve_splits(specs, seed)
    errors += decode_all(specs, limit, progress)
    if errors:
        raise _bad_rows(errors)
    if not specs:
        raise ApplicationError("nothing to import: no image rows found")
    return write_dataset(
        name=name,
        kind=kind,
        layout=layout,
        classes=classes,
        specs=specs,
        created_by=created_by,
        max_pixels=limit,
        progress=progress,
        folder=folder,
    )


def _check_arguments(*, name: str, folder: Path, layout: str, kind: str) -> list[str]:
    """The dataset's classes, after refusing arguments no row can fix."""
    if not name:
        raise ApplicationError("a dataset needs a name")
    if layout not in LAYOUTS:
        raise ApplicationError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if kind not in CLASSES_BY_KIND:
        raise ApplicationError(f"unknown dataset kind {kind!r}; use one of {', '.join(CLASSES_BY_KIND)}")
    if not folder.is_dir():
        raise ApplicationError(f"folder not found: {folder}")
    if Dataset.objects.filter(name=name).exists():
        raise ApplicationError(f"a dataset named {name!r} already exists")
    return list(CLASSES_BY_KIND[kind])


def _manifest_path(folder: Path, manifest: Path | str | None) -> Path:
    if manifest is None:
        path = folder / "manifest.csv"
    else:
        given = Path(manifest)
        path = given if given.is_absolute() or not (folder / given).is_file() else folder / given
    if not path.is_file():
        raise ApplicationError(f"manifest not found: {path}")
    return path


def _bad_rows(errors: list[RowError]) -> ApplicationError:
    errors = sorted(errors, key=lambda e: (e.file, e.line, e.reason))
    noun = "bad row" if len(errors) == 1 else "bad rows"
    where = "input" if any(e.file for e in errors) else "manifest"
    return ApplicationError(f"{len(errors)} {noun} in {where}", extra={"errors": [e.as_dict() for e in errors]})
