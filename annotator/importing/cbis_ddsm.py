"""The CBIS-DDSM layout: description CSVs and a DICOM tree parsed into ImageSpecs and bad rows.

CBIS-DDSM (``layout="cbis-ddsm"``): the four description CSVs (``mass_case_description_train_set.csv``
... ``calc_case_description_test_set.csv``) anywhere in the folder, plus the DICOM tree as TCIA
ships it. The CSV paths rarely match the downloaded tree (TCIA renames the inner folders), so a file
is found under the folder named by the path's first component; an ROI mask is told from the
cropped image sharing its folder by its size (the mask has the full image's size). One CSV row is
one finding; the image label is its worst finding. The Mass- and Calc- copies of a view are two
images, as in CBIS-DDSM itself. The official CBIS train/test split is kept in metadata only:
splits here are per patient, like every dataset.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mining.imaging import ImageReadError, read_image_size

from ..errors import ApplicationError
from .csv_reading import check_text, parse_value, read_csv
from .records import PATHOLOGY_RANK, FindingSpec, ImageSpec, RowError

__all__ = ["cbis_concepts", "parse_cbis_ddsm"]

_CBIS_CSV = re.compile(r"^(mass|calc)_case_description_(train|test)_set\.csv$", re.IGNORECASE)
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
    header, rows = read_csv(csv_path)
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
        reasons = check_text({"patient_id": spec.patient_id}, "patient_id", required=True)
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
    if PATHOLOGY_RANK[pathology] > PATHOLOGY_RANK[spec.label]:
        spec.label = pathology
    _cbis_update_metadata(spec, row)
    return []


def _cbis_image_spec(row: dict[str, str], line: int, file: str, image_path: Path, folder: Path) -> ImageSpec:
    official_split = "test" if "_test_" in file.lower() else "train"
    metadata: dict[str, Any] = {"cbis_split": official_split, "cbis_folder": _first_component(row["image_file_path"])}
    density = parse_value(row.get("breast_density", ""))
    if density != "":
        metadata["breast_density"] = density
    return ImageSpec(
        line=line,
        file=file,
        source_name=image_path.relative_to(folder).as_posix(),
        path=image_path,
        patient_id=row.get("patient_id", ""),
        label="benign",
        view=row.get("image_view", "").upper(),
        laterality=_CBIS_LATERALITY.get(row.get("left_or_right_breast", "").upper(), ""),
        metadata=metadata,
        name_hint=metadata["cbis_folder"],
    )


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
        ("shape", "mass_shape"),
        ("margins", "mass_margins"),
        ("calc type", "calc_type"),
        ("distribution", "calc_distribution"),
        ("assessment", "assessment"),
        ("subtlety", "subtlety"),
        ("pathology", "pathology"),
    )
    parts = [f"{label} {row[column]}" for label, column in words if row.get(column) and row[column] != "N/A"]
    description = f"CBIS-DDSM {lesion_type} {row.get('abnormality_id', '')}".rstrip() + ": " + ", ".join(parts)
    return FindingSpec(
        line=line,
        mask_path=mask_path,
        pathology=pathology,
        lesion_type=lesion_type,
        concepts=cbis_concepts(row),
        description=description,
    )


def _cbis_update_metadata(spec: ImageSpec, row: dict[str, str]) -> None:
    """Image-level summary of the per-finding numbers: highest BI-RADS assessment, lowest subtlety."""
    for key, pick in (("assessment", max), ("subtlety", min)):
        value = parse_value(row.get(key, ""))
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
