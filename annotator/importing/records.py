"""The intermediate records of an import (what phase 1 parses and fills in, phase 2 writes) and the
vocabulary their fields are checked against: pathologies in rank order, the models' field lengths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..models import PATHOLOGIES

__all__ = ["MAX_LEN", "PATHOLOGY_NAMES", "PATHOLOGY_RANK", "FindingSpec", "ImageSpec", "RowError"]

PATHOLOGY_NAMES = [name for name, _ in PATHOLOGIES]
PATHOLOGY_RANK = {name: rank for rank, name in enumerate(PATHOLOGY_NAMES)}  # normal < benign < malignant
# Field lengths of the models, checked per row so a too-long value is a bad row, not a crash.
MAX_LEN = {"patient_id": 128, "view": 16, "source_name": 500, "lesion_type": 32}


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
