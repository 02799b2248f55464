"""Display renditions and tiles made at import (8-bit and 16-bit PNG, MONOCHROME1 and windowed DICOM), by the
make_renditions command for images stored before, and the deep zoom files served from them: descriptor
and tiles to signed-in users, pixel for pixel the windowed original, outlines to those who see the truth."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from annotator.files import media_path, read_png
from annotator.models import Dataset, Image
from annotator.services.datasets import dataset_import
from annotator.services.renditions import (
    DISPLAY_LONG_SIDE,
    deepzoom_ensure,
    deepzoom_folder,
    display_pixels,
    display_size,
)
from mining.imaging import display_uint8, read_image, thumbnail_uint8
from tests.annotator.test_import_dataset import write_manifest
from tests.factories import DatasetFactory, FindingFactory, ImageFactory
from tests.mining.test_imaging import write_dicom

pytestmark = pytest.mark.django_db

H, W = 1300, 900  # larger than a rendition, so it is resized


def _ramp(dtype: type, top: int) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W]
    return np.rint((xs + ys) / (H + W - 2) * top).astype(dtype)


@pytest.fixture
def imported(tmp_path: Path) -> Dataset:
    folder = tmp_path / "study"
    folder.mkdir()
    PILImage.fromarray(_ramp(np.uint8, 255)).save(folder / "eight.png")
    PILImage.fromarray(_ramp(np.uint16, 65535)).save(folder / "sixteen.png")
    stored = _ramp(np.uint16, 4095)
    write_dicom(folder / "mono1.dcm", stored, photometric="MONOCHROME1", bits_stored=12)
    write_dicom(folder / "windowed.dcm", stored, bits_stored=12, WindowCenter="1500", WindowWidth="1001")
    rows = [
        {"image": name, "patient_id": f"P{i}", "label": "normal"}
        for i, name in enumerate(["eight.png", "sixteen.png", "mono1.dcm", "windowed.dcm"])
    ]
    write_manifest(folder, rows)
    return dataset_import(name="Renditions", folder=folder)


def _display(dataset: Dataset, source: str) -> tuple[Image, np.ndarray]:
    image = dataset.images.get(source_name=source)
    return image, read_png(image.display.name)


def test_import_writes_a_windowed_rendition_beside_each_original(imported: Dataset, tmp_path: Path) -> None:
    size = display_size(H, W)
    assert max(size) == DISPLAY_LONG_SIDE
    folder = tmp_path / "study"
    for source in ("eight.png", "sixteen.png", "mono1.dcm", "windowed.dcm"):
        image, display = _display(imported, source)
        assert display.dtype == np.uint8 and display.shape == size, source
        original = read_png(image.file.name)  # the original stays as it was, lossless and full size
        assert original.shape == (H, W)
        loaded = read_image(folder / source, max_pixels=10**8)
        np.testing.assert_array_equal(display, display_pixels(loaded.pixels, voi=loaded.metadata.get("voi")))
        # Its full-resolution tiles are the same window at full size (JPEG: a few grey levels off).
        tile = media_path(f"{deepzoom_ensure(image)}/image_files/11/1_1.jpg")
        windowed = display_uint8(loaded.pixels, loaded.metadata.get("voi"))
        np.testing.assert_array_equal(read_png(image.thumbnail.name), thumbnail_uint8(windowed))  # same window
        full = windowed.astype(np.int32)
        got = np.asarray(PILImage.open(tile)).astype(np.int32)
        assert got.shape == (258, 258) and np.abs(got - full[255:513, 255:513]).max() <= 4, source
    # 8-bit: as stored (resized only); MONOCHROME1: bright = dense, so the high stored corner is dark.
    _, eight = _display(imported, "eight.png")
    assert eight[0, 0] == 0 and eight[-1, -1] == 255
    _, mono1 = _display(imported, "mono1.dcm")
    assert mono1[0, 0] > 250 and mono1[-1, -1] < 5
    # The DICOM's window, kept in the image's metadata, is what the rendition shows.
    image, windowed = _display(imported, "windowed.dcm")
    voi = image.metadata["dicom"]["voi"]
    assert voi["y"] == [0.0, 1.0] and voi["x"][0] == pytest.approx((1000 - 0.5) / 4095 * 65535, abs=0.01)
    assert not np.array_equal(windowed, display_pixels(read_png(image.file.name)))  # not the tissue window


def test_make_renditions_fills_in_missing_ones_and_force_replaces_them_with_their_pyramids(media_root: Path) -> None:
    old = ImageFactory(pixels=_ramp(np.uint16, 40000))
    assert not old.display
    call_command("make_renditions", stdout=io.StringIO())
    old.refresh_from_db()
    first = old.display.name
    assert read_png(first).shape == display_size(H, W)
    folder = deepzoom_folder(old)
    deepzoom_ensure(old)
    assert media_path(f"{folder}/image.dzi").is_file()
    out = io.StringIO()
    call_command("make_renditions", "--force", "--dataset", str(old.dataset_id), stdout=out)
    old.refresh_from_db()
    assert old.display.name != first and "1 renditions made" in out.getvalue()
    assert not media_path(first).exists() and not media_path(folder).exists()
    call_command("make_renditions", "--pyramids", stdout=io.StringIO())  # the new rendition's pyramid, now
    old.refresh_from_db()
    assert media_path(f"{deepzoom_folder(old)}/image.dzi").is_file()


# ------------------------------------------------------------------ deep zoom files over HTTP


def _jpeg(response) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(b"".join(response.streaming_content)))).astype(np.int32)


def test_descriptor_and_tiles_are_the_windowed_original(client, expert_user) -> None:
    pixels = _ramp(np.uint16, 50000)
    image = ImageFactory(pixels=pixels)
    client.force_login(expert_user)
    response = client.get(f"/images/{image.pk}/deepzoom.dzi")
    assert response.status_code == 200 and response["Content-Type"] == "application/xml"
    assert f'<Size Width="{W}" Height="{H}"/>' in b"".join(response.streaming_content).decode()
    image.refresh_from_db()
    version = Path(image.display.name).stem
    full = display_uint8(pixels)
    # Level 11 is full resolution (2 ** 11 >= 1300): tile (1, 2) = columns 255..512, rows 511..768.
    tile = client.get(f"/images/{image.pk}/deepzoom_files/11/1_2.jpg?v={version}")
    assert tile.status_code == 200 and tile["Content-Type"] == "image/jpeg"
    assert "immutable" in tile["Cache-Control"]
    got = _jpeg(tile)
    assert got.shape == (258, 258)
    assert np.abs(got - full[511:769, 255:513]).max() <= 3  # JPEG of a smooth ramp: a few grey levels
    # Unversioned URLs revalidate; a tile off the image is a 404.
    assert "no-cache" in client.get(f"/images/{image.pk}/deepzoom_files/11/0_0.jpg")["Cache-Control"]
    assert client.get(f"/images/{image.pk}/deepzoom_files/11/9_9.jpg").status_code == 404
    # The pyramid lives in media but is reached only through these views.
    assert client.get(f"/media/{deepzoom_folder(image)}/image.dzi").status_code == 404


def test_deep_zoom_needs_a_session_and_outlines_follow_the_truth_rule(client, expert_user, admin_user) -> None:
    hips = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    hip = ImageFactory(dataset=hips, overlay="overlays/x.png")
    mask = np.zeros((hip.height, hip.width), dtype=bool)
    mask[10:30, 10:30] = True
    FindingFactory(image=hip, mask_array=mask, pathology="malignant")
    assert client.get(f"/images/{hip.pk}/deepzoom.dzi").status_code == 302  # to the sign-in page
    client.force_login(expert_user)
    assert client.get(f"/images/{hip.pk}/deepzoom.dzi").status_code == 200
    assert client.get(f"/images/{hip.pk}/outlines.png").status_code == 404  # experts are blind to hip truth
    client.force_login(admin_user)
    outlines = client.get(f"/images/{hip.pk}/outlines.png")
    assert outlines.status_code == 200
    drawn = np.asarray(PILImage.open(io.BytesIO(b"".join(outlines.streaming_content))))
    assert drawn.shape[2] == 4 and drawn[..., 3].any()
