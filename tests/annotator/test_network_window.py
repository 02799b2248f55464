"""The grey-level window reaches the network (services.network_input): an image or upload that carries a
DICOM VOI is seen through it by models trained now (``patch_params["window"] == "dicom-voi"``), and through
the percentile window by models trained before, in explanations, sentences' features, whole-image splits
and patch stores alike; a dataset without any VOI keeps one store for both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotator.files import media_path, read_png
from annotator.models import Image, Job
from annotator.services.explanations import explanation_get
from annotator.services.image_data import image_split_load, resized
from annotator.services.patch_data import patch_split_load
from annotator.services.patches import patches_extract
from annotator.services.uploads import upload_create
from mining.imaging import read_image
from mining.patch_store import PatchStore
from mining.patches import PatchParams
from mining.phantoms import generate_mammogram_phantoms
from mining.progress import never_cancelled, no_progress
from mining.windowing import WINDOW_PERCENTILE, WINDOW_VOI, percentile_uint8, voi_uint8
from tests.factories import DatasetFactory, ImageFactory, UserFactory, random_model
from tests.mining.test_imaging import write_dicom

pytestmark = pytest.mark.django_db
CLASSES = ["normal", "benign", "malignant"]
WHOLE = {"input_size": 64, "side_fraction": 1.0, "whole_image": True}  # global pooling: no tissue mask
# A narrow window over the middle of the phantoms' 16-bit range: far from their percentile window.
VOI = {"x": [20000.0, 36000.0], "y": [0.0, 1.0]}


def _deep(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.uint16) * 200 + 1000).astype(np.uint16)


def _phantoms(n: int, seed: int = 5) -> list[np.ndarray]:
    return [_deep(p.pixels) for p in generate_mammogram_phantoms(n, seed=seed, width=128, height=160)]


def _scores(trained, image=None, upload=None) -> dict[str, float]:
    return dict(explanation_get(trained=trained, image=image, upload=upload).scores)


def test_explanations_see_the_voi_with_new_models_and_the_percentile_window_with_older_ones(media_root: Path) -> None:
    dataset = DatasetFactory(classes=CLASSES)
    pixels = _phantoms(1)[0]
    with_voi = ImageFactory(dataset=dataset, pixels=pixels, metadata={"dicom": {"voi": VOI}})
    windowed = ImageFactory(dataset=dataset, pixels=voi_uint8(pixels, VOI))  # 8 bits: seen as stored
    plain = ImageFactory(dataset=dataset, pixels=pixels)
    new = random_model(dataset=dataset, patch_params={**WHOLE, "window": WINDOW_VOI})
    older = random_model(dataset=dataset, patch_params=dict(WHOLE))  # the same weights (seed 0), no window
    assert _scores(new, with_voi) == _scores(new, windowed)
    assert _scores(older, with_voi) == _scores(older, plain) == _scores(new, plain)
    assert _scores(new, with_voi) != _scores(older, with_voi)


def test_an_uploaded_dicom_keeps_its_window_for_the_network(media_root: Path, tmp_path: Path) -> None:
    stored = _phantoms(1, seed=6)[0] // 16  # 12 bits stored
    path = write_dicom(tmp_path / "w.dcm", stored, bits_stored=12, WindowCenter="1500", WindowWidth="1000")
    upload = upload_create(
        owner=UserFactory(), uploaded=SimpleUploadedFile("w.dcm", path.read_bytes(), "application/dicom")
    )
    assert upload.voi == read_image(path, max_pixels=10**7).metadata["voi"]
    dataset = DatasetFactory(classes=CLASSES)
    as_seen = ImageFactory(dataset=dataset, pixels=voi_uint8(read_png(upload.file.name), upload.voi))
    new = random_model(dataset=dataset, patch_params={**WHOLE, "window": WINDOW_VOI})
    assert _scores(new, upload=upload) == _scores(new, as_seen)
    older = random_model(dataset=dataset, patch_params=dict(WHOLE))
    assert _scores(older, upload=upload) != _scores(new, upload=upload)


def test_whole_image_splits_use_the_window_asked_for(media_root: Path) -> None:
    dataset = DatasetFactory(classes=CLASSES)
    first, second = _phantoms(2)
    ImageFactory(dataset=dataset, pixels=first, metadata={"dicom": {"voi": VOI}}, split="test")
    ImageFactory(dataset=dataset, pixels=second, split="test")
    voi = image_split_load(dataset=dataset, splits=["test"], classes=CLASSES, size=32, window=WINDOW_VOI)
    percentile = image_split_load(dataset=dataset, splits=["test"], classes=CLASSES, size=32, window=WINDOW_PERCENTILE)
    assert voi.crops[0].equal(resized(voi_uint8(first, VOI), 32))
    assert percentile.crops[0].equal(resized(percentile_uint8(first), 32))
    assert not voi.crops[0].equal(percentile.crops[0])
    assert voi.crops[1].equal(percentile.crops[1])  # no VOI: the percentile window either way


def _store_sides(dataset) -> list[str]:
    job = dataset.jobs.get()
    return sorted(p.name for p in media_path(job.result["store"]["folder"]).iterdir())


@pytest.mark.parametrize("voi", [False, True], ids=["no-voi", "voi"])
def test_a_dataset_without_voi_keeps_one_store_for_both_windows(media_root: Path, voi: bool) -> None:
    dataset = DatasetFactory(classes=CLASSES)
    for index, pixels in enumerate(_phantoms(3)):
        metadata = {"dicom": {"voi": VOI}} if voi and index == 0 else {}
        ImageFactory(dataset=dataset, pixels=pixels, metadata=metadata)
    job = Job.objects.create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset, status=Job.Status.SUCCEEDED)
    job.result = patches_extract(dataset=dataset, params=PatchParams(), progress=no_progress, cancelled=never_cancelled)
    job.save(update_fields=["result"])
    side = job.result["store"]["side"]
    assert _store_sides(dataset) == ([f"side{side}-dicom-voi"] if voi else [f"side{side}"])  # the patch job's
    loaded = {
        window: patch_split_load(dataset=dataset, splits=["train"], classes=CLASSES, window=window)
        for window in (WINDOW_VOI, WINDOW_PERCENTILE)
    }
    assert all(isinstance(split.crops, PatchStore) for split in loaded.values())
    assert _store_sides(dataset) == ([f"side{side}", f"side{side}-dicom-voi"] if voi else [f"side{side}"])
    same = np.array_equal(loaded[WINDOW_VOI].crops.numpy(), loaded[WINDOW_PERCENTILE].crops.numpy())
    assert same is not voi
    first = loaded[WINDOW_VOI].table.image_index == 0
    image = Image.objects.get(pk=loaded[WINDOW_VOI].image_ids[0])
    expected = voi_uint8(read_png(image.file.name), VOI) if voi else percentile_uint8(read_png(image.file.name))
    x0, y0, x1, y1 = loaded[WINDOW_VOI].table.boxes[first][0].tolist()
    np.testing.assert_array_equal(loaded[WINDOW_VOI].crops.numpy()[first][0], expected[y0:y1, x0:x1])
