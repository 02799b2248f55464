"""Display windows (mining.imaging.display_uint8, voi_curve, tissue_window) and Deep Zoom pyramids
(mining.deepzoom) on hand-built images with exact expected values."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset

from mining.deepzoom import dzi_xml, level_sizes, max_level, tile_pyramid
from mining.imaging import display_uint8, read_image, tissue_window
from tests.mining.test_imaging import write_dicom

LIMIT = 10_000_000


def _ramp12() -> np.ndarray:
    """uint16 (4, 1024) holding every multiple of 4 of 0..4092 once (12 bits stored)."""
    return (np.arange(4096, dtype=np.uint16)[::4]).reshape(4, 256).repeat(4, axis=1)[:, :1024]


def _read(path: Path):
    return read_image(path, max_pixels=LIMIT)


# ------------------------------------------------------------------ 8 and 16 bit without a header window


def test_eight_bit_images_are_shown_as_stored() -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(display_uint8(pixels), pixels)


def test_sixteen_bit_window_spans_the_tissue_not_the_background_or_a_marker() -> None:
    rng = np.random.default_rng(1)
    pixels = np.full((400, 300), 500, dtype=np.uint16)  # dark background, 60% of the image
    tissue = rng.integers(20_000, 30_001, size=(160, 300)).astype(np.uint16)
    pixels[:160] = tissue
    pixels[390:, 290:] = 65_535  # a small bright marker (0.08%)
    lo, hi = tissue_window(pixels)
    # The 0.5th / 99.5th percentiles of the tissue (here: the values above Otsu's cut between background
    # and tissue, the marker's few pixels included), not of the whole image.
    values = np.sort(np.concatenate([tissue.ravel(), np.full(100, 65_535)]))
    assert lo == values[int(0.005 * values.size)]
    assert abs(hi - np.quantile(values, 0.995)) <= 60
    display = display_uint8(pixels)
    assert display[200, 0] == 0 and display[395, 295] == 255
    assert display[:160].min() <= 2 and display[:160].max() >= 250  # the tissue spans the grey levels


def test_a_constant_image_does_not_divide_by_zero() -> None:
    assert display_uint8(np.full((8, 8), 1234, dtype=np.uint16)).tolist() == [[0] * 8] * 8


# ------------------------------------------------------------------ DICOM VOI


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_window_center_width_is_applied_exactly(tmp_path: Path, photometric: str) -> None:
    # 12 bits stored, rescale -1024 + 1 x stored; the window (center 0, width 1001) is in rescaled units.
    stored = _ramp12()
    loaded = _read(
        write_dicom(
            tmp_path / "w.dcm",
            stored,
            photometric=photometric,
            bits_stored=12,
            slope=1.0,
            intercept=-1024.0,
            WindowCenter="0",
            WindowWidth="1001",
        )
    )
    display = display_uint8(loaded.pixels, loaded.metadata["voi"])
    physical = stored.astype(np.float64) - 1024.0
    # PS3.3 C.11.2.1.2.1: (x - (c - 0.5)) / (w - 1) + 0.5, clipped; MONOCHROME1 shows it inverted.
    expected = np.clip((physical + 0.5) / 1000.0 + 0.5, 0.0, 1.0)
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected
    np.testing.assert_allclose(display, np.rint(expected * 255), atol=1)
    # Bright = dense either way: the largest stored value is white in MONOCHROME2, black in MONOCHROME1.
    assert display[-1, -1] == (255 if photometric == "MONOCHROME2" else 0)


def test_dicom_sigmoid_window(tmp_path: Path) -> None:
    stored = _ramp12()
    loaded = _read(
        write_dicom(
            tmp_path / "s.dcm", stored, bits_stored=12, WindowCenter="2048", WindowWidth="800", VOILUTFunction="SIGMOID"
        )
    )
    display = display_uint8(loaded.pixels, loaded.metadata["voi"]).astype(np.float64)
    expected = 255 / (1 + np.exp(-4 * (stored.astype(np.float64) - 2048) / 800))
    assert np.abs(display - expected).max() <= 3  # the curve is kept as 65 points, linear between


def test_dicom_voi_lut_sequence(tmp_path: Path) -> None:
    stored = _ramp12()
    path = write_dicom(tmp_path / "lut.dcm", stored, bits_stored=12)
    ds = pydicom.dcmread(path)
    item = Dataset()
    # A gamma curve over stored values 1000..3047 (2048 entries, 8-bit output).
    entries = np.rint(255 * (np.arange(2048) / 2047) ** 0.5).astype(np.uint16)
    item.LUTDescriptor = [2048, 1000, 8]
    item.LUTData = entries.astype("<u2").tobytes()  # OW: 16-bit words whatever the bits
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    loaded = _read(path)
    display = display_uint8(loaded.pixels, loaded.metadata["voi"]).astype(np.float64)
    x = stored.astype(np.float64)
    expected = 255 * np.clip((x - 1000) / 2047, 0, 1) ** 0.5
    assert np.abs(display - expected).max() <= 4  # sampled at 256 points, linear between
    assert display[0, 0] == 0 and display[-1, -1] == 255


def test_dicom_without_a_window_uses_the_tissue_window(tmp_path: Path) -> None:
    stored = _ramp12()
    loaded = _read(write_dicom(tmp_path / "plain.dcm", stored, bits_stored=12))
    assert "voi" not in loaded.metadata
    lo, hi = tissue_window(loaded.pixels)
    np.testing.assert_array_equal(
        display_uint8(loaded.pixels, None),
        np.rint(np.clip((loaded.pixels.astype(np.float64) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8),
    )


# ------------------------------------------------------------------ Deep Zoom pyramid


def test_levels_and_descriptor() -> None:
    assert max_level(1800, 1200) == 11  # 2 ** 11 = 2048 >= 1800
    sizes = level_sizes(1800, 1200)
    assert sizes[0] == (1, 1) and sizes[-1] == (1800, 1200) and sizes[-2] == (900, 600) and sizes[-4] == (225, 150)
    assert sizes[-5] == (113, 75)  # rounded up
    assert 'TileSize="256"' in dzi_xml(1800, 1200) and '<Size Width="1200" Height="1800"/>' in dzi_xml(1800, 1200)


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data))).astype(np.int32)


def test_tiles_cover_each_level_with_a_one_pixel_overlap_and_keep_the_geometry() -> None:
    height, width = 700, 530
    image = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = 320, 256, 448, 384  # a white square on multiples of 64
    image[y0:y1, x0:x1] = 255
    tiles = {(t.level, t.column, t.row): t for t in tile_pyramid(image)}
    sizes = level_sizes(height, width)
    top = max_level(height, width)
    for level, (h, w) in enumerate(sizes):
        columns, rows = math.ceil(w / 256), math.ceil(h / 256)
        assert {(c, r) for (lv, c, r) in tiles if lv == level} == {(c, r) for c in range(columns) for r in range(rows)}
        scale = 2 ** (top - level)
        for (lv, column, row), tile in tiles.items():
            if lv != level:
                continue
            pixels = _decode(tile.data)
            left, up = max(0, column * 256 - 1), max(0, row * 256 - 1)
            assert pixels.shape == (min(h, (row + 1) * 256 + 1) - up, min(w, (column + 1) * 256 + 1) - left)
            if scale > 16:
                continue  # the square is under 8 px there
            # Level pixel i covers image pixels [i * scale, (i + 1) * scale): the square's inside is white,
            # its outside black, at every level (JPEG's ringing allowed for).
            ys, xs = np.mgrid[up : up + pixels.shape[0], left : left + pixels.shape[1]]
            inside = (xs * scale >= x0) & ((xs + 1) * scale <= x1) & (ys * scale >= y0) & ((ys + 1) * scale <= y1)
            outside = ((xs + 1) * scale <= x0) | (xs * scale >= x1) | ((ys + 1) * scale <= y0) | (ys * scale >= y1)
            assert (pixels[inside] >= 235).all() and (pixels[outside] <= 20).all(), (level, column, row)


def test_tile_pyramid_refuses_deep_images() -> None:
    with pytest.raises(ValueError):
        next(tile_pyramid(np.zeros((4, 4), dtype=np.uint16)))
