"""What every phantom generator returns: an image and its known truth (planted findings, metadata)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PhantomImage", "PlantedFinding"]


@dataclass
class PlantedFinding:
    """One planted structure. ``mask``: bool (H, W), the image's size."""

    pathology: str  # "normal" | "benign" | "malignant"
    lesion_type: str  # "mass" | "calcification" | "anatomy"
    concepts: tuple[str, ...]  # codes from mining.birads.LEXICON
    mask: np.ndarray


@dataclass
class PhantomImage:
    """A phantom and its truth. ``pixels``: uint8 (H, W), bright = dense."""

    pixels: np.ndarray
    patient_id: str
    view: str  # "CC" | "MLO"
    laterality: str  # "L" | "R"
    label: str  # "malignant" if any malignant finding, elif "benign" if any benign, else "normal"
    findings: list[PlantedFinding]
    metadata: dict = field(default_factory=dict)  # JSON-serialisable
