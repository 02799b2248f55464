"""Importing a dataset from a folder: images + a manifest CSV, or the CBIS-DDSM layout.

Manifest CSV (``layout="manifest"``; header on line 1, UTF-8, one row per image *or per finding*)
    image            path relative to the folder (PNG, JPEG, TIFF or DICOM)              required
    patient_id       the patient; splits are made per patient                             required
    label            image class, one of the dataset's classes                            required
                     (mammograms: normal / benign / malignant)
    view             e.g. CC, MLO                                                         optional
    laterality       L or R                                                               optional
    split            train / test / holdout: overrides the seeded split for that patient  optional
    mask             ROI mask of one finding, relative path (nonzero = inside)            optional
    mask_pathology   normal / benign / malignant (default: the row's label)               optional
    mask_concepts    ``;``-separated Concept codes, e.g. ``mass_shape.oval;mass_margin.circumscribed``
    mask_lesion_type mass, calcification, anatomy, ...                                    optional
    mask_description free text                                                            optional
    any other column goes into Image.metadata (numbers parsed as numbers, empty cells left out).

    Several findings on one image: repeat the row, one row per finding (same image path and the
    same image columns, a different ``mask``). A repeated image path whose image columns differ, or
    that adds no mask, is a bad row. Normal-anatomy findings (pathology ``normal``) are findings too.

CBIS-DDSM (``layout="cbis-ddsm"``): the four description CSVs (``mass_case_description_train_set.csv``
... ``calc_case_description_test_set.csv``) anywhere in the folder, plus the DICOM tree as TCIA
ships it. The CSV paths rarely match the downloaded tree (TCIA renames the inner folders), so a file
is found under the folder named by the path's first component; an ROI mask is told from the
cropped image sharing its folder by its size (the mask has the full image's size). One CSV row is
one finding; the image label is its worst finding. The Mass- and Calc- copies of a view are two
images, as in CBIS-DDSM itself. The official CBIS train/test split is kept in metadata only:
splits here are per patient, like every dataset.

Import runs in two phases. Phase 1 reads and decodes everything and collects every bad row with
its line number (nothing written). If any row is bad, ``ApplicationError("N bad rows ...",
extra={"errors": [{"line", "reason"[, "file"]}, ...]})`` is raised. Phase 2 writes the media files
(image PNG keeping its bit depth, 8-bit thumbnail, finding-outline overlay, one mask PNG per finding)
then all rows in one transaction; if anything fails the files written so far are deleted.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import posixpath
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from mining.imaging import (
    ImageReadError,
    LoadedImage,
    finding_overlay,
    read_image,
    read_image_size,
    read_mask,
    thumbnail_uint8,
)
from mining.progress import ProgressFn, no_progress
from mining.splits import SPLITS, assign_splits

from .errors import ApplicationError
from .files import delete_quietly, unique_name, write_png_atomic
from .models import PATHOLOGIES, Concept, Dataset, Finding, Image

__all__ = [
    "CLASSES_BY_KIND",
    "LAYOUTS",
    "cbis_concepts",
    "dataset_import",
    "import_summary",
    "parse_cbis_ddsm",
    "parse_manifest",
]

LAYOUTS = ("manifest", "cbis-ddsm")
CLASSES_BY_KIND: dict[str, list[str]] = {
    "mammogram": ["normal", "benign", "malignant"],
    "hip_fracture": ["no_fracture", "fracture"],
}
# Modality recorded for PNG/JPEG/TIFF images, which carry none.
DEFAULT_MODALITY = {"mammogram": "MG", "hip_fracture": "DX"}
THUMBNAIL_SIDE = 256
# Threads decoding / encoding images at once; each holds one image (and its masks) in memory.
_IO_THREADS = min(4, os.cpu_count() or 1)
T = TypeVar("T")
R = TypeVar("R")
_PATHOLOGY_NAMES = [name for name, _ in PATHOLOGIES]
_PATHOLOGY_RANK = {name: rank for rank, name in enumerate(_PATHOLOGY_NAMES)}  # normal < benign < malignant
_IMAGE_COLUMNS = ("image", "patient_id", "label", "view", "laterality", "split")
_FINDING_COLUMNS = ("mask", "mask_pathology", "mask_concepts", "mask_lesion_type", "mask_description")
_REQUIRED_COLUMNS = ("image", "patient_id", "label")
# Field lengths of the models, checked per row so a too-long value is a bad row, not a crash.
_MAX_LEN = {"patient_id": 128, "view": 16, "source_name": 500, "lesion_type": 32}


# --- intermediate records -----------------------------------------------------------------------


@dataclass
class RowError:
    line: int
    reason: str
    file: str = ""  # the CSV the line is in, when there are several (CBIS-DDSM)

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, **({"file": self.file} if self.file else {})}


@dataclass
class FindingSpec:
    line: int
    mask_path: Path
    pathology: str
    lesion_type: str = ""
    concepts: tuple[str, ...] = ()
    description: str = ""
    # Filled by phase 1:
    area: int = 0
    bbox: list[int] = field(default_factory=list)


@dataclass
class ImageSpec:
    """One image to import, as parsed; phase 1 fills the decoded facts."""

    line: int
    file: str
    source_name: str  # posix path relative to the folder, unique in the dataset
    path: Path
    patient_id: str
    label: str
    view: str = ""
    laterality: str = ""
    split: str = ""  # "" until assigned
    metadata: dict[str, Any] = field(default_factory=dict)
    findings: list[FindingSpec] = field(default_factory=list)
    name_hint: str = ""  # readable part of the stored file names; default: from source_name
    # Filled by phase 1:
    height: int = 0
    width: int = 0
    bit_depth: int = 8
    modality: str = ""
    sha256: str = ""

    @property
    def stem(self) -> str:
        """Readable part of the stored file names (unique_name adds the unique part)."""
        return self.name_hint or PurePosixPath(self.source_name).with_suffix("").as_posix().replace("/", "_")[-80:]


# --- the service ----------------------------------------------------------------------------------


def dataset_import(
    *,
    name: str,
    folder: Path | str,
    manifest: Path | str | None = None,
    layout: str = "manifest",
    kind: str = "mammogram",
    seed: int = 0,
    created_by: AbstractBaseUser | None = None,
    max_pixels: int | None = None,
    progress: ProgressFn = no_progress,
) -> Dataset:
    """Import every image of ``folder`` into a new Dataset, or nothing at all.

    ``manifest`` defaults to ``folder/manifest.csv`` (a relative path is tried in the folder first);
    ``max_pixels`` defaults to settings.MAX_IMAGE_PIXELS. Raises ApplicationError listing every bad
    row (see the module docstring).
    """
    name = name.strip()
    folder = Path(folder)
    classes = _check_arguments(name=name, folder=folder, layout=layout, kind=kind)
    limit = settings.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels

    if layout == "manifest":
        specs, errors = parse_manifest(_manifest_path(folder, manifest), folder, classes=classes)
    else:
        specs, errors = parse_cbis_ddsm(folder)
    errors += _check_concepts(specs)
    errors += _check_labels(specs, kind)
    errors += _resolve_splits(specs, seed)
    errors += _decode_all(specs, limit, progress)
    if errors:
        raise _bad_rows(errors)
    if not specs:
        raise ApplicationError("nothing to import: no image rows found")
    return _write_dataset(
        name=name, kind=kind, layout=layout, classes=classes, specs=specs, created_by=created_by,
        max_pixels=limit, progress=progress, folder=folder,
    )  # fmt: skip


def import_summary(dataset: Dataset) -> dict[str, Any]:
    """Counts for the command's report: images, patients per split, findings per pathology."""
    images = dataset.images.all()
    patients: dict[str, int] = {
        split: images.filter(split=split).values("patient_id").distinct().count() for split in SPLITS
    }
    findings = Counter(Finding.objects.filter(image__dataset=dataset).values_list("pathology", flat=True))
    labels = Counter(images.values_list("label", flat=True))
    return {
        "images": images.count(),
        "patients": patients,
        "labels": dict(sorted(labels.items())),
        "findings": {pathology: findings.get(pathology, 0) for pathology in _PATHOLOGY_NAMES},
    }


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


