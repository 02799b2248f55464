"""A browser import cancelled in a real Celery worker: the job ends cancelled with no dataset, no image rows,
no media files and no staged upload left (the worker's side of the cancel, which the page's button asks for)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from annotator.models import Dataset, Image, Job
from annotator.services.import_jobs import dataset_import_job_create
from tests.annotator.import_zips import dataset_folder, folder_zip
from tests.annotator.test_worker_integration import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_cancel_seen_by_the_worker_leaves_nothing(celery_worker_process, media_root: Path, tmp_path: Path):
    upload = SimpleUploadedFile("cases.zip", folder_zip(dataset_folder(tmp_path / "cases")))
    with transaction.atomic():  # asked before the worker can claim it: it is seen at the job's first step
        job = dataset_import_job_create(params={"name": "Cancelled"}, uploaded=upload, created_by=None)
        Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    staged = Path(settings.IMPORT_STAGING_DIR) / job.params["upload"]
    assert staged.is_dir()

    finished = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).first())
    assert finished.status == Job.Status.CANCELLED and finished.started_at is not None  # the worker ran it
    assert finished.message == "Cancelled"
    assert not Dataset.objects.exists() and not Image.objects.exists()
    assert [p for p in media_root.rglob("*") if p.is_file()] == []
    assert not staged.exists()
