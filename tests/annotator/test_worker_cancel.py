"""Cancel and failure inside a real `celery worker` process, mid-run: a training job and a mining job asked
to stop end `cancelled` within seconds and leave no row and no file (checkpoint, crops, mask sprites, shard
states); a sharded mining job one of whose shards fails ends `failed` and the other shard's files go too."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import pytest

from annotator.demo import demo_dataset_create
from annotator.files import media_path
from annotator.models import Dataset, Image, Job, Patch, TopActivation, TrainedModel, Unit
from annotator.services.job_runs import job_run
from annotator.services.job_state import job_cancel
from annotator.services.jobs import job_create
from tests.annotator.test_import_dataset import media_files as all_media_files
from tests.annotator.test_worker_integration import wait_for
from tests.factories import random_model

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PATCH_SIZE = 64


def media_files(root: Path) -> list[Path]:
    """Media files but the dataset's patch store: a job asking for a new patch side writes that side's
    store once, for every later job too (it is the dataset's, not the job's output)."""
    return [path for path in all_media_files(root) if "patchstore" not in path.relative_to(root).parts]


CANCEL_WITHIN = 20  # seconds from the request to `cancelled`: a batch and a cancel check, with a busy machine's slack


@pytest.fixture
def phantoms(tmp_path: Path) -> Dataset:
    """24 demo phantoms with their patches, extracted in this process: ask for it before the worker,
    whose start purges the broker of the extraction's own message."""
    dataset, _ = demo_dataset_create(folder=tmp_path / "phantoms", n_images=24, seed=7, name="cancel-test")
    assert job_run(job_id=job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset).pk) == Job.Status.SUCCEEDED
    return dataset


def _random_model(dataset: Dataset) -> TrainedModel:
    """A model with a real checkpoint of a randomly initialised ResNet-18: mining needs weights, not skill."""
    return random_model(dataset=dataset, patch_params={"input_size": PATCH_SIZE})


def _cancel_mid_run(job: Job) -> float:
    """Wait until the worker is into the job's batches, ask it to stop as the API does; seconds it took."""
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, progress__gt=0).exists(), timeout=120)
    asked = time.monotonic()
    job_cancel(job=job)
    wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).exists(), timeout=2 * CANCEL_WITHIN)
    return time.monotonic() - asked


def test_a_training_job_cancelled_mid_epoch_in_a_worker_stops_quickly_and_keeps_nothing(
    phantoms, celery_worker_process, media_root
):
    before = set(media_files(media_root))
    job = job_create(
        kind=Job.Kind.TRAIN, dataset=phantoms, params={"epochs": 5, "patch_size": PATCH_SIZE, "batch_size": 16}
    )
    took = _cancel_mid_run(job)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED, job.error
    assert took < CANCEL_WITHIN
    assert not TrainedModel.objects.exists()
    assert set(media_files(media_root)) == before  # no checkpoint


def test_a_mining_job_cancelled_mid_pass_in_a_worker_stops_quickly_and_keeps_nothing(
    phantoms, celery_worker_process, media_root
):
    trained = _random_model(phantoms)
    before = set(media_files(media_root))
    params = {"model": trained.pk, "splits": ["train"], "top_n": 10, "batch_size": 4}
    job = job_create(kind=Job.Kind.MINE, dataset=phantoms, params=params)
    took = _cancel_mid_run(job)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED, job.error
    assert took < CANCEL_WITHIN
    assert (Unit.objects.count(), TopActivation.objects.count()) == (0, 0)
    assert not Patch.objects.exclude(crop="").exists()
    trained.refresh_from_db()
    assert not trained.mining
    assert set(media_files(media_root)) == before  # no crop, mask sprite or shard state


def test_a_failing_shard_fails_the_mining_job_and_the_other_shards_files_are_deleted(
    phantoms, celery_worker_process, media_root
):
    trained = _random_model(phantoms)
    # A finding mask of the last mined image disappears: the second shard (the last images) cannot tally
    # its second pass, while the first, run before it by the one worker, wrote its files in both passes.
    last = Image.objects.filter(dataset=phantoms, split="train", patches__isnull=False).order_by("-pk").first()
    mask = last.findings.filter(concepts__isnull=False).first().mask.name
    media_path(mask).unlink()
    before = set(media_files(media_root))
    params = {"model": trained.pk, "splits": ["train"], "top_n": 10, "shards": 2}
    job = job_create(kind=Job.Kind.MINE, dataset=phantoms, params=params)
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).first(), timeout=180)
    assert job.status == Job.Status.FAILED
    assert "FileNotFoundError" in job.error and mask in job.error
    # The first shard did write its files, then the second failed.
    assert re.search(r"deepminer\.mine_shard\[[^]]+\] succeeded", celery_worker_process.log())
    with contextlib.suppress(AssertionError):  # the failing shard's cleanup, just after it marked the job
        wait_for(lambda: set(media_files(media_root)) == before, timeout=30)
    assert sorted(set(media_files(media_root)) - before) == []
    assert (Unit.objects.count(), TopActivation.objects.count()) == (0, 0)
    assert not Patch.objects.exclude(crop="").exists()