# --- manifest -----------------------------------------------------------------------------------


def parse_manifest(path: Path, folder: Path, *, classes: list[str]) -> tuple[list[ImageSpec], list[RowError]]:
    """Image specs and bad rows of a manifest (pure parsing and path checks; no decoding)."""
    header, rows = _read_csv(path)
    missing = [column for column in _REQUIRED_COLUMNS if column not in header]
    if missing:
        raise ApplicationError(
            f"manifest is missing column(s): {', '.join(missing)}",
            extra={"errors": [{"line": 1, "reason": f"missing column(s): {', '.join(missing)}"}]},
        )
    specs: dict[str, ImageSpec] = {}
    errors: list[RowError] = []
    for line, row in rows:
        if len(row) != len(header):
            errors.append(RowError(line, f"expected {len(header)} columns, found {len(row)}"))
            continue
        values = dict(zip(header, (cell.strip() for cell in row), strict=True))
        spec, reasons = _manifest_row(values, line, folder, classes)
        if spec is not None and not reasons:
            reasons = _merge_repeated(specs, spec)
        errors.extend(RowError(line, reason) for reason in reasons)
    return list(specs.values()), errors


def _manifest_row(
    values: dict[str, str], line: int, folder: Path, classes: list[str]
) -> tuple[ImageSpec | None, list[str]]:
    """One manifest row as an ImageSpec holding at most one finding, and the row's problems."""
    reasons: list[str] = []
    source_name, image_path, problem = _path_in_folder(folder, values.get("image", ""), "image")
    if problem:
        reasons.append(problem)
    label = values.get("label", "").lower()
    if not label:
        reasons.append("label is empty")
    elif label not in classes:
        reasons.append(f"unknown label {values['label']!r} (use {' / '.join(classes)})")
    reasons += _check_text(values, "patient_id", required=True) + _check_text(values, "view")
    laterality, split = values.get("laterality", "").upper(), values.get("split", "").lower()
    if laterality not in ("", "L", "R"):
        reasons.append(f"bad laterality {values['laterality']!r} (use L or R)")
    if split not in ("", *SPLITS):
        reasons.append(f"bad split {values['split']!r} (use {' / '.join(SPLITS)})")
    finding, finding_reasons = _manifest_finding(values, line, folder, label)
    reasons += finding_reasons
    if reasons or image_path is None:
        return None, reasons
    spec = ImageSpec(
        line=line, file="", source_name=source_name, path=image_path, patient_id=values["patient_id"],
        label=label, view=values.get("view", ""), laterality=laterality, split=split,
        metadata=_metadata(values), findings=[finding] if finding else [],
    )  # fmt: skip
    return spec, []


