"""Reading medical images into plain arrays: PNG / JPEG / TIFF through Pillow, DICOM through pydicom.

Everything the importer needs from an image file and nothing more: a 2-D grayscale array where
bright = dense, its bit depth, the modality and a few header fields. Pure: no web app, no database.

Safety: an image is sized from its header *before* any pixel is decoded, so a small file that
claims 50 000 x 50 000 pixels (a decompression bomb) is refused without allocating anything. Any
other failure -- truncated, corrupt, unsupported -- becomes one ``ImageReadError`` whose message
can be shown to the user as is.

DICOM transfer syntaxes: pixel data is decoded by pydicom's decoder for the file's syntax:
uncompressed (little / big endian, deflated) and RLE natively, JPEG baseline / extended / lossless and
JPEG-LS through ``pylibjpeg-libjpeg``, JPEG 2000 and HTJ2K through ``pylibjpeg-openjpeg`` (Pillow too for
JPEG baseline and JPEG 2000). A syntax no installed decoder handles is an ``UnsupportedTransferSyntaxError``
naming it and what to install or convert to, raised before any pixel is decoded.

DICOM intensities: stored values pass through the modality LUT and are then mapped linearly onto
uint16 (uint8 when 8 bits or fewer). The usual modality LUT is the rescale (slope / intercept): the
stored range the header allows (``BitsStored``, signed or not) is mapped, and because the rescale is
linear only its sign changes the pixels. A Modality LUT Sequence is applied as a table, its output
range (its bits per entry) mapped. Either way ``metadata["value_range"]`` = the modality output
(physical values) of pixel 0 and of the largest pixel value, so ``physical = lo + pixel / max * (hi - lo)``.
Nothing is clipped or windowed, and the same stored value gives the same pixel in every image of a
scanner. MONOCHROME1 images are inverted so bright = dense, like MONOCHROME2.

Display: a DICOM's own VOI (Window Center / Width with its VOI LUT Function, else the first VOI LUT
Sequence item) is kept in ``metadata["voi"]`` as a curve over *pixel* values (``{"x": [...], "y": [...]}``,
y in 0..1, bright = dense); ``display_uint8`` applies it, and windows every other deep image to robust
percentiles of its tissue (``tissue_window``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.pixels
import pydicom.uid
from PIL import Image as PILImage
from scipy import ndimage

from .patches import otsu_threshold
from .windowing import VoiCurve, voi_uint8

__all__ = [
    "ImageReadError",
    "ImageTooLargeError",
    "LoadedImage",
    "UnsupportedTransferSyntaxError",
    "VoiCurve",
    "display_uint8",
    "finding_overlay",
    "is_dicom",
    "read_image",
    "read_image_size",
    "read_mask",
    "thumbnail_uint8",
    "tissue_window",
    "to_display_uint8",
    "voi_curve",
]

DICOM_SUFFIXES = (".dcm", ".dicom")
# DICOM header fields copied into LoadedImage.metadata (laterality: ImageLaterality, else Laterality).
_DICOM_FIELDS = ("PatientID", "ViewPosition", "PatientAge", "PatientSex")
# A mask may be stored at an integer fraction or multiple of the image size (nearest neighbour).
_MAX_MASK_FACTOR = 16
# Outline colours of the finding overlay (RGBA); pathologies not listed (normal anatomy) are not drawn.
OUTLINE_COLOURS: dict[str, tuple[int, int, int, int]] = {"benign": (0, 200, 0, 255), "malignant": (230, 0, 0, 255)}
# A VOI LUT Sequence or a sigmoid window is kept as at most this many points of its curve.
_VOI_POINTS = 256
# Tissue percentiles of the display window, and the least tissue share that is trusted (else all pixels).
_TISSUE_PERCENTILES = (0.005, 0.995)
_MIN_TISSUE_SHARE = 0.01
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses, so RGB DICOM and RGB PNG agree.
_LUMA = np.array([0.299, 0.587, 0.114])
# The pip packages whose pydicom plugin decodes a compressed transfer syntax (pinned in requirements.txt).
_PLUGIN_PACKAGES = {
    **dict.fromkeys(pydicom.uid.JPEGTransferSyntaxes, "pylibjpeg pylibjpeg-libjpeg"),
    **dict.fromkeys(pydicom.uid.JPEGLSTransferSyntaxes, "pylibjpeg pylibjpeg-libjpeg"),
    **dict.fromkeys(pydicom.uid.JPEG2000TransferSyntaxes, "pylibjpeg pylibjpeg-openjpeg"),
}


class ImageReadError(Exception):
    """The file is not an image we can read; the message is meant for the user."""


class ImageTooLargeError(ImageReadError):
    """The header announces more pixels than allowed; nothing was decoded."""


class UnsupportedTransferSyntaxError(ImageReadError):
    """No installed decoder handles the DICOM file's transfer syntax; nothing was decoded."""


