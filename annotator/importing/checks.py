"""Phase 1's checks common to both layouts: concepts, labels against findings, patient splits, and
decoding every image and mask once to record sizes, areas and boxes (nothing is written)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from mining.imaging import ImageReadError, LoadedImage, read_image, read_mask
from mining.progress import ProgressFn
from mining.splits import assign_splits

from ..models import Concept
from .records import MAX_LEN, PATHOLOGY_RANK, ImageSpec, RowError
from .threads import in_threads

__all__ = ["check_concepts", "check_labels", "decode_all", "resolve_splits"]


def check_concepts(specs: list[ImageSpec]) -> list[RowError]:
    """A bad row for each finding that names a concept code the Concept table does not hold."""
    known = set(Concept.objects.values_list("code", flat=True))
    errors = []
    for spec in specs:
        for finding in spec.findings:
            unknown = [code for code in finding.concepts if code not in known]
            if unknown:
                errors.append(RowError(finding.line, f"unknown concept(s): {', '.join(unknown)}", spec.file))
    return errors


def check_labels(specs: list[ImageSpec], kind: str) -> list[RowError]:
    """A mammogram's label may not be milder than its worst finding (a 'benign' image with a malignant mask)."""
    if kind != "mammogram":
        return []
    errors = []
    for spec in specs:
        worst = max(spec.findings, key=lambda f: PATHOLOGY_RANK[f.pathology], default=None)
        if worst is not None and PATHOLOGY_RANK[worst.pathology] > PATHOLOGY_RANK.get(spec.label, 0):
            reason = f"label {spec.label!r} but the image has a {worst.pathology} finding (line {worst.line})"
            errors.append(RowError(spec.line, reason, spec.file))
    return errors


def resolve_splits(specs: list[ImageSpec], seed: int) -> list[RowError]:
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


def decode_all(specs: list[ImageSpec], max_pixels: int, progress: ProgressFn) -> list[RowError]:
    """Phase 1's heavy part: decode every image and mask once, record sizes, areas and boxes."""
    results = in_threads(lambda spec: _decode_one(spec, max_pixels), specs, progress, "checked")
    return [error for errors in results for error in errors]


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
        spec.view = spec.view or str(dicom.get("ViewPosition", ""))[: MAX_LEN["view"]]
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
    rows = np.asarray(mask.any(axis=1))
    cols = np.asarray(mask.any(axis=0))
    if not rows.any():
        return 0, []
    y0, y1 = int(rows.argmax()), int(len(rows) - rows[::-1].argmax())
    x0, x1 = int(cols.argmax()), int(len(cols) - cols[::-1].argmax())
    return int(mask.sum()), [x0, y0, x1, y1]


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