def _manifest_finding(
    values: dict[str, str], line: int, folder: Path, label: str
) -> tuple[FindingSpec | None, list[str]]:
    if not values.get("mask"):
        stray = [column for column in _FINDING_COLUMNS[1:] if values.get(column)]
        return None, [f"{', '.join(stray)} given without a mask"] if stray else []
    _, mask_path, problem = _path_in_folder(folder, values["mask"], "mask")
    reasons = [problem] if problem else []
    pathology = (values.get("mask_pathology") or label).lower()
    if pathology not in _PATHOLOGY_RANK:
        reasons.append(f"unknown mask_pathology {pathology!r} (use {' / '.join(_PATHOLOGY_NAMES)})")
    reasons += _check_text(values, "mask_lesion_type", limit=_MAX_LEN["lesion_type"])
    concepts = tuple(code.strip() for code in values.get("mask_concepts", "").split(";") if code.strip())
    if reasons or mask_path is None:
        return None, reasons
    finding = FindingSpec(
        line=line, mask_path=mask_path, pathology=pathology, lesion_type=values.get("mask_lesion_type", ""),
        concepts=concepts, description=values.get("mask_description", ""),
    )  # fmt: skip
    return finding, []


def _merge_repeated(specs: dict[str, ImageSpec], spec: ImageSpec) -> list[str]:
    """Add a row's image to ``specs``, or its finding to the image already there; problems if any."""
    first = specs.get(spec.source_name)
    if first is None:
        specs[spec.source_name] = spec
        return []
    differing = [
        name for name in ("patient_id", "label", "view", "laterality", "split", "metadata")
        if getattr(first, name) != getattr(spec, name)
    ]  # fmt: skip
    if differing:
        return [f"image {spec.source_name} is also on line {first.line} with a different {', '.join(differing)}"]
    if not spec.findings:
        return [f"image {spec.source_name} is already on line {first.line}; a repeated row must add a mask"]
    mask_path = spec.findings[0].mask_path
    repeated = [f.line for f in first.findings if f.mask_path == mask_path]
    if repeated:
        return [f"mask {mask_path.name} of image {spec.source_name} is already on line {repeated[0]}"]
    first.findings.extend(spec.findings)
    return []


def _path_in_folder(folder: Path, given: str, column: str) -> tuple[str, Path | None, str]:
    """(normalised relative name, path, problem) for a path cell; never lets a row leave the folder."""
    if not given:
        return "", None, f"{column} is empty"
    relative = posixpath.normpath(given.replace("\\", "/"))
    if relative.startswith("/") or relative == ".." or relative.startswith("../") or re.match(r"^[A-Za-z]:", relative):
        return "", None, f"{column} path {given!r} is outside the folder"
    if len(relative) > _MAX_LEN["source_name"]:
        return "", None, f"{column} path is longer than {_MAX_LEN['source_name']} characters"
    path = folder / relative
    if not path.is_file():
        return relative, None, f"{column} file not found: {relative}"
    return relative, path, ""


def _check_text(values: dict[str, str], column: str, *, required: bool = False, limit: int | None = None) -> list[str]:
    value = values.get(column, "")
    if required and not value:
        return [f"{column} is empty"]
    limit = limit or _MAX_LEN.get(column)
    if limit and len(value) > limit:
        return [f"{column} is longer than {limit} characters"]
    return []


