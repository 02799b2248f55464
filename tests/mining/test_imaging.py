"""mining.imaging: decoding PNG / JPEG / TIFF / DICOM, refusing bombs and corrupt files, masks, display helpers.

No database. Fixtures are written into tmp_path by the tests; `write_dicom` is also used by the
import tests to build a fake CBIS-DDSM tree.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from mining.imaging import (
    OUTLINE_COLOURS,
    ImageReadError,
    ImageTooLargeError,
    finding_overlay,
    is_dicom,
    read_image,
    read_image_size,
    read_mask,
    thumbnail_uint8,
    to_display_uint8,
)

BIG = 10**9


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    modality: str = "MG",
    rows_columns: tuple[int, int] | None = None,
    **header: str,
) -> Path:
    """An uncompressed single-frame grayscale DICOM file; `rows_columns` lets the header lie."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = rows_columns or pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _save(path: Path, array: np.ndarray, **kwargs: object) -> Path:
    PILImage.fromarray(array).save(path, **kwargs)
    return path


@pytest.fixture
def gradient8() -> np.ndarray:
    return (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.uint8)


@pytest.fixture
def gradient16() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 65536, size=(40, 56), dtype=np.uint16)


# --- PNG / TIFF / JPEG -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_8_bit_round_trip_is_exact(tmp_path: Path, gradient8: np.ndarray, suffix: str) -> None:
    loaded = read_image(_save(tmp_path / f"a{suffix}", gradient8), max_pixels=BIG)
    assert loaded.pixels.dtype == np.uint8 and loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.pixels, gradient8)
    assert loaded.modality == ""


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_round_trip_keeps_uint16(tmp_path: Path, gradient16: np.ndarray, suffix: str) -> None:
    loaded = read_image(_save(tmp_path / f"a{suffix}", gradient16), max_pixels=BIG)
    assert loaded.pixels.dtype == np.uint16 and loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.pixels, gradient16)


def test_jpeg_reads_close_to_the_original(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(0, 255, 64), (48, 1)).astype(np.uint8)
    loaded = read_image(_save(tmp_path / "a.jpg", smooth, quality=95), max_pixels=BIG)
    assert loaded.pixels.shape == (48, 64) and loaded.pixels.dtype == np.uint8
    assert np.abs(loaded.pixels.astype(int) - smooth).mean() < 2
    assert loaded.metadata["format"] == "JPEG"


def test_rgb_becomes_luma(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1, :] = (200, 200, 200)
    loaded = read_image(_save(tmp_path / "rgb.png", rgb), max_pixels=BIG)
    # ITU-R 601-2: 0.299 R + 0.587 G + 0.114 B
    np.testing.assert_array_equal(loaded.pixels, [[76, 150, 29], [200, 200, 200]])
    assert loaded.bit_depth == 8


# --- DICOM -------------------------------------------------------------------------------------


def test_ct_small_signed_16_bit_is_shifted_into_uint16() -> None:
    path = get_testdata_file("CT_small.dcm")
    raw = pydicom.dcmread(path).pixel_array
    loaded = read_image(path, max_pixels=BIG)
    assert loaded.pixels.shape == (128, 128) and loaded.pixels.dtype == np.uint16 and loaded.bit_depth == 16
    assert loaded.modality == "CT"
    # Signed 16 bits stored: the full range -32768..32767 maps onto 0..65535, exactly.
    np.testing.assert_array_equal(loaded.pixels, raw.astype(np.int32) + 32768)
    # Rescale slope 1, intercept -1024: pixel 0 is -33792 HU, pixel 65535 is 31743 HU.
    assert loaded.metadata["value_range"] == [-33792.0, 31743.0]
    assert loaded.metadata["PatientID"] == "1CT1"


def test_mr_small_reads() -> None:
    loaded = read_image(get_testdata_file("MR_small.dcm"), max_pixels=BIG)
    assert loaded.pixels.shape == (64, 64) and loaded.pixels.dtype == np.uint16
    assert loaded.modality == "MR" and loaded.metadata["PatientSex"] == "F"


def test_real_chest_cr_is_monochrome1_and_comes_out_inverted() -> None:
    path = get_testdata_file("RG1_UNCR.dcm", download=False)
    header = pydicom.dcmread(path)
    assert header.PhotometricInterpretation == "MONOCHROME1" and header.BitsStored == 15
    loaded = read_image(path, max_pixels=BIG)
    assert loaded.pixels.shape == (1955, 1841) and loaded.pixels.dtype == np.uint16
    assert loaded.modality == "CR"
    assert loaded.metadata["ViewPosition"] == "PA" and loaded.metadata["PatientSex"] == "F"
    # 15 bits stored (874..26479 raw) fill the uint16 range with a factor 65535 / 32767, inverted.
    raw = header.pixel_array.astype(np.float64)
    np.testing.assert_array_equal(loaded.pixels, np.rint((32767 - raw) * (65535 / 32767)))
    assert 10_000 < loaded.pixels.min() < loaded.pixels.max() < 65_000
    assert loaded.metadata["value_range"] == [32767.0, 0.0]