@dataclass
class LoadedImage:
    """A decoded image. ``pixels``: (H, W) uint8 or uint16, bright = dense."""

    pixels: np.ndarray
    bit_depth: int  # 8 or 16, the dtype's width
    modality: str  # DICOM Modality ("MG", "CR", ...); "" for PNG / JPEG / TIFF
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


# --- public functions -------------------------------------------------------------------------


def is_dicom(path: Path) -> bool:
    """True for a .dcm/.dicom name or a file with the DICOM preamble ("DICM" at byte 128)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_image(path: Path, *, max_pixels: int) -> LoadedImage:
    """Decode an image file into a grayscale array (see the module docstring for DICOM intensities).

    Raises ImageTooLargeError if the header announces more than ``max_pixels`` pixels (checked
    before decoding), ImageReadError for anything else that goes wrong.
    """
    path = Path(path)
    with _as_read_error():
        if is_dicom(path):
            return _read_dicom(path, max_pixels)
        return _read_pillow(path, max_pixels)


def read_image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header alone, without decoding pixels."""
    path = Path(path)
    with _as_read_error():
        if is_dicom(path):
            header = pydicom.dcmread(path, stop_before_pixels=True)
            return int(header.Rows), int(header.Columns)
        with PILImage.open(path) as img:
            width, height = img.size
            return height, width


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A region-of-interest mask as bool (H, W) = ``shape``; nonzero stored value = inside.

    A mask at an exact integer fraction or multiple of the image size (same factor on both axes,
    at most 16) is resized nearest-neighbour; any other size is an ImageReadError. Stored values
    are used as they are (no MONOCHROME1 inversion, no rescale): 0 means outside.
    """
    path = Path(path)
    mask_shape = read_image_size(path)
    up, down = _mask_factor(mask_shape, shape)
    limit = mask_shape[0] * mask_shape[1]  # already bounded by _mask_factor
    with _as_read_error():
        raw = _dicom_raw_frame(path, limit)[0] if is_dicom(path) else _pillow_gray(path, limit)[0]
    inside = raw != 0 if raw.ndim == 2 else np.any(raw != 0, axis=-1)
    if up > 1:
        inside = np.repeat(np.repeat(inside, up, axis=0), up, axis=1)
    if down > 1:
        inside = inside[down // 2 :: down, down // 2 :: down]
    return np.ascontiguousarray(inside)


def to_display_uint8(pixels: np.ndarray) -> np.ndarray:
    """8-bit version for thumbnails and overlays: uint8 as is, deeper images windowed to their
    0.5th-99.5th percentiles (a few saturated or dead pixels must not flatten the contrast)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == bool:
        return pixels.astype(np.uint8) * 255
    if pixels.dtype == np.uint16:
        lo, hi = _uint16_percentiles(pixels, 0.005, 0.995)
        lut = _window_lut(lo, hi)
        return lut[pixels]
    values = pixels.astype(np.float64)
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    high = max(high, low + 1e-12)
    return np.rint(np.clip((values - low) / (high - low), 0.0, 1.0) * 255).astype(np.uint8)


def display_uint8(pixels: np.ndarray, voi: VoiCurve | None = None) -> np.ndarray:
    """uint8 (H, W) for pages: ``voi`` (the DICOM's own window, see ``voi_curve``) when given, uint8 as
    is, else a window over the tissue's robust percentiles (``tissue_window``)."""
    if voi and pixels.dtype in (np.uint8, np.uint16):
        return voi_uint8(pixels, voi)
    if pixels.dtype == np.uint16:
        lo, hi = tissue_window(pixels)
        return _window_lut(lo, hi)[pixels]
    return to_display_uint8(pixels)