def _metadata(values: dict[str, str]) -> dict[str, Any]:
    known = set(_IMAGE_COLUMNS) | set(_FINDING_COLUMNS)
    return {key: _parse_value(value) for key, value in values.items() if key not in known and value != ""}


_INT = re.compile(r"[-+]?(0|[1-9]\d*)")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")


def _parse_value(text: str) -> Any:
    """A metadata cell: int or float when it is plainly a number, else the text.

    "007" stays text: a leading zero means a code, not a quantity.
    """
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text) and not re.match(r"[-+]?0\d", text):
        number = float(text)
        return number if math.isfinite(number) else text
    return text


def _read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Normalised header (lower case, spaces -> underscores for known names) and (line, cells) rows.

    Line numbers are the file's own (header = 1) even with blank lines or quoted newlines.
    """
    handle = path.open(newline="", encoding="utf-8-sig")
    reader = csv.reader(handle)
    try:
        raw_header = next(reader)
    except StopIteration:
        handle.close()
        raise ApplicationError(f"{path.name} is empty") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        handle.close()
        raise ApplicationError(f"{path.name} is not a readable CSV file: {exc}") from exc
    header = [_column_name(cell) for cell in raw_header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        with handle:
            try:
                for row in reader:
                    if any(cell.strip() for cell in row):
                        yield reader.line_num, row
            except (UnicodeDecodeError, csv.Error) as exc:
                raise ApplicationError(f"{path.name} line {reader.line_num + 1} cannot be read: {exc}") from exc

    return header, rows()


def _column_name(cell: str) -> str:
    """Known column names match case- and spacing-insensitively; other names are kept as written."""
    canonical = re.sub(r"[\s_]+", "_", cell.strip().lower())
    known = {*_IMAGE_COLUMNS, *_FINDING_COLUMNS, *_CBIS_COLUMNS}
    return canonical if canonical in known else cell.strip()


# --- CBIS-DDSM ----------------------------------------------------------------------------------

_CBIS_CSV = re.compile(r"^(mass|calc)_case_description_(train|test)_set\.csv$", re.IGNORECASE)
_CBIS_COLUMNS = (
    "patient_id", "breast_density", "left_or_right_breast", "image_view", "abnormality_id", "abnormality_type",
    "mass_shape", "mass_margins", "calc_type", "calc_distribution", "assessment", "pathology", "subtlety",
    "image_file_path", "cropped_image_file_path", "roi_mask_file_path",
)  # fmt: skip
_CBIS_PATHOLOGY = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign"}
_CBIS_LATERALITY = {"LEFT": "L", "RIGHT": "R"}
# CBIS-DDSM (BI-RADS 4th edition words) -> our 5th-edition concept codes, only where the match is
# clear. 5th edition folded "lobulated" into oval, renamed ill-defined to indistinct, punctate into
# round, lucent-centred / eggshell into rim. Unmapped words stay in the finding's description.
_CBIS_CONCEPTS: dict[str, dict[str, str]] = {
    "mass_shape": {
        "ROUND": "mass_shape.round",
        "OVAL": "mass_shape.oval",
        "LOBULATED": "mass_shape.oval",
        "IRREGULAR": "mass_shape.irregular",
        "ARCHITECTURAL_DISTORTION": "architectural_distortion.architectural_distortion",
        "ASYMMETRIC_BREAST_TISSUE": "asymmetry.global_asymmetry",
        "FOCAL_ASYMMETRIC_DENSITY": "asymmetry.focal_asymmetry",
        "LYMPH_NODE": "special_case.intramammary_lymph_node",
    },
    "mass_margins": {
        "CIRCUMSCRIBED": "mass_margin.circumscribed",
        "OBSCURED": "mass_margin.obscured",
        "MICROLOBULATED": "mass_margin.microlobulated",
        "ILL_DEFINED": "mass_margin.indistinct",
        "SPICULATED": "mass_margin.spiculated",
    },
    "calc_type": {
        "AMORPHOUS": "calc_suspicious.amorphous",
        "PLEOMORPHIC": "calc_suspicious.fine_pleomorphic",
        "FINE_LINEAR_BRANCHING": "calc_suspicious.fine_linear_or_fine_linear_branching",
        "COARSE": "calc_benign.coarse_or_popcorn_like",
        "VASCULAR": "calc_benign.vascular",
        "SKIN": "calc_benign.skin",
        "LARGE_RODLIKE": "calc_benign.large_rod_like",
        "ROUND_AND_REGULAR": "calc_benign.round",
        "PUNCTATE": "calc_benign.round",
        "LUCENT_CENTER": "calc_benign.rim",
        "LUCENT_CENTERED": "calc_benign.rim",
        "EGGSHELL": "calc_benign.rim",
        "DYSTROPHIC": "calc_benign.dystrophic",
        "MILK_OF_CALCIUM": "calc_benign.milk_of_calcium",
    },
    "calc_distribution": {
        "CLUSTERED": "calc_distribution.grouped",
        "LINEAR": "calc_distribution.linear",
        "SEGMENTAL": "calc_distribution.segmental",
        "REGIONAL": "calc_distribution.regional",
        "DIFFUSELY_SCATTERED": "calc_distribution.diffuse",
    },
}


def cbis_concepts(row: dict[str, str]) -> tuple[str, ...]:
    """Concept codes for a CBIS-DDSM row's shape / margins / calc type / distribution words.

    Values combine words with "-" ("IRREGULAR-ARCHITECTURAL_DISTORTION"); "N/A" and unknown words map to nothing.
    """
    codes: list[str] = []
    for column, mapping in _CBIS_CONCEPTS.items():
        for word in row.get(column, "").upper().split("-"):
            code = mapping.get(word.strip())
            if code and code not in codes:
                codes.append(code)
    return tuple(codes)


def parse_cbis_ddsm(folder: Path) -> tuple[list[ImageSpec], list[RowError]]:
    """Image specs and bad rows from CBIS-DDSM description CSVs and the DICOM tree under ``folder``."""
    csv_paths = sorted(p for p in folder.rglob("*.csv") if _CBIS_CSV.match(p.name))
    if not csv_paths:
        raise ApplicationError(f"no CBIS-DDSM description CSV (e.g. mass_case_description_train_set.csv) in {folder}")
    rows = [(csv_path, line, row) for csv_path in csv_paths for line, row in _cbis_rows(csv_path)]
    finder = _DicomFinder(folder, {_first_component(row.get(c, "")) for _, _, row in rows for c in _CBIS_PATHS})
    specs: dict[str, ImageSpec] = {}
    errors: list[RowError] = []
    for csv_path, line, row in rows:
        reasons = _cbis_row(specs, row, line, csv_path.name, finder, folder)
        errors.extend(RowError(line, reason, csv_path.name) for reason in reasons)
    return list(specs.values()), errors


_CBIS_PATHS = ("image_file_path", "roi_mask_file_path")


def _cbis_rows(csv_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    header, rows = _read_csv(csv_path)
    missing = [c for c in ("patient_id", "pathology", "image_file_path", "roi_mask_file_path") if c not in header]
    if missing:
        raise ApplicationError(f"{csv_path.name} is missing column(s): {', '.join(missing)}")
    for line, cells in rows:
        yield line, dict(zip(header, (cell.strip() for cell in cells), strict=False))


def _cbis_row(
    specs: dict[str, ImageSpec], row: dict[str, str], line: int, file: str, finder: _DicomFinder, folder: Path
) -> list[str]:
    """Add one CBIS-DDSM row (one finding) to the image it belongs to; the row's problems."""
    pathology = _CBIS_PATHOLOGY.get(row.get("pathology", "").upper())
    if pathology is None:
        return [f"unknown pathology {row.get('pathology', '')!r}"]
    key = _first_component(row.get("image_file_path", ""))
    spec = specs.get(key)
    if spec is None:
        image_path, problem = finder.image(row.get("image_file_path", ""))
        if image_path is None:
            return [problem]
        spec = _cbis_image_spec(row, line, file, image_path, folder)
        reasons = _check_text({"patient_id": spec.patient_id}, "patient_id", required=True)
        try:
            spec.height, spec.width = read_image_size(image_path)  # to tell the ROI mask from the crop
        except ImageReadError as exc:
            reasons.append(f"{spec.source_name}: {exc}")
        if reasons:
            return reasons
    else:
        differing = _cbis_conflicts(spec, row)
        if differing:
            return [f"image {key} is also on line {spec.line} with a different {', '.join(differing)}"]
    mask_path, problem = finder.mask(row.get("roi_mask_file_path", ""), (spec.height, spec.width))
    if mask_path is None:
        return [problem]
    specs.setdefault(key, spec)
    spec.findings.append(_cbis_finding(row, line, mask_path, pathology))
    if _PATHOLOGY_RANK[pathology] > _PATHOLOGY_RANK[spec.label]:
        spec.label = pathology
    _cbis_update_metadata(spec, row)
    return []


