"""Grey-level windows: how a 16-bit image becomes the 8 bits a page or a network sees. Pure numpy.

Two windows exist, and a trained model records which one its inputs had (``NETWORK_WINDOWS``):

- ``dicom-voi``: the image's own DICOM VOI (Window Center / Width or VOI LUT, kept at import as a curve
  over pixel values, ``imaging.voi_curve``) when it carries one, as the radiologist's viewer shows it;
  every other image by its own 0.5-99.5 percentile window. What models are trained on now.
- ``percentile``: every image by its 0.5-99.5 percentile window, VOI or not. What models trained before
  the VOI reached the network saw, so they keep seeing it.

The two differ only for images that carry a VOI: on PNG, JPEG and TIFF datasets (the demo's phantoms
among them) they give the same bytes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NETWORK_WINDOWS",
    "WINDOW_PERCENTILE",
    "WINDOW_VOI",
    "VoiCurve",
    "percentile_uint8",
    "voi_uint8",
    "window_uint8",
]

VoiCurve = dict[str, list[float]]  # {"x": pixel values, increasing; "y": display brightness 0..1}

WINDOW_VOI = "dicom-voi"
WINDOW_PERCENTILE = "percentile"
NETWORK_WINDOWS = (WINDOW_VOI, WINDOW_PERCENTILE)


def voi_uint8(pixels: np.ndarray, voi: VoiCurve) -> np.ndarray:
    """uint8 (H, W): ``voi``'s brightness at each pixel (a lookup table over every uint8 / uint16 level)."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"a VOI applies to uint8 or uint16 pixels, got {pixels.dtype}")
    levels = np.arange(256 if pixels.dtype == np.uint8 else 65536, dtype=np.float64)
    brightness = np.interp(levels, np.asarray(voi["x"], dtype=np.float64), np.asarray(voi["y"], dtype=np.float64))
    lut = np.rint(np.clip(brightness, 0.0, 1.0) * 255).astype(np.uint8)
    return lut[pixels]


def percentile_uint8(pixels: np.ndarray) -> np.ndarray:
    """8-bit view of an image: uint8 unchanged, deeper images scaled by their own 0.5-99.5 percentiles."""
    if pixels.dtype == np.uint8:
        return pixels
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    scaled = (pixels.astype(np.float32) - lo) / max(float(hi - lo), 1.0)
    return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


def window_uint8(pixels: np.ndarray, voi: VoiCurve | None, window: str) -> np.ndarray:
    """The network's 8 bits of ``pixels`` under ``window`` (one of NETWORK_WINDOWS); ``voi`` is the
    image's own, or None when it has none."""
    if window not in NETWORK_WINDOWS:
        raise ValueError(f"window must be one of {NETWORK_WINDOWS}, got {window!r}")
    if window == WINDOW_VOI and voi:
        return voi_uint8(pixels, voi)
    return percentile_uint8(pixels)
