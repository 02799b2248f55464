"""Seeded phantoms with known truth, for the demo and the science tests (no real images can be had offline).

- common:     PhantomImage and PlantedFinding, what every generator returns
- mammograms: mammogram-like images with planted BI-RADS findings and their masks
- hips:       pelvis-radiograph-like images with known hip-fracture descriptors

The generators are re-exported here; everything else is imported from the module that holds it.
"""

from .common import PhantomImage, PlantedFinding
from .hips import generate_hip_phantoms, render_hip_phantom
from .mammograms import KINDS, generate_mammogram_phantoms, render_mammogram_phantom

__all__ = [
    "KINDS",
    "PhantomImage",
    "PlantedFinding",
    "generate_hip_phantoms",
    "generate_mammogram_phantoms",
    "render_hip_phantom",
    "render_mammogram_phantom",
]
