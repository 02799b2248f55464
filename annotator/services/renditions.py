"""Display renditions: an 8-bit, windowed, size-bounded copy of an image for pages, beside the original
(which stays the source for training, mining and explaining). Made when a page first needs one."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from mining.imaging import to_display_uint8

from ..files import delete_quietly, read_png, unique_name, write_png_atomic
from ..models import Image, UploadedImage

__all__ = ["DISPLAY_LONG_SIDE", "display_pixels", "display_size", "rendition_name"]

DISPLAY_LONG_SIDE = 1024


def display_size(height: int, width: int, long_side: int = DISPLAY_LONG_SIDE) -> tuple[int, int]:
    """(h, w) of an image's rendition: its long side at most ``long_side`` (never enlarged), aspect kept."""
    scale = min(1.0, long_side / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def display_pixels(pixels: np.ndarray, long_side: int = DISPLAY_LONG_SIDE) -> np.ndarray:
    """uint8 (h, w): ``pixels`` windowed to 8 bits (``to_display_uint8``) and resized to ``display_size``."""
    display = to_display_uint8(pixels)
    height, width = display_size(int(pixels.shape[0]), int(pixels.shape[1]), long_side)
    if (height, width) == display.shape:
        return np.ascontiguousarray(display)
    resized = PILImage.fromarray(display).resize((width, height), PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(resized)


def rendition_name(item: Image | UploadedImage) -> str:
    """The media name of ``item``'s display rendition, made and recorded now if it has none.

    Two requests making the same one at once both write; the row keeps the first and the other file goes.
    """
    if item.display:
        return item.display.name
    name = unique_name("display", f"{type(item).__name__.lower()}{item.pk}", ".png")
    write_png_atomic(name, display_pixels(read_png(item.file.name)), durable=False)
    updated = type(item).objects.filter(pk=item.pk, display="").update(display=name)
    if not updated:
        delete_quietly([name])
        item.refresh_from_db(fields=["display"])
        return item.display.name
    item.display.name = name
    return name
