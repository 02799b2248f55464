"""Deep Zoom (DZI) tile pyramids of an 8-bit image, as OpenSeadragon reads them. Pure: arrays in, bytes out.

Level ``L`` (0 = 1 px) of an image whose long side is ``S`` has ``max_level = ceil(log2(S))`` above it and
is the full image reduced by ``2 ** (max_level - L)``, its size rounded up. Each level is the one above
halved with a 2 x 2 box (Pillow's ``reduce``, which averages the pixels a partial last block has), so a
level pixel ``i`` covers exactly full-resolution pixels ``[i * 2**k, (i + 1) * 2**k)`` -- the geometry
OpenSeadragon assumes when it places tiles, and what keeps overlays in image coordinates aligned at every
zoom. Tiles are ``tile_size`` square with ``overlap`` pixels shared with each neighbour.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

__all__ = ["TILE_OVERLAP", "TILE_SIZE", "DeepZoomTile", "dzi_xml", "level_sizes", "max_level", "tile_pyramid"]

TILE_SIZE = 256
TILE_OVERLAP = 1
TILE_QUALITY = 88  # JPEG quality of a tile: a viewer's tiles, the original stays lossless


@dataclass(frozen=True)
class DeepZoomTile:
    level: int
    column: int
    row: int
    data: bytes  # the tile's JPEG


def max_level(height: int, width: int) -> int:
    """The index of the full-resolution level."""
    return max(0, math.ceil(math.log2(max(height, width, 1))))


def level_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """(h, w) of every level, level 0 (1 x 1) first, the full image last."""
    top = max_level(height, width)
    return [(math.ceil(height / 2 ** (top - level)), math.ceil(width / 2 ** (top - level))) for level in range(top + 1)]


def dzi_xml(height: int, width: int, tile_size: int = TILE_SIZE, overlap: int = TILE_OVERLAP) -> str:
    """The .dzi descriptor of an image of (``height``, ``width``) with JPEG tiles."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpg" Overlap="{overlap}" '
        f'TileSize="{tile_size}"><Size Width="{width}" Height="{height}"/></Image>\n'
    )


def tile_pyramid(
    display: np.ndarray, tile_size: int = TILE_SIZE, overlap: int = TILE_OVERLAP, quality: int = TILE_QUALITY
) -> Iterator[DeepZoomTile]:
    """Every tile of ``display`` (uint8 (H, W)), full resolution first, then each halved level down to 1 px."""
    if display.dtype != np.uint8 or display.ndim != 2:
        raise ValueError(f"tile_pyramid needs a uint8 (H, W) array, got {display.dtype} {display.shape}")
    level_image = PILImage.fromarray(display)
    for level in range(max_level(*display.shape), -1, -1):
        yield from _level_tiles(level_image, level, tile_size, overlap, quality)
        if level:
            level_image = level_image.reduce(2)


def _level_tiles(
    image: PILImage.Image, level: int, tile_size: int, overlap: int, quality: int
) -> Iterator[DeepZoomTile]:
    width, height = image.size
    for row in range(math.ceil(height / tile_size)):
        for column in range(math.ceil(width / tile_size)):
            x0, y0 = max(0, column * tile_size - overlap), max(0, row * tile_size - overlap)
            x1 = min(width, (column + 1) * tile_size + overlap)
            y1 = min(height, (row + 1) * tile_size + overlap)
            buffer = io.BytesIO()
            image.crop((x0, y0, x1, y1)).save(buffer, format="JPEG", quality=quality)
            yield DeepZoomTile(level, column, row, buffer.getvalue())
