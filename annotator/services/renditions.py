"""Display renditions and deep-zoom pyramids: what pages show of an image, beside the original (which
stays the source for training, mining and explaining).

- The **rendition** is an 8-bit, windowed PNG whose long side is at most ``DISPLAY_LONG_SIDE``: made at
  import and upload, by ``renditions_make`` (the ``make_renditions`` command) for images stored before,
  and on first view for any still without one. The window is the DICOM's own VOI when it had one, else
  robust percentiles of the tissue (``mining.imaging.display_uint8``).
- The **pyramid** is a Deep Zoom folder (``image.dzi`` + ``image_files/<level>/<col>_<row>.jpg``, and the
  finding outlines at ``OUTLINE_LONG_SIDE``) of the same windowed pixels at full resolution, made on its
  first request and kept in media under ``deepzoom/<rendition stem>/``: a new rendition gets a new one.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np
from django.db.models import QuerySet
from PIL import Image as PILImage

from mining.deepzoom import dzi_xml, tile_pyramid
from mining.imaging import VoiCurve, display_uint8, finding_overlay
from mining.progress import ProgressFn

from ..files import (
    delete_quietly,
    delete_tree_quietly,
    media_exists,
    read_mask,
    read_png,
    unique_name,
    write_png_atomic,
    write_tree_atomic,
)
from ..models import Image, UploadedImage

__all__ = [
    "DEEPZOOM_DESCRIPTOR",
    "DISPLAY_LONG_SIDE",
    "OUTLINE_LONG_SIDE",
    "deepzoom_ensure",
    "deepzoom_folder",
    "display_pixels",
    "display_size",
    "image_voi",
    "rendition_name",
    "rendition_write",
    "renditions_make",
]

DISPLAY_LONG_SIDE = 1024
OUTLINE_LONG_SIDE = 2048  # finding outlines over the zoomable image: 1-px lines at twice the rendition's size
DEEPZOOM_DESCRIPTOR = "image.dzi"
DEEPZOOM_OUTLINES = "outlines.png"

Item = Image | UploadedImage


def display_size(height: int, width: int, long_side: int = DISPLAY_LONG_SIDE) -> tuple[int, int]:
    """(h, w) of an image's rendition: its long side at most ``long_side`` (never enlarged), aspect kept."""
    scale = min(1.0, long_side / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def display_pixels(pixels: np.ndarray, long_side: int = DISPLAY_LONG_SIDE, voi: VoiCurve | None = None) -> np.ndarray:
    """uint8 (h, w): ``pixels`` windowed to 8 bits (``display_uint8``) and resized to ``display_size``."""
    display = display_uint8(pixels, voi)
    height, width = display_size(int(pixels.shape[0]), int(pixels.shape[1]), long_side)
    if (height, width) == display.shape:
        return np.ascontiguousarray(display)
    resized = PILImage.fromarray(display).resize((width, height), PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(resized)


def image_voi(item: Item) -> VoiCurve | None:
    """The VOI the import or upload kept from a DICOM header, or None."""
    if isinstance(item, Image):
        dicom = item.metadata.get("dicom") if isinstance(item.metadata, dict) else None
        voi = dicom.get("voi") if isinstance(dicom, dict) else None
    else:
        voi = item.voi
    return voi if isinstance(voi, dict) else None


def rendition_write(*, stem: str, pixels: np.ndarray, voi: VoiCurve | None, written: list[str]) -> str:
    """Write the rendition of ``pixels`` under display/ and return its name (appended to ``written`` first,
    so a caller cleaning up after a failure also removes a half-written one)."""
    name = unique_name("display", stem, ".png")
    written.append(name)
    return write_png_atomic(name, display_pixels(pixels, voi=voi), durable=False)


def rendition_name(item: Item) -> str:
    """The media name of ``item``'s display rendition, made and recorded now if it has none.

    Two requests making the same one at once both write; the row keeps the first and the other file goes.
    """
    if item.display:
        return item.display.name
    return _rendition_replace(item, current="")


def renditions_make(
    *, images: QuerySet[Image], force: bool = False, pyramids: bool = False, progress: ProgressFn | None = None
) -> tuple[int, int]:
    """Make the renditions ``images`` lack (all of them with ``force``, replacing the old ones and their
    pyramids, e.g. after the window changed), and with ``pyramids`` their deep zoom pyramids too, so that
    no first view waits for one. Returns (renditions made, kept)."""
    todo = list(images.order_by("pk").only("pk", "file", "display", "metadata"))
    made = 0
    for done, image in enumerate(todo, start=1):
        if force or not image.display:
            _rendition_replace(image, current=image.display.name or "")
            made += 1
        if pyramids:
            deepzoom_ensure(image)
        if progress is not None:
            progress(done, len(todo), f"renditions {done}/{len(todo)}")
    return made, len(todo) - made


def deepzoom_folder(item: Item) -> str:
    """The media folder of ``item``'s pyramid (named after its rendition, so a new rendition gets a new one)."""
    return f"deepzoom/{PurePosixPath(rendition_name(item)).stem}"


def deepzoom_ensure(item: Item) -> str:
    """``item``'s pyramid folder, made now (whole, in one rename) when it is not there yet."""
    folder = deepzoom_folder(item)
    if not media_exists(f"{folder}/{DEEPZOOM_DESCRIPTOR}"):
        write_tree_atomic(folder, _deepzoom_files(item))
    return folder


def _deepzoom_files(item: Item) -> Iterator[tuple[str, bytes]]:
    pixels = read_png(item.file.name)
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    for tile in tile_pyramid(display_uint8(pixels, image_voi(item))):
        yield f"image_files/{tile.level}/{tile.column}_{tile.row}.jpg", tile.data
    del pixels
    if isinstance(item, Image):
        findings = [(read_mask(f.mask.name), f.pathology) for f in item.findings.all() if f.mask]
        overlay = finding_overlay(findings, display_size(height, width, OUTLINE_LONG_SIDE))
        yield DEEPZOOM_OUTLINES, _png_bytes(overlay)
    # The descriptor last: its presence says the folder is complete.
    yield DEEPZOOM_DESCRIPTOR, dzi_xml(height, width).encode()


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _rendition_replace(item: Item, *, current: str) -> str:
    """Write a new rendition and record it where the row still names ``current``; the loser of a race
    deletes its own file, the winner the old rendition and its pyramid."""
    written: list[str] = []
    name = rendition_write(
        stem=f"{type(item).__name__.lower()}{item.pk}",
        pixels=read_png(item.file.name),
        voi=image_voi(item),
        written=written,
    )
    updated = type(item).objects.filter(pk=item.pk, display=current).update(display=name)
    if not updated:
        delete_quietly(written)
        item.refresh_from_db(fields=["display"])
        return item.display.name
    if current:
        delete_quietly([current])
        delete_tree_quietly(f"deepzoom/{PurePosixPath(current).stem}")
    item.display.name = name
    return name
