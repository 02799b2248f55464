"""What every phantom generator returns (an image and its known truth: planted findings, metadata), and the
small noise and shaping helpers both generators draw with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

__all__ = ["PhantomImage", "PlantedFinding", "smooth_noise_1d", "smoothstep"]


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


def smooth_noise_1d(rng: np.random.Generator, n: int, sigma: float, *, mode: Literal["reflect", "wrap"]) -> np.ndarray:
    """Float32 (n,) white noise low-passed by ``sigma`` samples, scaled to unit peak amplitude.

    ``mode`` is how the blur treats the ends: "wrap" for noise that is indexed cyclically.
    """
    noise = ndi.gaussian_filter1d(rng.standard_normal(n), sigma, mode=mode)
    return (noise / (np.abs(noise).max() + 1e-6)).astype(np.float32)


def smoothstep(x: np.ndarray | float, lo: float, hi: float) -> np.ndarray:
    """Hermite ramp like ``x``: 0 at or below ``lo``, 1 at or above ``hi``, 3t^2 - 2t^3 between."""
    t = np.clip((np.asarray(x) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)
