"""DEEPMINER_PRECISION on the worker side: what it resolves to, that a bad value fails the job with the
reason, and that training and mining jobs record the precision their forward passes ran in (bf16 forced on
the CPU, the stand-in for a GPU worker's autocast)."""

from __future__ import annotations

import pytest

from annotator.errors import ApplicationError
from annotator.models import Job, TrainedModel
from annotator.services.compute import worker_precision
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from tests.annotator.test_training_job import phantom_dataset  # noqa: F401  (fixture: 40 phantoms with patches)

pytestmark = pytest.mark.django_db


def test_auto_is_fp32_on_a_cpu_worker_and_a_forced_value_is_kept(settings):
    settings.DEEPMINER_DEVICE = "cpu"
    settings.DEEPMINER_PRECISION = "auto"
    assert worker_precision().name == "fp32"
    settings.DEEPMINER_PRECISION = "BF16"
    assert (worker_precision().name, worker_precision().device_type) == ("bf16", "cpu")
    settings.DEEPMINER_PRECISION = "int8"
    with pytest.raises(ApplicationError, match="DEEPMINER_PRECISION must be one of auto, fp32, bf16, fp16"):
        worker_precision()


def _train(dataset, django_capture_on_commit_callbacks) -> Job:
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"epochs": 1, "patch_size": 64})
    job_run(job_id=job.pk)
    return Job.objects.get(pk=job.pk)


def test_a_bad_precision_fails_the_training_job_saying_why(
    settings,
    phantom_dataset,  # noqa: F811  (the imported fixture)
    django_capture_on_commit_callbacks,
):
    settings.DEEPMINER_PRECISION = "fp8"
    job = _train(phantom_dataset, django_capture_on_commit_callbacks)
    assert job.status == Job.Status.FAILED and "DEEPMINER_PRECISION must be one of" in job.error
    assert not TrainedModel.objects.filter(job=job).exists()


@pytest.mark.slow
def test_training_and_mining_jobs_record_the_precision_they_ran_in(
    settings,
    phantom_dataset,  # noqa: F811  (the imported fixture)
    django_capture_on_commit_callbacks,
):
    settings.DEEPMINER_PRECISION = "bf16"
    train_job = _train(phantom_dataset, django_capture_on_commit_callbacks)
    assert train_job.status == Job.Status.SUCCEEDED, train_job.error
    assert train_job.result["precision"] == "bf16"
    trained = TrainedModel.objects.get(job=train_job)
    with django_capture_on_commit_callbacks(execute=False):
        mine = job_create(kind=Job.Kind.MINE, dataset=phantom_dataset, params={"model": trained.pk, "top_n": 12})
    assert job_run(job_id=mine.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=mine.pk).error
    trained.refresh_from_db()
    assert trained.mining["precision"] == "bf16" and Job.objects.get(pk=mine.pk).result["precision"] == "bf16"
    assert trained.units.exclude(selected_for="").exists()