def test_dicom_over_the_pixel_limit_is_refused() -> None:
    path = get_testdata_file("RG1_UNCR.dcm", download=False)
    with pytest.raises(ImageTooLargeError, match="1841x1955"):
        read_image(path, max_pixels=1955 * 1841 - 1)


def test_synthetic_monochrome1_is_flipped_and_monochrome2_is_not(tmp_path: Path) -> None:
    values = np.array([[0, 1, 1000], [30000, 65534, 65535]], dtype=np.uint16)
    mono1 = read_image(write_dicom(tmp_path / "m1.dcm", values, photometric="MONOCHROME1"), max_pixels=BIG)
    mono2 = read_image(write_dicom(tmp_path / "m2.dcm", values), max_pixels=BIG)
    np.testing.assert_array_equal(mono1.pixels, 65535 - values)
    np.testing.assert_array_equal(mono2.pixels, values)
    assert mono1.modality == "MG"


def test_12_bits_stored_are_stretched_to_16_bits(tmp_path: Path) -> None:
    values = np.array([[0, 1, 2048, 4095]], dtype=np.uint16)
    loaded = read_image(write_dicom(tmp_path / "a.dcm", values, bits_stored=12), max_pixels=BIG)
    np.testing.assert_array_equal(loaded.pixels, [[0, 16, 32776, 65535]])  # rint(v * 65535 / 4095)


def test_negative_rescale_slope_flips_like_monochrome1(tmp_path: Path) -> None:
    values = np.array([[0, 100, 65535]], dtype=np.uint16)
    loaded = read_image(write_dicom(tmp_path / "a.dcm", values, slope=-2.0, intercept=10.0), max_pixels=BIG)
    np.testing.assert_array_equal(loaded.pixels, [[65535, 65435, 0]])
    # pixel 0 = stored 65535 = -131060, pixel 65535 = stored 0 = 10: bright = high physical value
    assert loaded.metadata["value_range"] == [-131060.0, 10.0]


def test_8_bits_stored_give_uint8(tmp_path: Path) -> None:
    values = np.array([[0, 7, 255]], dtype=np.uint8)
    loaded = read_image(write_dicom(tmp_path / "a.dcm", values), max_pixels=BIG)
    assert loaded.pixels.dtype == np.uint8 and loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.pixels, values)


def test_dicom_header_fields_go_into_metadata(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "a.dcm",
        np.zeros((4, 4), np.uint16),
        PatientID="P7",
        ViewPosition="MLO",
        ImageLaterality="L",
        PatientAge="052Y",
        PatientSex="F",
    )
    metadata = read_image(path, max_pixels=BIG).metadata
    assert {k: metadata[k] for k in ("PatientID", "ViewPosition", "Laterality", "PatientAge", "PatientSex")} == {
        "PatientID": "P7",
        "ViewPosition": "MLO",
        "Laterality": "L",
        "PatientAge": "052Y",
        "PatientSex": "F",
    }


def test_dicom_is_recognised_by_its_preamble_without_extension(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "a.dcm", np.full((3, 5), 9, np.uint16))
    renamed = path.rename(tmp_path / "IM0001")
    assert is_dicom(renamed) and not is_dicom(_save(tmp_path / "b.png", np.zeros((2, 2), np.uint8)))
    assert read_image(renamed, max_pixels=BIG).pixels.shape == (3, 5)


# --- corrupt files and bombs -------------------------------------------------------------------


def test_truncated_png_is_an_image_read_error(tmp_path: Path, gradient16: np.ndarray) -> None:
    path = _save(tmp_path / "a.png", gradient16)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageReadError, match=r"^corrupt or unreadable image: ") as caught:
        read_image(path, max_pixels=BIG)
    assert not isinstance(caught.value, ImageTooLargeError)


@pytest.mark.parametrize("name", ["random.dcm", "random.png", "random.tif"])
def test_random_bytes_are_an_image_read_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=r"^corrupt or unreadable image: "):
        read_image(path, max_pixels=BIG)


def test_dicom_with_short_pixel_data_is_an_image_read_error(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "a.dcm", np.zeros((10, 10), np.uint16), rows_columns=(20, 20))
    with pytest.raises(ImageReadError, match=r"^corrupt or unreadable image: "):
        read_image(path, max_pixels=BIG)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_png_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    # A 60-byte file claiming 50000 x 50000 8-bit gray (2.5 G pixels) and holding no pixel data:
    # decoding would fail as "corrupt", so "too large" shows the header alone was looked at.
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageTooLargeError, match=r"^image too large"):
        read_image(path, max_pixels=100_000_000)
    with pytest.raises(ImageTooLargeError):  # Pillow's own guard, in the lazy open
        read_image_size(path)


