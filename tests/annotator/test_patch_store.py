"""The patch store in media (annotator.services.patch_store): the patch job writes it, patch_split_load
streams from it (the same crops as cropping in memory, any split, shard or side), a re-extraction
replaces it, and a dataset extracted before stores still loads in memory. A seeded training job gives
the same model from the store as from memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from annotator.demo import demo_dataset_create
from annotator.files import read_png
from annotator.models import Image, Job, TrainedModel
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from annotator.services.patch_data import PatchSplit, patch_split_load
from mining.data import crop_table
from mining.networks import checkpoint_load
from mining.patch_store import PatchStore
from mining.windowing import WINDOW_VOI

pytestmark = pytest.mark.django_db
CLASSES = ["normal", "benign", "malignant"]


def _extract(dataset, capture) -> Job:
    with capture(execute=False):
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    return Job.objects.get(pk=job.pk)


@pytest.fixture
def extracted(tmp_path, django_capture_on_commit_callbacks):
    dataset, _ = demo_dataset_create(folder=tmp_path / "phantoms", n_images=12, seed=3, name="store")
    return dataset, _extract(dataset, django_capture_on_commit_callbacks)


def _in_memory(split: PatchSplit, size: int | None = None) -> torch.Tensor:
    images = Image.objects.in_bulk(split.image_ids)
    return crop_table([read_png(images[i].file.name) for i in split.image_ids], split.table, size)


def test_the_patch_job_writes_a_store_that_loading_streams_from(extracted, media_root):
    dataset, job = extracted
    store = job.result["store"]
    side_folder = media_root / store["folder"] / f"side{store['side']}"
    assert (side_folder / "manifest.json").is_file() and len(list(side_folder.glob("chunk*.npy"))) == store["chunks"]
    for splits in (["train"], ["test", "holdout"]):
        split = patch_split_load(dataset=dataset, splits=splits, classes=CLASSES, window=WINDOW_VOI)
        assert isinstance(split.crops, PatchStore) and split.crops.shape[-1] == store["side"]
        assert torch.equal(split.crops[:], _in_memory(split))
    whole = patch_split_load(dataset=dataset, splits=["train"], classes=CLASSES, window=WINDOW_VOI)
    part = patch_split_load(dataset=dataset, splits=["train"], classes=CLASSES, shard=(1, 2), window=WINDOW_VOI)
    assert isinstance(part.crops, PatchStore) and torch.equal(part.crops[:], whole.crops[torch.from_numpy(part.rows)])


def test_another_side_is_written_once_on_first_use(extracted, media_root):
    dataset, job = extracted
    split = patch_split_load(dataset=dataset, splits=["train"], classes=CLASSES, size=64, window=WINDOW_VOI)
    side64 = media_root / job.result["store"]["folder"] / "side64"
    assert isinstance(split.crops, PatchStore) and (side64 / "manifest.json").is_file()
    assert torch.equal(split.crops[:], _in_memory(split, 64))
    written = (side64 / "chunk0.npy").stat().st_mtime_ns
    patch_split_load(dataset=dataset, splits=["test"], classes=CLASSES, size=64, window=WINDOW_VOI)
    assert (side64 / "chunk0.npy").stat().st_mtime_ns == written


def test_a_re_extraction_replaces_the_store(extracted, media_root, django_capture_on_commit_callbacks):
    dataset, first = extracted
    second = _extract(dataset, django_capture_on_commit_callbacks)
    assert second.result["store"]["folder"] != first.result["store"]["folder"]
    assert not (media_root / first.result["store"]["folder"]).exists()
    split = patch_split_load(dataset=dataset, splits=["train"], classes=CLASSES, window=WINDOW_VOI)
    assert isinstance(split.crops, PatchStore) and torch.equal(split.crops[:], _in_memory(split))


def test_a_dataset_extracted_before_stores_loads_in_memory(extracted):
    dataset, job = extracted
    Job.objects.filter(pk=job.pk).update(result={**job.result, "store": None})
    split = patch_split_load(dataset=dataset, splits=["train"], classes=CLASSES, window=WINDOW_VOI)
    assert isinstance(split.crops, torch.Tensor) and torch.equal(split.crops, _in_memory(split))


def test_a_store_of_other_patches_is_not_used(extracted, media_root):
    dataset, job = extracted
    dataset.images.order_by("id").first().patches.order_by("id").first().delete()  # rows the store lacks
    ids = np.load(media_root / job.result["store"]["folder"] / f"side{job.result['store']['side']}" / "patch_ids.npy")
    split = patch_split_load(dataset=dataset, splits=["train", "test", "holdout"], classes=CLASSES, window=WINDOW_VOI)
    assert len(split) == len(ids) - 1 and isinstance(split.crops, PatchStore)  # a subset: still its rows
    assert torch.equal(split.crops[:], _in_memory(split))


def _train(dataset, capture) -> tuple[dict, dict]:
    with capture(execute=False):
        job = job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"epochs": 1, "batch_size": 16, "patch_size": 32})
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    trained = TrainedModel.objects.get(job=job)
    _info, checkpoint = checkpoint_load(trained.checkpoint.path)
    return trained.metrics, checkpoint["state_dict"]


@pytest.mark.slow  # two training jobs: about 90 s on a loaded 2-core machine
def test_a_seeded_training_job_gives_the_same_model_from_the_store(extracted, django_capture_on_commit_callbacks):
    dataset, job = extracted
    metrics, weights = _train(dataset, django_capture_on_commit_callbacks)
    Job.objects.filter(pk=job.pk).update(result={**job.result, "store": None})  # as before stores
    memory_metrics, memory_weights = _train(dataset, django_capture_on_commit_callbacks)
    assert metrics == memory_metrics
    assert weights.keys() == memory_weights.keys()
    assert all(torch.equal(weights[key], memory_weights[key]) for key in weights)


def test_patches_the_store_lacks_load_in_memory(extracted):
    dataset, _ = extracted
    first = dataset.images.order_by("id").first().patches.order_by("id").first()
    first.pk = None  # a row added after the extraction: its crop is in no store
    first.save()
    split = patch_split_load(dataset=dataset, splits=[first.image.split], classes=CLASSES, window=WINDOW_VOI)
    assert isinstance(split.crops, torch.Tensor) and torch.equal(split.crops, _in_memory(split))