def _cbis_image_spec(row: dict[str, str], line: int, file: str, image_path: Path, folder: Path) -> ImageSpec:
    official_split = "test" if "_test_" in file.lower() else "train"
    metadata: dict[str, Any] = {"cbis_split": official_split, "cbis_folder": _first_component(row["image_file_path"])}
    density = _parse_value(row.get("breast_density", ""))
    if density != "":
        metadata["breast_density"] = density
    return ImageSpec(
        line=line, file=file, source_name=image_path.relative_to(folder).as_posix(), path=image_path,
        patient_id=row.get("patient_id", ""), label="benign", view=row.get("image_view", "").upper(),
        laterality=_CBIS_LATERALITY.get(row.get("left_or_right_breast", "").upper(), ""), metadata=metadata,
        name_hint=metadata["cbis_folder"],
    )  # fmt: skip


def _cbis_conflicts(spec: ImageSpec, row: dict[str, str]) -> list[str]:
    differing = []
    if row.get("patient_id", "") != spec.patient_id:
        differing.append("patient_id")
    if row.get("image_view", "").upper() != spec.view:
        differing.append("image view")
    if _CBIS_LATERALITY.get(row.get("left_or_right_breast", "").upper(), "") != spec.laterality:
        differing.append("left or right breast")
    return differing


