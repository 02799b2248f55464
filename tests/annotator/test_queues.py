"""GPU queue routing through the real broker (issue "Scale out", item 2): with CELERY_GPU_QUEUE set, the
messages of training, mining and batch-explanation jobs land on that queue and patch extraction stays on the
default queue; unset, everything goes to the default queue. Read back from the broker itself."""

from __future__ import annotations

import uuid

import pytest

from annotator.models import Job
from annotator.services.compute import HEAVY_KINDS, job_queue
from annotator.services.jobs import job_create
from config.celery import app
from tests.factories import DatasetFactory, ImageFactory, TrainedModelFactory

pytestmark = pytest.mark.django_db


def _waiting(queue: str) -> list[str]:
    """The job ids of the run_job messages waiting on ``queue`` (drained: the test owns the queue)."""
    ids = []
    with app.connection_for_read() as connection:
        simple = connection.SimpleQueue(queue)
        try:
            while True:
                message = simple.get(block=False)
                ids.append(message.headers["id"])
                message.ack()
        except simple.Empty:
            pass
        finally:
            simple.close()
    return ids


def test_heavy_jobs_go_to_the_gpu_queue_and_light_ones_stay(settings, django_capture_on_commit_callbacks):
    queue = f"gpu-test-{uuid.uuid4().hex[:8]}"  # a queue of this test's own
    settings.CELERY_GPU_QUEUE = queue
    dataset = DatasetFactory()
    ImageFactory(dataset=dataset, split="train", label="normal")
    trained = TrainedModelFactory(dataset=dataset, job__dataset=dataset)
    with django_capture_on_commit_callbacks(execute=True):
        explain = job_create(kind=Job.Kind.EXPLAIN, dataset=dataset, params={"model": trained.pk})
        extract = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset)
    assert _waiting(queue) == [explain.celery_id]
    default = _waiting(app.conf.task_default_queue)
    assert extract.celery_id in default and explain.celery_id not in default


def test_without_a_gpu_queue_every_kind_goes_to_the_default_queue(settings):
    settings.CELERY_GPU_QUEUE = ""
    assert all(job_queue(kind) is None for kind in Job.Kind.values)
    settings.CELERY_GPU_QUEUE = "gpu"
    assert {kind for kind in Job.Kind.values if job_queue(kind) == "gpu"} == set(HEAVY_KINDS)
    assert {Job.Kind.TRAIN, Job.Kind.MINE, Job.Kind.EXPLAIN} == HEAVY_KINDS