def test_real_png_over_the_limit_is_refused_without_decoding(tmp_path: Path) -> None:
    path = _save(tmp_path / "big.png", np.zeros((1200, 1000), np.uint8))
    path.write_bytes(path.read_bytes()[:100])  # unreadable pixels: only a decode would notice
    with pytest.raises(ImageTooLargeError, match=r"1000x1200 = 1,200,000 pixels, the limit is 1,000,000"):
        read_image(path, max_pixels=1_000_000)
    with pytest.raises(ImageReadError, match=r"^corrupt"):
        read_image(path, max_pixels=2_000_000)


def test_dicom_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "bomb.dcm", np.zeros((2, 2), np.uint16), rows_columns=(60_000, 60_000))
    with pytest.raises(ImageTooLargeError, match="60000x60000"):
        read_image(path, max_pixels=100_000_000)


# --- masks -------------------------------------------------------------------------------------


def _rectangle(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_mask_of_the_image_size_reads_nonzero_as_inside(tmp_path: Path) -> None:
    values = np.zeros((20, 30), np.uint8)
    values[2:5, 3:9] = 255
    values[10, 10] = 1
    mask = read_mask(_save(tmp_path / "m.png", values), (20, 30))
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, values != 0)


def test_half_size_mask_is_enlarged_nearest_neighbour(tmp_path: Path) -> None:
    small = _rectangle((10, 15), 2, 4, 3, 6)
    mask = read_mask(_save(tmp_path / "m.png", small.astype(np.uint8) * 255), (20, 30))
    np.testing.assert_array_equal(mask, _rectangle((20, 30), 4, 8, 6, 12))


def test_double_size_mask_is_reduced(tmp_path: Path) -> None:
    big = _rectangle((40, 60), 4, 8, 6, 12)
    mask = read_mask(_save(tmp_path / "m.png", big.astype(np.uint8) * 255), (20, 30))
    np.testing.assert_array_equal(mask, _rectangle((20, 30), 2, 4, 3, 6))


@pytest.mark.parametrize("shape", [(21, 30), (30, 45), (40, 30)])
def test_mask_of_another_size_is_refused(tmp_path: Path, shape: tuple[int, int]) -> None:
    path = _save(tmp_path / "m.png", np.zeros(shape, np.uint8))
    with pytest.raises(ImageReadError, match="does not match the image size 30x20"):
        read_mask(path, (20, 30))


def test_dicom_mask(tmp_path: Path) -> None:
    values = (_rectangle((12, 16), 1, 5, 2, 9) * 255).astype(np.uint8)
    mask = read_mask(write_dicom(tmp_path / "roi.dcm", values), (12, 16))
    np.testing.assert_array_equal(mask, values != 0)


# --- display helpers ---------------------------------------------------------------------------


def test_display_windows_16_bit_at_the_percentiles() -> None:
    pixels = np.full((100, 100), 1000, np.uint16)
    pixels[:, 50:] = 3000
    pixels[0, :10] = 65535  # 0.1% hot pixels must not flatten the contrast
    display = to_display_uint8(pixels)
    assert display.dtype == np.uint8
    assert display[50, 10] == 0 and display[50, 90] == 255 and display[0, 0] == 255


def test_display_leaves_uint8_alone_and_survives_a_constant_image(gradient8: np.ndarray) -> None:
    assert to_display_uint8(gradient8) is gradient8
    flat = to_display_uint8(np.full((5, 5), 700, np.uint16))
    assert flat.dtype == np.uint8 and len(np.unique(flat)) == 1


def test_thumbnail_longest_side_256_keeps_aspect() -> None:
    assert thumbnail_uint8(np.zeros((1000, 500), np.uint16)).shape == (256, 128)
    assert thumbnail_uint8(np.zeros((300, 600), np.uint8)).shape == (128, 256)
    assert thumbnail_uint8(np.zeros((100, 80), np.uint8)).shape == (100, 80)  # never enlarged


def test_overlay_outlines_benign_green_malignant_red_and_skips_normal() -> None:
    shape = (512, 512)
    benign = _rectangle(shape, 40, 120, 40, 120)
    malignant = _rectangle(shape, 300, 400, 300, 400)
    anatomy = _rectangle(shape, 0, 512, 200, 260)
    calcification = _rectangle(shape, 200, 202, 450, 452)  # 2x2 px: smaller than a thumbnail pixel
    overlay = finding_overlay(
        [(benign, "benign"), (malignant, "malignant"), (anatomy, "normal"), (calcification, "malignant")], (256, 256)
    )
    assert overlay.shape == (256, 256, 4) and overlay.dtype == np.uint8
    assert tuple(overlay[20, 40]) == OUTLINE_COLOURS["benign"]  # top edge of the benign box
    assert tuple(overlay[40, 40]) == (0, 0, 0, 0)  # its inside stays transparent
    assert tuple(overlay[150, 180]) == OUTLINE_COLOURS["malignant"]
    assert not overlay[:, 100:131, 3].any()  # normal anatomy (columns 200-260) is not drawn
    assert tuple(overlay[100, 225]) == OUTLINE_COLOURS["malignant"]  # the 2x2 calcification still shows
    assert set(np.unique(overlay[..., 3])) == {0, 255}