def _cbis_finding(row: dict[str, str], line: int, mask_path: Path, pathology: str) -> FindingSpec:
    lesion_type = "calcification" if row.get("abnormality_type", "").lower().startswith("calc") else "mass"
    words = (
        ("shape", "mass_shape"), ("margins", "mass_margins"), ("calc type", "calc_type"),
        ("distribution", "calc_distribution"), ("assessment", "assessment"), ("subtlety", "subtlety"),
        ("pathology", "pathology"),
    )  # fmt: skip
    parts = [f"{label} {row[column]}" for label, column in words if row.get(column) and row[column] != "N/A"]
    description = f"CBIS-DDSM {lesion_type} {row.get('abnormality_id', '')}".rstrip() + ": " + ", ".join(parts)
    return FindingSpec(
        line=line, mask_path=mask_path, pathology=pathology, lesion_type=lesion_type,
        concepts=cbis_concepts(row), description=description,
    )  # fmt: skip


def _cbis_update_metadata(spec: ImageSpec, row: dict[str, str]) -> None:
    """Image-level summary of the per-finding numbers: highest BI-RADS assessment, lowest subtlety."""
    for key, pick in (("assessment", max), ("subtlety", min)):
        value = _parse_value(row.get(key, ""))
        if isinstance(value, int):
            spec.metadata[key] = pick(spec.metadata.get(key, value), value)


def _first_component(path: str) -> str:
    parts = [p for p in path.strip().replace("\\", "/").split("/") if p]
    return parts[0] if parts else ""


class _DicomFinder:
    """Finds the DICOM a CBIS-DDSM CSV path means in a tree whose inner folders were renamed.

    One walk of the tree indexes every .dcm file under each folder whose name a CSV path starts with.
    """

    def __init__(self, root: Path, wanted: set[str]) -> None:
        self.root = root
        self.files: dict[str, list[Path]] = defaultdict(list)
        wanted.discard("")
        for dirpath, _dirnames, filenames in os.walk(root):
            relative = Path(dirpath).relative_to(root).parts
            owners = [part for part in relative if part in wanted]
            for filename in filenames:
                if filename.lower().endswith(".dcm"):
                    for owner in owners:
                        self.files[owner].append(Path(dirpath) / filename)
        for paths in self.files.values():
            paths.sort()

    def image(self, csv_path: str) -> tuple[Path | None, str]:
        """The full mammogram: the exact path if it exists, else the one DICOM under its folder."""
        exact = self._exact(csv_path)
        if exact is not None:
            return exact, ""
        candidates = self.files.get(_first_component(csv_path), [])
        if len(candidates) == 1:
            return candidates[0], ""
        return None, self._not_found("image", csv_path, candidates)

    def mask(self, csv_path: str, shape: tuple[int, int]) -> tuple[Path | None, str]:
        """The ROI mask: among the DICOMs under its folder (mask and cropped image), the one of the
        image's size; the exact path is preferred when it has that size."""
        candidates = self.files.get(_first_component(csv_path), [])
        exact = self._exact(csv_path)
        ordered = ([exact] if exact is not None else []) + [c for c in candidates if c != exact]
        for candidate in ordered:
            try:
                if read_image_size(candidate) == shape:
                    return candidate, ""
            except ImageReadError:
                continue
        if len(ordered) == 1:
            return ordered[0], ""  # let the mask check say what is wrong with its size
        return None, self._not_found("ROI mask", csv_path, ordered)

    def _exact(self, csv_path: str) -> Path | None:
        relative = csv_path.strip().replace("\\", "/")
        if not relative:
            return None
        path = self.root / relative
        return path if path.is_file() and path.resolve().is_relative_to(self.root.resolve()) else None

    @staticmethod
    def _not_found(what: str, csv_path: str, candidates: list[Path]) -> str:
        folder = _first_component(csv_path) or "(empty path)"
        if not candidates:
            return f"{what} not found: no DICOM file under a folder named {folder}"
        return f"{what} not found: {len(candidates)} DICOM files under {folder}, none of them fits"