def tissue_window(pixels: np.ndarray) -> tuple[int, int]:
    """(lo, hi) uint16 values: the 0.5th and 99.5th percentiles of the tissue (values at or above Otsu's
    threshold of the histogram), so the dark background does not spend half the grey levels; all pixels
    when under 1% of them are tissue."""
    counts = np.bincount(pixels.ravel(), minlength=65536).astype(np.float64)
    present = np.flatnonzero(counts)
    if present.size < 2:
        value = int(present[0]) if present.size else 0
        return value, value + 1
    # A strided sample is plenty for Otsu's threshold and keeps it O(n / 16); capped at its 99th
    # percentile, so a small very bright marker or label cannot split off as the "foreground".
    sample = pixels[::4, ::4]
    threshold = int(np.ceil(min(otsu_threshold(np.minimum(sample, np.percentile(sample, 99))), 65535.0)))
    tissue = counts.copy()
    tissue[:threshold] = 0
    if tissue.sum() < _MIN_TISSUE_SHARE * counts.sum():
        tissue = counts
    cdf = np.cumsum(tissue)
    low, high = _TISSUE_PERCENTILES
    lo = int(np.searchsorted(cdf, low * cdf[-1], side="right"))
    hi = int(np.searchsorted(cdf, high * cdf[-1], side="left"))
    return lo, max(hi, lo + 1)


def voi_curve(header: Any, value_range: tuple[float, float], out_max: int) -> VoiCurve | None:
    """The DICOM's VOI as a curve over pixel values (0..``out_max``, as ``read_image`` maps them), or None.

    Window Center / Width (first value; VOI LUT Function LINEAR, LINEAR_EXACT or SIGMOID, PS3.3 C.11.2.1.2)
    is preferred to a VOI LUT Sequence, as most viewers do. Both act on the modality output, which
    ``value_range`` (physical values at pixel 0 and at ``out_max``) maps back onto pixels; MONOCHROME1
    flips the brightness so that bright = dense, like the pixels.
    """
    physical = _voi_window(header)
    if physical is None:
        physical = _voi_lut_sequence(header)
    if physical is None:
        return None
    x_phys, y = physical
    lo, hi = value_range
    if hi == lo:
        return None
    x = (np.asarray(x_phys, dtype=np.float64) - lo) / (hi - lo) * out_max
    y = np.asarray(y, dtype=np.float64)
    if str(header.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        y = 1.0 - y
    order = np.argsort(x, kind="stable")
    return {"x": [round(float(v), 4) for v in x[order]], "y": [round(float(v), 5) for v in y[order]]}


def thumbnail_uint8(pixels: np.ndarray, side: int = 256) -> np.ndarray:
    """8-bit (h, w) thumbnail whose longest side is ``side`` (smaller images are not enlarged)."""
    display = to_display_uint8(pixels)
    height, width = display.shape
    size = _thumbnail_size((height, width), side)
    if size == (height, width):
        return display.copy()
    resized = PILImage.fromarray(display).resize((size[1], size[0]), PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(resized)


def finding_overlay(findings: Sequence[tuple[np.ndarray, str]], size: tuple[int, int]) -> np.ndarray:
    """RGBA (h, w, 4) uint8 of 1-px finding outlines at ``size`` = (h, w), transparent elsewhere.

    ``findings``: (bool mask (H, W), pathology). Benign outlines green, malignant red (drawn last,
    so on top); other pathologies (normal anatomy) are left out. A thumbnail pixel counts as
    inside when any image pixel under it is, so a few-pixel calcification still shows.
    """
    overlay = np.zeros((*size, 4), dtype=np.uint8)
    for pathology in ("benign", "malignant"):
        for mask, finding_pathology in findings:
            if finding_pathology == pathology:
                inside = _downsample_any(mask, size)
                outline = inside & ~ndimage.binary_erosion(inside, border_value=0)
                overlay[outline] = OUTLINE_COLOURS[pathology]
    return overlay


# --- Pillow -----------------------------------------------------------------------------------


def _read_pillow(path: Path, max_pixels: int) -> LoadedImage:
    pixels, image_format, mode = _pillow_gray(path, max_pixels)
    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    return LoadedImage(pixels, bit_depth, "", {"format": image_format, "mode": mode})


def _pillow_gray(path: Path, max_pixels: int) -> tuple[np.ndarray, str, str]:
    """First frame as uint8 / uint16 (H, W), colour converted to luma; plus format and mode."""
    # Image.open only parses the header (lazy); Pillow's own bomb guard also runs inside it.
    with PILImage.open(path) as img:
        width, height = img.size
        _check_size(width * height, max_pixels, f"{width}x{height}")
        img.load()
        return _pillow_to_gray(img), img.format or "", img.mode


def _pillow_to_gray(img: PILImage.Image) -> np.ndarray:
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)  # native byte order, same values
    if img.mode in ("I", "F"):
        return _fit_uint16(np.asarray(img))
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img).astype(np.uint8, copy=True)


