"""mining.imaging.read_image on every DICOM transfer syntax the installed decoders handle, against the
uncompressed reference pydicom ships for the same image; unsupported syntaxes and missing plugins.

The files are pydicom's own test files (``pydicom`` and ``pydicom-data``, read with ``download=False``):
``X_J2KR`` / ``X_J2KI`` are the lossless / lossy JPEG 2000 versions of ``X_UNCR``, and ``X_UNCI`` is the
lossy one decompressed by another toolkit. Comparisons are in physical values (the modality output,
``value_range``), so a compressed copy whose header declares other ``BitsStored`` still compares.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pydicom
import pydicom.pixels
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from mining.imaging import ImageReadError, LoadedImage, UnsupportedTransferSyntaxError, display_uint8, read_image
from tests.mining.test_imaging import write_dicom

BIG = 10**8


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not in pydicom / pydicom-data"
    return Path(path)


def physical(loaded: LoadedImage) -> np.ndarray:
    """The modality output of every pixel: lo + pixel / max * (hi - lo)."""
    lo, hi = loaded.metadata["value_range"]
    top = 255 if loaded.pixels.dtype == np.uint8 else 65535
    return lo + loaded.pixels.astype(np.float64) / top * (hi - lo)


def syntax(path: Path) -> UID:
    return pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID


# (compressed file, its syntax, uncompressed reference of the same image): decoded pixels identical.
LOSSLESS = [
    ("SC_rgb_jpeg_gdcm.dcm", JPEGLosslessSV1, "SC_rgb.dcm"),  # colour, to luma
    ("MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless, "MR_small.dcm"),
    ("emri_small_jpeg_ls_lossless.dcm", JPEGLSLossless, "emri_small.dcm"),  # 10 frames: the first
    ("MR_small_jp2klossless.dcm", JPEG2000Lossless, "MR_small.dcm"),
    ("emri_small_jpeg_2k_lossless.dcm", JPEG2000Lossless, "emri_small.dcm"),
    ("RG3_J2KR.dcm", JPEG2000Lossless, "RG3_UNCR.dcm"),  # real CR, MONOCHROME1, 10 bits
    ("MR2_J2KR.dcm", JPEG2000Lossless, "MR2_UNCR.dcm"),  # 12 bits, rescale slope 3.77
    ("US1_J2KR.dcm", JPEG2000Lossless, "US1_UNCR.dcm"),  # YBR_RCT colour
    ("MR_small_RLE.dcm", RLELossless, "MR_small.dcm"),
    ("emri_small_RLE.dcm", RLELossless, "emri_small.dcm"),
    ("MR_small_bigendian.dcm", ExplicitVRBigEndian, "MR_small.dcm"),
    ("MR_small_implicit.dcm", ImplicitVRLittleEndian, "MR_small.dcm"),
    # Lossy syntaxes against the same lossy image decompressed by another toolkit.
    ("JPEG2000.dcm", JPEG2000, "JPEG2000_UNC.dcm"),
    ("MR2_J2KI.dcm", JPEG2000, "MR2_UNCI.dcm"),
    ("RG3_J2KI.dcm", JPEG2000, "RG3_UNCI.dcm"),
]

# (lossy file, its syntax, the uncompressed original, bound on the mean and on the largest absolute
# error as fractions of the original's physical range; measured errors are in the comments).
LOSSY = [
    # The same lossy image decompressed by dcmtk: libjpeg rounds 74 of its 65,536 pixels one level up.
    ("SC_rgb_jpeg.dcm", JPEGBaseline8Bit, "SC_rgb_jpeg_dcmd.dcm", 0.0001, 0.01),  # 1 of 112
    ("SC_rgb_jpeg_dcmtk.dcm", JPEGBaseline8Bit, "SC_rgb.dcm", 0.002, 0.01),  # mean 0.2, max 2 of 255
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", JPEGBaseline8Bit, "SC_rgb.dcm", 0.003, 0.04),  # 4:2:2 YBR: 0.47, 8
    ("JPGExtended.dcm", JPEGExtended12Bit, "JPEG-LL.dcm", 0.01, 0.15),  # 12 bits: mean 2.3, max 36 of 278
    ("SC_rgb_jls_lossy_line.dcm", JPEGLSNearLossless, "SC_rgb.dcm", 0.003, 0.01),  # NEAR: max 2 of 255
    ("SC_rgb_jls_lossy_sample.dcm", JPEGLSNearLossless, "SC_rgb.dcm", 0.003, 0.01),
    ("RG3_J2KI.dcm", JPEG2000, "RG3_UNCR.dcm", 0.001, 0.01),  # mean 0.78, max 9 of 1023
    ("MR2_J2KI.dcm", JPEG2000, "MR2_UNCR.dcm", 0.008, 0.06),  # mean 15, max 121 of 2246
]


@pytest.mark.parametrize(("name", "uid", "reference"), LOSSLESS, ids=[case[0] for case in LOSSLESS])
def test_lossless_syntax_decodes_to_the_reference_pixels(name: str, uid: UID, reference: str) -> None:
    path = pydicom_file(name)
    assert syntax(path) == uid
    loaded = read_image(path, max_pixels=BIG)
    expected = read_image(pydicom_file(reference), max_pixels=BIG)
    assert (loaded.bit_depth, loaded.modality) == (expected.bit_depth, expected.modality)
    np.testing.assert_array_equal(loaded.pixels, expected.pixels)
    assert loaded.metadata["value_range"] == expected.metadata["value_range"]
    # The window the file carries comes along, so display and thumbnails match the reference's too.
    assert loaded.metadata.get("voi") == expected.metadata.get("voi")
    np.testing.assert_array_equal(
        display_uint8(loaded.pixels, loaded.metadata.get("voi")),
        display_uint8(expected.pixels, expected.metadata.get("voi")),
    )


def test_jpeg_2000_whose_header_declares_other_bits_stored_keeps_the_physical_values() -> None:
    """693_J2KR declares 16 bits stored where its original 693_UNCR declares 14 (the codestream is
    what it is): the pixels differ by the stretch, the Hounsfield values they stand for do not."""
    loaded = read_image(pydicom_file("693_J2KR.dcm"), max_pixels=BIG)
    expected = read_image(pydicom_file("693_UNCR.dcm"), max_pixels=BIG)
    assert syntax(pydicom_file("693_J2KR.dcm")) == JPEG2000Lossless
    # 14 bits stretched onto 16 and rounded: within a quarter of a Hounsfield unit.
    assert np.abs(physical(loaded) - physical(expected)).max() <= 0.25


@pytest.mark.parametrize(("name", "uid", "original", "mean_bound", "max_bound"), LOSSY, ids=[case[0] for case in LOSSY])
def test_lossy_syntax_decodes_close_to_the_original(
    name: str, uid: UID, original: str, mean_bound: float, max_bound: float
) -> None:
    path = pydicom_file(name)
    assert syntax(path) == uid
    loaded = read_image(path, max_pixels=BIG)
    expected = physical(read_image(pydicom_file(original), max_pixels=BIG))
    error = np.abs(physical(loaded) - expected)
    span = float(expected.max() - expected.min())
    assert error.mean() <= mean_bound * span
    assert error.max() <= max_bound * span
    assert error.max() > 0  # lossy indeed: the comparison is not against itself


def test_jpeg_lossless_process_14_decodes_like_its_selection_value_1_form(tmp_path: Path) -> None:
    """No test file uses the general process-14 syntax (1.2.840.10008.1.2.4.57); a selection-value-1
    stream is one, so JPEG-LL.dcm relabelled must decode to the same pixels."""
    source = pydicom_file("JPEG-LL.dcm")
    assert syntax(source) == JPEGLosslessSV1
    relabelled = with_syntax(source, JPEGLossless, tmp_path / "p14.dcm")
    loaded = read_image(relabelled, max_pixels=BIG)
    expected = read_image(source, max_pixels=BIG)
    np.testing.assert_array_equal(loaded.pixels, expected.pixels)
    assert loaded.pixels.dtype == np.uint16 and int(loaded.pixels.max()) > int(loaded.pixels.min())


def test_deflated_file_decodes_to_the_reference_pixels(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dataset.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert syntax(tmp_path / "deflated.dcm") == DeflatedExplicitVRLittleEndian
    loaded = read_image(tmp_path / "deflated.dcm", max_pixels=BIG)
    np.testing.assert_array_equal(loaded.pixels, read_image(pydicom_file("MR_small.dcm"), max_pixels=BIG).pixels)
    assert read_image(pydicom_file("image_dfl.dcm"), max_pixels=BIG).shape == (512, 512)  # pydicom's own


def test_grayscale_8_bit_jpeg_baseline_mammogram_decodes_close_to_its_original(tmp_path: Path) -> None:
    """A MONOCHROME2 8-bit JPEG baseline file (what a secondary-capture mammogram often is), made from a
    known image with Pillow's encoder: quality 95 stays within a few grey levels."""
    rng = np.random.default_rng(0)
    original = np.clip(np.add.outer(np.arange(96), np.arange(128)) + rng.normal(0, 3, (96, 128)), 0, 255)
    original = original.astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(original).save(buffer, format="JPEG", quality=95)
    path = write_dicom(tmp_path / "baseline.dcm", original, WindowCenter="100", WindowWidth="120")
    dataset = pydicom.dcmread(path)
    dataset.PixelData = encapsulate([buffer.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.save_as(path, enforce_file_format=True)
    loaded = read_image(path, max_pixels=BIG)
    error = np.abs(loaded.pixels.astype(np.int64) - original)
    assert loaded.pixels.dtype == np.uint8 and error.mean() < 1.5 and error.max() <= 12
    voi = loaded.metadata["voi"]  # the file's window is kept: 40 -> black, 160 -> white
    assert voi["x"][0] == pytest.approx(40.0) and voi["x"][-1] == pytest.approx(159.0)


def test_modality_lut_sequence_is_applied_as_a_table() -> None:
    """mlut_18.dcm maps its 12-bit signed stored values through a 4096-entry, 16-bit Modality LUT."""
    path = pydicom_file("mlut_18.dcm")
    dataset = pydicom.dcmread(path)
    expected = pydicom.pixels.apply_modality_lut(dataset.pixel_array, dataset)
    loaded = read_image(path, max_pixels=BIG)
    assert loaded.pixels.dtype == np.uint16 and loaded.metadata["value_range"] == [0.0, 65535.0]
    np.testing.assert_array_equal(loaded.pixels, expected)


def test_modality_lut_sequence_on_monochrome1_is_inverted(tmp_path: Path) -> None:
    """An 8-bit table on MONOCHROME1: pixel = 255 - LUT[stored], the physical ends swapped."""
    stored = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    path = write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits_stored=12)
    dataset = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item.LUTDescriptor = [4, 0, 8]
    item.ModalityLUTType = "OD"
    item.add_new("LUTData", "US", [10, 20, 200, 250])
    dataset.ModalityLUTSequence = [item]
    dataset.save_as(path, enforce_file_format=True)
    loaded = read_image(path, max_pixels=BIG)
    assert loaded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(loaded.pixels, [[245, 235, 55, 5]])
    assert loaded.metadata["value_range"] == [255.0, 0.0]


# --- what cannot be decoded ---------------------------------------------------------------------


def with_syntax(source: Path, uid: str, path: Path) -> Path:
    """``source`` with only its Transfer Syntax UID changed (the pixel data stays as it is)."""
    dataset = pydicom.dcmread(source)
    dataset.file_meta.TransferSyntaxUID = uid
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_a_syntax_pydicom_has_no_decoder_for_is_refused_by_name(tmp_path: Path) -> None:
    path = with_syntax(pydicom_file("MR_small_jp2klossless.dcm"), "1.2.840.10008.1.2.4.92", tmp_path / "part2.dcm")
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        read_image(path, max_pixels=BIG)
    assert str(caught.value) == (
        "unsupported DICOM transfer syntax JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only) "
        "(1.2.840.10008.1.2.4.92): neither pydicom nor an installed plugin decodes it; convert the file to an "
        "uncompressed transfer syntax first (e.g. gdcmconv --raw in.dcm out.dcm)"
    )
    assert isinstance(caught.value, ImageReadError)  # the import's and the uploads' bad-file path


def test_a_syntax_pydicom_does_not_know_is_refused_by_its_uid(tmp_path: Path) -> None:
    """JPEG XL (1.2.840.10008.1.2.4.110, DICOM 2024) is newer than this pydicom, which will not even
    write it: the UID is patched into the file's meta header bytes."""
    path = tmp_path / "jxl.dcm"
    path.write_bytes(_meta_uid_replaced(pydicom_file("MR_small_jp2klossless.dcm"), "1.2.840.10008.1.2.4.110"))
    assert syntax(path) == "1.2.840.10008.1.2.4.110"
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        read_image(path, max_pixels=BIG)
    assert str(caught.value).startswith(
        "unsupported DICOM transfer syntax 1.2.840.10008.1.2.4.110: neither pydicom nor an installed plugin"
    )


def _meta_uid_replaced(source: Path, uid: str) -> bytes:
    """The file's bytes with another Transfer Syntax UID (0002,0010), its length and the meta group's
    length (0002,0000, the first element after the preamble) adjusted."""
    data = bytearray(source.read_bytes())
    old = str(syntax(source))
    old_value, new_value = (v.encode() + b"\0" * (len(v) % 2) for v in (old, uid))
    element = b"\x02\x00\x10\x00UI"
    start = data.index(element + struct.pack("<H", len(old_value)) + old_value)
    data[start : start + 8 + len(old_value)] = element + struct.pack("<H", len(new_value)) + new_value
    assert data[132:138] == b"\x02\x00\x00\x00UL"
    (group_length,) = struct.unpack("<I", data[140:144])
    data[140:144] = struct.pack("<I", group_length + len(new_value) - len(old_value))
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "packages"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "pylibjpeg pylibjpeg-libjpeg"),
        ("JPEG2000.dcm", "pylibjpeg pylibjpeg-openjpeg"),
    ],
)
def test_a_missing_plugin_is_named_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch, name: str, packages: str
) -> None:
    path = pydicom_file(name)
    uid = syntax(path)
    decoder = pydicom.pixels.get_decoder(uid)
    monkeypatch.setattr(decoder, "_available", {})  # as if neither pylibjpeg nor Pillow were installed
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        read_image(path, max_pixels=BIG)
    assert str(caught.value) == (
        f"DICOM transfer syntax {uid.name} ({uid}) needs a decoder that is not installed here: "
        f"pip install {packages} (pinned in requirements.txt)"
    )


def test_every_compressed_syntax_pydicom_decodes_has_its_decoder_installed() -> None:
    """The pinned plugins cover every syntax pydicom has a decoder for (HTJ2K included), so none of
    them fails an import for want of a package."""
    decodable = []
    for uid in pydicom.uid.AllTransferSyntaxes:
        try:
            decoder = pydicom.pixels.get_decoder(uid)
        except NotImplementedError:
            continue
        assert decoder.is_available, f"{uid.name}: {decoder.missing_dependencies}"
        decodable.append(uid)
    expected = {*pydicom.uid.JPEGTransferSyntaxes, *pydicom.uid.JPEGLSTransferSyntaxes, RLELossless}
    expected |= {JPEG2000Lossless, JPEG2000, "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"}
    expected |= {"1.2.840.10008.1.2.4.203", ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
    assert expected <= set(decodable)


def test_a_file_that_no_decoder_can_read_stays_a_readable_error() -> None:
    """JPEG-lossy.dcm has a misplaced marker only GDCM tolerates: a per-file reason, not a crash."""
    with pytest.raises(ImageReadError, match=r"^corrupt or unreadable image: Unable to decode"):
        read_image(pydicom_file("JPEG-lossy.dcm"), max_pixels=BIG)