# --- checks common to both layouts --------------------------------------------------------------


def _check_concepts(specs: list[ImageSpec]) -> list[RowError]:
    known = set(Concept.objects.values_list("code", flat=True))
    errors = []
    for spec in specs:
        for finding in spec.findings:
            unknown = [code for code in finding.concepts if code not in known]
            if unknown:
                errors.append(RowError(finding.line, f"unknown concept(s): {', '.join(unknown)}", spec.file))
    return errors


def _check_labels(specs: list[ImageSpec], kind: str) -> list[RowError]:
    """A mammogram's label may not be milder than its worst finding (a 'benign' image with a malignant mask)."""
    if kind != "mammogram":
        return []
    errors = []
    for spec in specs:
        worst = max(spec.findings, key=lambda f: _PATHOLOGY_RANK[f.pathology], default=None)
        if worst is not None and _PATHOLOGY_RANK[worst.pathology] > _PATHOLOGY_RANK.get(spec.label, 0):
            reason = f"label {spec.label!r} but the image has a {worst.pathology} finding (line {worst.line})"
            errors.append(RowError(spec.line, reason, spec.file))
    return errors


def _resolve_splits(specs: list[ImageSpec], seed: int) -> list[RowError]:
    """Give every image its patient's split: the manifest's ``split`` if set, else the seeded one."""
    chosen: dict[str, tuple[str, int]] = {}
    errors = []
    for spec in specs:
        if not spec.split:
            continue
        previous = chosen.setdefault(spec.patient_id, (spec.split, spec.line))
        if previous[0] != spec.split:
            reason = f"patient {spec.patient_id} has split {spec.split!r} here, {previous[0]!r} on line {previous[1]}"
            errors.append(RowError(spec.line, reason, spec.file))
    free = {spec.patient_id for spec in specs if spec.patient_id not in chosen}
    assigned = assign_splits(free, seed)
    for spec in specs:
        spec.split = chosen[spec.patient_id][0] if spec.patient_id in chosen else assigned[spec.patient_id]
    return errors


def _decode_all(specs: list[ImageSpec], max_pixels: int, progress: ProgressFn) -> list[RowError]:
    """Phase 1's heavy part: decode every image and mask once, record sizes, areas and boxes."""
    results = _in_threads(lambda spec: _decode_one(spec, max_pixels), specs, progress, "checked")
    return [error for errors in results for error in errors]


def _in_threads(fn: Callable[[T], R], items: list[T], progress: ProgressFn, verb: str) -> list[R]:
    """``[fn(item) for item in items]`` on a few threads: decoding, PNG encoding and fsync release
    the GIL, so this scales with the cores (the DB is never touched from these threads).

    On the first exception the queued items are cancelled and the running ones finish before it
    propagates, so the caller's cleanup sees every file that was written.
    """
    pool = ThreadPoolExecutor(max_workers=_IO_THREADS, thread_name_prefix="import")
    try:
        futures = [pool.submit(fn, item) for item in items]
        results = []
        for index, future in enumerate(futures, start=1):
            results.append(future.result())
            progress(index, len(items), f"{verb} {index}/{len(items)} images")
        return results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_one(spec: ImageSpec, max_pixels: int) -> list[RowError]:
    try:
        loaded = read_image(spec.path, max_pixels=max_pixels)
        spec.sha256 = _sha256(spec.path)
    except (ImageReadError, OSError) as exc:
        return [RowError(spec.line, f"{spec.source_name}: {exc}", spec.file)]
    _take_image_facts(spec, loaded)
    errors = []
    for finding in spec.findings:
        try:
            mask = read_mask(finding.mask_path, loaded.shape)
        except ImageReadError as exc:
            errors.append(RowError(finding.line, f"mask {finding.mask_path.name}: {exc}", spec.file))
            continue
        if not mask.any():
            errors.append(RowError(finding.line, f"mask {finding.mask_path.name} is empty", spec.file))
        finding.area, finding.bbox = _area_and_bbox(mask)
    return errors