def _fit_uint16(values: np.ndarray) -> np.ndarray:
    """32-bit integer or float grayscale as uint16: as is when it fits, else scaled min-max."""
    if not np.all(np.isfinite(values)):
        raise ImageReadError("corrupt or unreadable image: non-finite pixel values")
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 65535 and np.array_equal(values, np.round(values)):
        return values.astype(np.uint16)
    span = max(hi - lo, 1e-12)
    return np.rint((values.astype(np.float64) - lo) / span * 65535).astype(np.uint16)


# --- DICOM ------------------------------------------------------------------------------------


def _read_dicom(path: Path, max_pixels: int) -> LoadedImage:
    raw, header = _dicom_raw_frame(path, max_pixels)
    if raw.ndim == 3:  # colour (RGB after pydicom's YBR conversion): luma, 8 bit
        pixels = np.rint(raw[..., :3].astype(np.float32) @ _LUMA.astype(np.float32)).astype(np.uint8)
        value_range: tuple[float, float] = (0.0, 255.0)
    else:
        pixels, value_range = _dicom_gray(raw, header)
    metadata = _dicom_metadata(header)
    metadata["value_range"] = list(value_range)
    if raw.ndim == 2:
        voi = voi_curve(header, value_range, 255 if pixels.dtype == np.uint8 else 65535)
        if voi is not None:
            metadata["voi"] = voi
    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    return LoadedImage(pixels, bit_depth, str(header.get("Modality", "") or ""), metadata)


def _dicom_raw_frame(path: Path, max_pixels: int) -> tuple[np.ndarray, pydicom.Dataset]:
    """Stored values of the first frame (colour as RGB), decoded by pydicom's decoder for the file's
    transfer syntax after checking the header's size against ``max_pixels`` and that a decoder is installed.

    The whole file is parsed first (compressed pixel data stays encoded until decoded): reading from the
    path frame by frame does not inflate a deflated file and trips over some encapsulated ones.
    """
    dataset = pydicom.dcmread(path)
    if "Rows" not in dataset or "Columns" not in dataset:
        raise ImageReadError("corrupt or unreadable image: DICOM file has no image (Rows/Columns missing)")
    rows, cols = int(dataset.Rows), int(dataset.Columns)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    _check_size(rows * cols * frames, max_pixels, f"{cols}x{rows}" + (f"x{frames} frames" if frames > 1 else ""))
    _check_decoder(dataset)
    # Decode only the first frame; a mammogram has one.
    raw = pydicom.pixels.pixel_array(dataset, index=0 if frames > 1 else None)
    if raw.shape[:2] != (rows, cols):
        raise ImageReadError(f"corrupt or unreadable image: pixel data is {raw.shape}, header says {rows}x{cols}")
    return raw, dataset


def _check_decoder(dataset: pydicom.Dataset) -> None:
    """UnsupportedTransferSyntaxError unless an installed decoder handles the file's transfer syntax (a
    file without one is left to pydicom, whose own error then says so)."""
    uid = dataset.get("file_meta", pydicom.Dataset()).get("TransferSyntaxUID")
    if not uid or "PixelData" not in dataset:
        return
    uid = pydicom.uid.UID(str(uid))
    named = f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)
    try:
        decoder = pydicom.pixels.get_decoder(uid)
    except NotImplementedError:
        raise UnsupportedTransferSyntaxError(
            f"unsupported DICOM transfer syntax {named}: neither pydicom nor an installed plugin decodes it; "
            "convert the file to an uncompressed transfer syntax first (e.g. gdcmconv --raw in.dcm out.dcm)"
        ) from None
    if not decoder.is_available:
        packages = _PLUGIN_PACKAGES.get(uid)
        remedy = (
            f"pip install {packages} (pinned in requirements.txt)"
            if packages
            else "; ".join(decoder.missing_dependencies)
        )
        raise UnsupportedTransferSyntaxError(
            f"DICOM transfer syntax {named} needs a decoder that is not installed here: {remedy}"
        )


