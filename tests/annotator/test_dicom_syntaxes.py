"""Compressed DICOM through the import and the uploads: every row's stored image, rendition, thumbnail,
findings and patches are those of the uncompressed reference of the same image; a transfer syntax no
installed decoder handles is a bad row naming the syntax and what to install, and nothing is imported.

The reader itself, syntax by syntax, is tested in tests/mining/test_dicom_syntaxes.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.pixels
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from pydicom.uid import JPEG2000Lossless, RLELossless

from annotator.errors import ApplicationError
from annotator.files import media_path, read_png
from annotator.models import Dataset, Finding, Image, Patch
from annotator.services.datasets import dataset_import
from annotator.services.patch_data import patch_split_load
from annotator.services.patches import patches_extract
from annotator.services.uploads import upload_create
from mining.data import crop_table
from mining.imaging import read_image
from mining.patches import PatchParams
from mining.phantoms.mammograms import generate_mammogram_phantoms
from mining.progress import never_cancelled, no_progress
from mining.windowing import WINDOW_PERCENTILE, WINDOW_VOI, voi_uint8
from tests.annotator.test_import_dataset import media_files, write_manifest
from tests.mining.test_dicom_syntaxes import BIG, pydicom_file, with_syntax
from tests.mining.test_imaging import write_dicom

pytestmark = pytest.mark.django_db

# Compressed file -> the uncompressed reference of the same pixels (both from pydicom / pydicom-data).
PAIRS = {
    "MR_small_jp2klossless.dcm": "MR_small.dcm",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm": "MR_small.dcm",  # JPEG-LS lossless
    "MR_small_RLE.dcm": "MR_small.dcm",  # RLE
    "MR_small_bigendian.dcm": "MR_small.dcm",  # explicit big endian
    "JPEG2000.dcm": "JPEG2000_UNC.dcm",  # JPEG 2000 (lossy syntax), 1024 x 256 NM
    "SC_rgb_jpeg_gdcm.dcm": "SC_rgb.dcm",  # JPEG lossless SV1, colour
}
LOSSY_ONLY = ("JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm")  # JPEG extended 12-bit, JPEG baseline colour


def _media_png(name: str) -> np.ndarray:
    with PILImage.open(media_path(name)) as img:
        return np.asarray(img)


def _patches(image: Image) -> list[tuple[int, int, int, int, str, float]]:
    rows = Patch.objects.filter(image=image).order_by("y0", "x0")
    return [(p.x0, p.y0, p.x1, p.y1, p.label, p.tissue_fraction) for p in rows]


def test_compressed_pydicom_files_import_like_their_references(tmp_path: Path) -> None:
    names = sorted({*PAIRS, *PAIRS.values(), *LOSSY_ONLY})
    for name in names:
        shutil.copy(pydicom_file(name), tmp_path / name)
    write_manifest(tmp_path, [{"image": n, "patient_id": f"P{i}", "label": "normal"} for i, n in enumerate(names)])
    dataset = dataset_import(name="syntaxes", folder=tmp_path)
    images = {image.source_name: image for image in dataset.images.all()}
    assert sorted(images) == names

    # What the import validated is what it stored, and what patches and training read back.
    for name, image in images.items():
        loaded = read_image(tmp_path / name, max_pixels=BIG)
        np.testing.assert_array_equal(read_png(image.file.name), loaded.pixels)
        assert (image.height, image.width, image.bit_depth) == (*loaded.shape, loaded.bit_depth)

    for name, reference in PAIRS.items():
        image, expected = images[name], images[reference]
        assert (image.bit_depth, image.modality) == (expected.bit_depth, expected.modality)
        assert image.metadata["dicom"].get("voi") == expected.metadata["dicom"].get("voi")
        for field in ("file", "display", "thumbnail"):
            np.testing.assert_array_equal(
                _media_png(getattr(image, field).name), _media_png(getattr(expected, field).name), err_msg=field
            )
    assert images["MR_small_jp2klossless.dcm"].metadata["dicom"]["voi"]  # MR_small carries a window

    patches_extract(dataset=dataset, params=PatchParams(), progress=no_progress, cancelled=never_cancelled)
    for name, reference in PAIRS.items():
        assert _patches(images[name]) == _patches(images[reference]), name
    assert _patches(images["MR_small.dcm"]) and _patches(images["JPGExtended.dcm"])


def _mammogram_dicoms(folder: Path) -> tuple[list[dict[str, str]], np.ndarray]:
    """A malignant phantom as a 12-bit MONOCHROME1 mammogram with its own window, uncompressed, JPEG 2000
    lossless and RLE (pydicom's encoders), and its finding's mask; the manifest rows."""
    phantom = next(p for p in generate_mammogram_phantoms(4, seed=3, width=128, height=160) if p.label == "malignant")
    stored = ((255 - phantom.pixels.astype(np.uint16)) * 16).astype(np.uint16)  # MONOCHROME1: dense = low
    finding = next(f for f in phantom.findings if f.pathology == "malignant")
    PILImage.fromarray(finding.mask.astype(np.uint8) * 255).save(folder / "mask.png")
    reference = write_dicom(
        folder / "plain.dcm", stored, photometric="MONOCHROME1", bits_stored=12, WindowCenter="2000", WindowWidth="3000"
    )
    for uid, name in ((JPEG2000Lossless, "j2k.dcm"), (RLELossless, "rle.dcm")):
        dataset = pydicom.dcmread(reference)
        dataset.compress(uid)
        dataset.save_as(folder / name, enforce_file_format=True)
        assert pydicom.dcmread(folder / name, stop_before_pixels=True).file_meta.TransferSyntaxUID == uid
    rows = [
        {
            "image": name,
            "patient_id": f"P{i}",
            "label": "malignant",
            "mask": "mask.png",
            "mask_pathology": "malignant",
            "mask_concepts": ";".join(finding.concepts),
        }
        for i, name in enumerate(("plain.dcm", "j2k.dcm", "rle.dcm"))
    ]
    return rows, finding.mask


def test_compressed_mammogram_gives_the_same_rows_renditions_and_patches(tmp_path: Path) -> None:
    rows, mask = _mammogram_dicoms(tmp_path)
    write_manifest(tmp_path, rows)
    dataset = dataset_import(name="mammograms", folder=tmp_path)
    images = {image.source_name: image for image in dataset.images.all()}
    reference = images["plain.dcm"]
    assert reference.bit_depth == 16 and reference.metadata["dicom"]["voi"]
    patches_extract(dataset=dataset, params=PatchParams(), progress=no_progress, cancelled=never_cancelled)
    assert any(label == "malignant" for *_, label, _ in _patches(reference))
    for name in ("j2k.dcm", "rle.dcm"):
        image = images[name]
        for field in ("file", "display", "thumbnail", "overlay"):
            np.testing.assert_array_equal(
                _media_png(getattr(image, field).name), _media_png(getattr(reference, field).name), err_msg=field
            )
        found, expected = Finding.objects.get(image=image), Finding.objects.get(image=reference)
        assert (found.area, found.bbox) == (expected.area, expected.bbox)
        assert found.area == int(mask.sum())
        assert _patches(image) == _patches(reference)

    # Training's crops come from the stored images: the same for the three files, and the crops of the
    # pixels the import's reader decoded.
    for image in images.values():
        image.split = "train"
    Image.objects.bulk_update(images.values(), ["split"])
    classes = ["normal", "benign", "malignant"]
    split = patch_split_load(dataset=dataset, splits=["train"], classes=classes, window=WINDOW_VOI)
    decoded = [
        read_image(tmp_path / Image.objects.get(pk=pk).source_name, max_pixels=BIG).pixels for pk in split.image_ids
    ]
    voi = reference.metadata["dicom"]["voi"]
    np.testing.assert_array_equal(
        split.crops.numpy(), crop_table([voi_uint8(d, voi) for d in decoded], split.table).numpy()
    )
    per_image = [split.crops[split.table.image_index == i].numpy() for i in range(3)]
    np.testing.assert_array_equal(per_image[0], per_image[1])
    np.testing.assert_array_equal(per_image[0], per_image[2])
    # The network sees the file's own window (PS3.3 C.11.2.1.2.1 over the stored values; MONOCHROME1 shown
    # inverted, so bright = dense), as the display does.
    stored = pydicom.dcmread(tmp_path / "plain.dcm").pixel_array.astype(np.float64)
    windowed = 1.0 - np.clip((stored - 1999.5) / 2999 + 0.5, 0.0, 1.0)
    first = split.table.subset(np.flatnonzero(split.table.image_index == 0))
    first.image_index[:] = 0
    by_header = crop_table([np.rint(windowed * 255).astype(np.uint8)], first).numpy().astype(np.int16)
    assert np.abs(per_image[0].astype(np.int16) - by_header).max() <= 1
    # A model trained before the window reached the network keeps its own: the percentile window.
    legacy = patch_split_load(dataset=dataset, splits=["train"], classes=classes, window=WINDOW_PERCENTILE)
    np.testing.assert_array_equal(legacy.crops.numpy(), crop_table(decoded, split.table).numpy())
    assert not np.array_equal(legacy.crops.numpy(), split.crops.numpy())


def test_unsupported_syntax_and_missing_plugin_are_bad_rows_and_nothing_is_imported(
    tmp_path: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(pydicom_file("MR_small.dcm"), tmp_path / "good.dcm")
    with_syntax(pydicom_file("MR_small_jp2klossless.dcm"), "1.2.840.10008.1.2.4.92", tmp_path / "part2.dcm")
    shutil.copy(pydicom_file("MR_small_jpeg_ls_lossless.dcm"), tmp_path / "jpegls.dcm")
    jpeg_ls = pydicom.pixels.get_decoder(pydicom.uid.JPEGLSLossless)
    monkeypatch.setattr(jpeg_ls, "_available", {})  # as if pylibjpeg-libjpeg were not installed
    names = ("good.dcm", "part2.dcm", "jpegls.dcm")
    write_manifest(tmp_path, [{"image": n, "patient_id": f"P{i}", "label": "normal"} for i, n in enumerate(names)])
    with pytest.raises(ApplicationError) as caught:
        dataset_import(name="unsupported", folder=tmp_path)
    assert caught.value.message == "2 bad rows in manifest"
    errors = caught.value.extra["errors"]
    assert [(e["line"], e["reason"]) for e in errors] == [
        (
            3,
            "part2.dcm: unsupported DICOM transfer syntax JPEG 2000 Part 2 Multi-component Image Compression "
            "(Lossless Only) (1.2.840.10008.1.2.4.92): neither pydicom nor an installed plugin decodes it; "
            "convert the file to an uncompressed transfer syntax first (e.g. gdcmconv --raw in.dcm out.dcm)",
        ),
        (
            4,
            "jpegls.dcm: DICOM transfer syntax JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80) needs "
            "a decoder that is not installed here: pip install pylibjpeg pylibjpeg-libjpeg (pinned in requirements.txt)",
        ),
    ]
    assert (Dataset.objects.count(), Image.objects.count()) == (0, 0)
    assert media_files(media_root) == []


def test_compressed_dicom_upload_is_stored_like_its_reference(expert_user) -> None:
    data = pydicom_file("MR_small_jp2klossless.dcm").read_bytes()
    upload = upload_create(owner=expert_user, uploaded=SimpleUploadedFile("mr.dcm", data))
    expected = read_image(pydicom_file("MR_small.dcm"), max_pixels=BIG)
    np.testing.assert_array_equal(read_png(upload.file.name), expected.pixels)
    assert (upload.bit_depth, upload.modality) == (16, "MR")


def test_unsupported_syntax_upload_is_refused_with_the_reason(expert_user, tmp_path: Path) -> None:
    path = with_syntax(pydicom_file("MR_small_jp2klossless.dcm"), "1.2.840.10008.1.2.4.92", tmp_path / "p2.dcm")
    with pytest.raises(ApplicationError, match=r"^p2\.dcm is not an image this product can read: unsupported DICOM"):
        upload_create(owner=expert_user, uploaded=SimpleUploadedFile("p2.dcm", path.read_bytes()))