def _take_image_facts(spec: ImageSpec, loaded: LoadedImage) -> None:
    spec.height, spec.width = loaded.shape
    spec.bit_depth, spec.modality = loaded.bit_depth, loaded.modality
    if loaded.metadata.get("format") == "DICOM":  # header facts fill what the manifest left empty
        dicom = loaded.metadata
        spec.view = spec.view or str(dicom.get("ViewPosition", ""))[: _MAX_LEN["view"]]
        laterality = str(dicom.get("Laterality", "")).upper()
        spec.laterality = spec.laterality or (laterality if laterality in ("L", "R") else "")
        age = re.fullmatch(r"0*(\d+)Y", str(dicom.get("PatientAge", "")))
        if age:
            spec.metadata.setdefault("age", int(age.group(1)))
        if dicom.get("PatientSex"):
            spec.metadata.setdefault("sex", dicom["PatientSex"])
        spec.metadata.setdefault("dicom", dicom)


def _area_and_bbox(mask: np.ndarray) -> tuple[int, list[int]]:
    """Mask pixels and [x0, y0, x1, y1] (x1 / y1 exclusive); [] for an empty mask."""
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if not rows.any():
        return 0, []
    y0, y1 = int(rows.argmax()), int(len(rows) - rows[::-1].argmax())
    x0, x1 = int(cols.argmax()), int(len(cols) - cols[::-1].argmax())
    return int(mask.sum()), [x0, y0, x1, y1]


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --- phase 2: files, then rows ------------------------------------------------------------------


@dataclass
class _StoredImage:
    file: str
    thumbnail: str
    overlay: str
    masks: list[str]


def _write_dataset(
    *, name: str, kind: str, layout: str, classes: list[str], specs: list[ImageSpec],
    created_by: AbstractBaseUser | None, max_pixels: int, progress: ProgressFn, folder: Path,
) -> Dataset:  # fmt: skip
    written: list[str] = []
    try:
        stored = _in_threads(lambda spec: _store_files(spec, max_pixels, written), specs, progress, "stored")
        with transaction.atomic():
            dataset = Dataset(
                name=name, kind=kind, source=layout, classes=classes, created_by=created_by,
                description=f"Imported from {folder.name or folder} ({layout}), {len(specs)} images.",
            )  # fmt: skip
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
    image, its thumbnail, its finding overlay and its masks; every name written goes to ``written``."""
    loaded = read_image(spec.path, max_pixels=max_pixels)
    if loaded.shape != (spec.height, spec.width):
        raise ApplicationError(f"{spec.source_name} changed during the import")
    masks = [read_mask(finding.mask_path, loaded.shape) for finding in spec.findings]

    def write(folder: str, suffix: str, array: np.ndarray) -> str:
        name = unique_name(folder, spec.stem, suffix)
        written.append(name)  # before writing: a failed write may leave a file behind (append is thread-safe)
        return write_png_atomic(name, array)

    image_name = write("images", ".png", loaded.pixels)
    thumbnail = thumbnail_uint8(loaded.pixels, THUMBNAIL_SIDE)
    overlay = finding_overlay(
        [(mask, finding.pathology) for mask, finding in zip(masks, spec.findings, strict=True)], thumbnail.shape
    )
    thumbnail_name = write("thumbnails", ".png", thumbnail)
    overlay_name = write("overlays", ".png", overlay)
    mask_names = [write("masks", f"-mask{i}.png", mask) for i, mask in enumerate(masks, start=1)]
    return _StoredImage(image_name, thumbnail_name, overlay_name, mask_names)


def _create_rows(dataset: Dataset, kind: str, specs: list[ImageSpec], stored: list[_StoredImage]) -> None:
    """Image, Finding and Finding.concepts rows in three bulk inserts (one query per batch)."""
    images = [_image_row(dataset, kind, spec, files) for spec, files in zip(specs, stored, strict=True)]
    Image.objects.bulk_create(images, batch_size=500)
    findings: list[Finding] = []
    codes: list[tuple[str, ...]] = []
    for image, spec, files in zip(images, specs, stored, strict=True):
        for finding, mask_name in zip(spec.findings, files.masks, strict=True):
            row = Finding(
                image=image, pathology=finding.pathology, lesion_type=finding.lesion_type,
                description=finding.description, mask=mask_name, area=finding.area, bbox=finding.bbox,
            )  # fmt: skip
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
        dataset=dataset, file=files.file, thumbnail=files.thumbnail, overlay=files.overlay,
        source_name=spec.source_name, sha256=spec.sha256, width=spec.width, height=spec.height,
        bit_depth=spec.bit_depth, modality=spec.modality or DEFAULT_MODALITY[kind], view=spec.view,
        laterality=spec.laterality, patient_id=spec.patient_id, split=spec.split, label=spec.label,
        metadata=spec.metadata,
    )  # fmt: skip
    image.full_clean(exclude=["dataset"], validate_unique=False, validate_constraints=False)
    return image
