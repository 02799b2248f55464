"""The manifest layout: a CSV of image rows (or finding rows) parsed into ImageSpecs and bad rows.

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
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mining.splits import SPLITS

from ..errors import ApplicationError
from .csv_reading import FINDING_COLUMNS, IMAGE_COLUMNS, check_text, parse_value, read_csv
from .records import MAX_LEN, PATHOLOGY_NAMES, PATHOLOGY_RANK, FindingSpec, ImageSpec, RowError

__all__ = ["parse_manifest"]

_REQUIRED_COLUMNS = ("image", "patient_id", "label")


def parse_manifest(path: Path, folder: Path, *, classes: list[str]) -> tuple[list[ImageSpec], list[RowError]]:
    """Image specs and bad rows of a manifest (pure parsing and path checks; no decoding)."""
    header, rows = read_csv(path)
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
    reasons += check_text(values, "patient_id", required=True) + check_text(values, "view")
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
        line=line,
        file="",
        source_name=source_name,
        path=image_path,
        patient_id=values["patient_id"],
        label=label,
        view=values.get("view", ""),
        laterality=laterality,
        split=split,
        metadata=_metadata(values),
        findings=[finding] if finding else [],
    )
    return spec, []


def _manifest_finding(
    values: dict[str, str], line: int, folder: Path, label: str
) -> tuple[FindingSpec | None, list[str]]:
    if not values.get("mask"):
        stray = [column for column in FINDING_COLUMNS[1:] if values.get(column)]
        return None, [f"{', '.join(stray)} given without a mask"] if stray else []
    _, mask_path, problem = _path_in_folder(folder, values["mask"], "mask")
    reasons = [problem] if problem else []
    pathology = (values.get("mask_pathology") or label).lower()
    if pathology not in PATHOLOGY_RANK:
        reasons.append(f"unknown mask_pathology {pathology!r} (use {' / '.join(PATHOLOGY_NAMES)})")
    reasons += check_text(values, "mask_lesion_type", limit=MAX_LEN["lesion_type"])
    concepts = tuple(code.strip() for code in values.get("mask_concepts", "").split(";") if code.strip())
    if reasons or mask_path is None:
        return None, reasons
    finding = FindingSpec(
        line=line,
        mask_path=mask_path,
        pathology=pathology,
        lesion_type=values.get("mask_lesion_type", ""),
        concepts=concepts,
        description=values.get("mask_description", ""),
    )
    return finding, []


def _merge_repeated(specs: dict[str, ImageSpec], spec: ImageSpec) -> list[str]:
    """Add a row's image to ``specs``, or its finding to the image already there; problems if any."""
    first = specs.get(spec.source_name)
    if first is None:
        specs[spec.source_name] = spec
        return []
    differing = [
        name
        for name in ("patient_id", "label", "view", "laterality", "split", "metadata")
        if getattr(first, name) != getattr(spec, name)
    ]
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
    if len(relative) > MAX_LEN["source_name"]:
        return "", None, f"{column} path is longer than {MAX_LEN['source_name']} characters"
    path = folder / relative
    if not path.is_file():
        return relative, None, f"{column} file not found: {relative}"
    return relative, path, ""


def _metadata(values: dict[str, str]) -> dict[str, Any]:
    known = set(IMAGE_COLUMNS) | set(FINDING_COLUMNS)
    return {key: parse_value(value) for key, value in values.items() if key not in known and value != ""}
