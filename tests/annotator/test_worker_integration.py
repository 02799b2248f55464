"""End to end through the configured broker and a real `celery worker` process (no eager mode)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from django_celery_results.models import TaskResult
from rest_framework.test import APIClient

from annotator.models import Job, Patch
from tests.factories import DatasetFactory, FindingFactory, ImageFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def _dataset(n_images: int, side: int = 256):
    dataset = DatasetFactory(name=f"worker-test-{n_images}")
    pixels = np.zeros((side, side), dtype=np.uint8)
    pixels[:, : side * 3 // 4] = 170
    for index in range(n_images):
        image = ImageFactory(dataset=dataset, pixels=pixels, label="benign" if index % 2 else "normal")
        if index % 2:
            mask = np.zeros((side, side), dtype=bool)
            mask[side // 2 - 20 : side // 2 + 20, 40:80] = True
            FindingFactory(image=image, pathology="benign", mask_array=mask)
    return dataset


def test_a_job_posted_to_the_api_runs_to_success_in_a_real_worker(celery_worker_process, admin_user):
    dataset = _dataset(6)
    client = APIClient()
    client.force_authenticate(admin_user)
    response = client.post("/api/jobs/create/", {"kind": "extract_patches", "dataset": dataset.pk}, format="json")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]

    job = wait_for(lambda: Job.objects.filter(pk=job_id, status__in=Job.FINISHED).first())
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == 1.0
    assert job.worker and job.heartbeat_at and job.started_at <= job.finished_at
    assert Patch.objects.filter(image__dataset=dataset).count() == job.result["patches"] == 6 * 42
    assert Patch.objects.filter(image__dataset=dataset, label="benign").exists()
    # The worker's own record of the task lands in the database result backend.
    result = wait_for(lambda: TaskResult.objects.filter(task_id=job.celery_id, status="SUCCESS").first())
    assert "succeeded" in result.result

    detail = client.get(f"/api/jobs/{job_id}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 1.0


def test_a_killed_worker_leaves_the_job_failed_with_a_clear_message(settings, media_root, tmp_path, admin_user):
    from annotator.selectors import job_list
    from annotator.services.jobs import job_create
    from tests.conftest import WorkerProcess, _purge_broker

    settings.JOB_HEARTBEAT_TIMEOUT = 3
    dataset = _dataset(400, side=512)
    _purge_broker()
    worker = WorkerProcess(media_root, tmp_path / "worker.log")
    try:
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset, created_by=admin_user)
        wait_for(lambda: Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, progress__gt=0).exists())
        worker.kill()
    finally:
        worker.stop()
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING  # nobody told the database yet
    time.sleep(settings.JOB_HEARTBEAT_TIMEOUT + 1)
    list(job_list())  # any job listing sweeps stale jobs first
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "stopped responding" in job.error
    assert Patch.objects.filter(image__dataset=dataset).count() == 0  # nothing half-written is visible