def _dicom_gray(raw: np.ndarray, header: pydicom.Dataset) -> tuple[np.ndarray, tuple[float, float]]:
    """Map stored values onto uint16 (uint8 for <= 8 bits stored), bright = dense."""
    if header.get("ModalityLUTSequence"):
        return _dicom_lut_gray(raw, header)
    bits = int(header.get("BitsStored", raw.dtype.itemsize * 8) or raw.dtype.itemsize * 8)
    signed = int(header.get("PixelRepresentation", 0) or 0) == 1
    stored_lo, stored_hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    slope = float(header.get("RescaleSlope", 1) or 1)
    intercept = float(header.get("RescaleIntercept", 0) or 0)
    out_max = 255 if bits <= 8 else 65535
    dtype = np.uint8 if bits <= 8 else np.uint16

    # The rescale is linear, so mapping the rescaled range [lo, hi] onto [0, out_max] is mapping the
    # stored range, reversed when the slope is negative (checked by the tests with exact values).
    reverse = slope < 0
    if str(header.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        reverse = not reverse  # MONOCHROME1: high stored value = dark
    offset = np.clip(raw.astype(np.int32), stored_lo, stored_hi) - stored_lo  # 0 .. span
    span = stored_hi - stored_lo
    if reverse:
        offset = span - offset
    # 8 or 16 bits stored: an exact integer copy; other depths: stretched, rounded to the nearest.
    scaled = offset if span == out_max else np.rint(offset * (out_max / span))
    pixels = scaled.astype(dtype)
    # Physical values of pixel 0 and of pixel out_max: physical = lo + pixel / out_max * (hi - lo).
    ends = (stored_hi, stored_lo) if reverse else (stored_lo, stored_hi)
    value_range = (float(ends[0] * slope + intercept), float(ends[1] * slope + intercept))
    return pixels, value_range


def _dicom_lut_gray(raw: np.ndarray, header: pydicom.Dataset) -> tuple[np.ndarray, tuple[float, float]]:
    """Stored values through the first Modality LUT Sequence item (pydicom's ``apply_modality_lut``, which
    clamps values outside the table to its ends), the table's output range mapped onto uint16 (uint8 for
    8-bit entries), bright = dense."""
    descriptor = [int(v) for v in header.ModalityLUTSequence[0].get("LUTDescriptor", [])]
    if len(descriptor) != 3 or not 1 <= descriptor[2] <= 16:
        raise ImageReadError(f"corrupt or unreadable image: bad Modality LUT Descriptor {descriptor}")
    top = (1 << descriptor[2]) - 1
    out_max = 255 if descriptor[2] <= 8 else 65535
    values = np.clip(pydicom.pixels.apply_modality_lut(raw, header).astype(np.float64), 0, top)
    reverse = str(header.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    if reverse:
        values = top - values
    pixels = np.rint(values * (out_max / top)).astype(np.uint8 if out_max == 255 else np.uint16)
    return pixels, ((float(top), 0.0) if reverse else (0.0, float(top)))


def _dicom_metadata(header: pydicom.Dataset) -> dict[str, Any]:
    """A few identifying / descriptive header fields, as strings, when present and non-empty."""
    metadata: dict[str, Any] = {"format": "DICOM"}
    for keyword in _DICOM_FIELDS:
        value = header.get(keyword)
        if value not in (None, ""):
            metadata[keyword] = str(value)
    laterality = header.get("ImageLaterality") or header.get("Laterality")
    if laterality:
        metadata["Laterality"] = str(laterality)
    metadata["PhotometricInterpretation"] = str(header.get("PhotometricInterpretation", ""))
    metadata["BitsStored"] = int(header.get("BitsStored", 0) or 0)
    return metadata


def _first_number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _voi_window(header: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(physical x, brightness y) of the header's window, or None when it has none (or a width < 1)."""
    center, width = _first_number(header.get("WindowCenter")), _first_number(header.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None
    function = str(header.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function == "SIGMOID":
        x = np.linspace(center - 2 * width, center + 2 * width, _VOI_POINTS // 4 + 1)
        return x, 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.array([center - width / 2, center + width / 2]), np.array([0.0, 1.0])
    half = (width - 1) / 2
    return np.array([center - 0.5 - half, center - 0.5 + half]), np.array([0.0, 1.0])


def _voi_lut_sequence(header: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(physical x, brightness y) sampled from the first VOI LUT Sequence item, or None."""
    sequence = header.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    descriptor = [int(v) for v in item.get("LUTDescriptor", [])]
    data = item.get("LUTData")
    if len(descriptor) != 3 or data is None:
        return None
    entries, first, bits = descriptor
    entries = entries or 65536
    if isinstance(data, bytes):  # OW: 16-bit words whatever the bits per entry
        values = np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2").astype(np.float64)
    else:
        values = np.atleast_1d(np.asarray(data, dtype=np.float64))
    values = values[:entries]
    if values.size < 2:
        return None
    index = np.unique(np.rint(np.linspace(0, values.size - 1, min(values.size, _VOI_POINTS))).astype(np.int64))
    top = max(float((1 << bits) - 1), float(values.max()), 1.0)
    return first + index.astype(np.float64), values[index] / top


# --- helpers ----------------------------------------------------------------------------------


@contextmanager
def _as_read_error() -> Iterator[None]:
    """Any failure while reading becomes an ImageReadError with a readable reason.

    Decoders raise a zoo of types (OSError, SyntaxError, ValueError, struct.error, zlib.error,
    pydicom's InvalidDicomError, NotImplementedError for a missing codec, ...); the caller only
    needs to know that the file cannot be used and why, never a traceback.
    """
    try:
        yield
    except ImageReadError:
        raise
    except PILImage.DecompressionBombError as exc:  # Pillow's own guard, stricter than ours at times
        raise ImageTooLargeError(f"image too large: {exc}") from exc
    except Exception as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise ImageReadError(f"corrupt or unreadable image: {reason[:300]}") from exc


def _check_size(pixels: int, max_pixels: int, described: str) -> None:
    if pixels > max_pixels:
        raise ImageTooLargeError(f"image too large: {described} = {pixels:,} pixels, the limit is {max_pixels:,}")


def _mask_factor(mask_shape: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """(upsample, downsample) integer factors taking a mask of ``mask_shape`` to ``shape``."""
    (mh, mw), (h, w) = mask_shape, shape
    if (mh, mw) == (h, w):
        return 1, 1
    for small, big, up in (((mh, mw), (h, w), True), ((h, w), (mh, mw), False)):
        if small[0] and small[1] and big[0] % small[0] == 0 and big[1] % small[1] == 0:
            factor = big[0] // small[0]
            if factor == big[1] // small[1] and factor <= _MAX_MASK_FACTOR:
                return (factor, 1) if up else (1, factor)
    raise ImageReadError(f"mask size {mw}x{mh} does not match the image size {w}x{h}")


def _thumbnail_size(shape: tuple[int, int], side: int) -> tuple[int, int]:
    height, width = shape
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _downsample_any(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool mask at ``size``: True where any source pixel in the cell is True (box filter > 0)."""
    if mask.shape == size:
        return mask.astype(bool)
    as_uint8 = PILImage.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(as_uint8.resize((size[1], size[0]), PILImage.Resampling.BOX)) > 0


def _uint16_percentiles(pixels: np.ndarray, low: float, high: float) -> tuple[int, int]:
    """Exact low/high quantiles of a uint16 array from its histogram (O(n), no sort)."""
    counts = np.bincount(pixels.ravel(), minlength=65536)
    cdf = np.cumsum(counts)
    total = int(cdf[-1])
    lo = int(np.searchsorted(cdf, low * total, side="right"))
    hi = int(np.searchsorted(cdf, high * total, side="left"))
    return lo, max(hi, lo + 1)


def _window_lut(lo: int, hi: int) -> np.ndarray:
    """uint8 lookup table for every uint16 value: lo -> 0, hi -> 255, linear between, clipped."""
    values = np.arange(65536, dtype=np.float64)
    return np.rint(np.clip((values - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)
