"""The batch explanation job through a real `celery worker` process: it explains every image of the split and
summarises it on the model; cancelled mid-run it ends `cancelled` quickly, keeps the explanations it finished
(each complete, with its files) and writes no summary."""

from __future__ import annotations

import time

import pytest

from annotator.files import media_path
from annotator.models import Explanation, Job
from annotator.services.job_state import job_cancel
from annotator.services.jobs import job_create
from mining.phantoms import generate_mammogram_phantoms
from tests.annotator.test_explanations import CLASSES
from tests.annotator.test_worker_integration import wait_for
from tests.factories import DatasetFactory, ImageFactory, random_model

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def model_and_split(media_root):
    dataset = DatasetFactory(classes=CLASSES, name="worker-explain")
    trained = random_model(dataset=dataset)
    for index, phantom in enumerate(generate_mammogram_phantoms(24, seed=8)):
        ImageFactory(dataset=dataset, pixels=phantom.pixels, label=phantom.label, split="test", source_name=f"{index}")
    return dataset, trained


def test_a_batch_explanation_runs_in_a_worker_and_a_second_one_cancels(model_and_split, celery_worker_process):
    dataset, trained = model_and_split
    job = job_create(kind=Job.Kind.EXPLAIN, dataset=dataset, params={"model": trained.pk, "split": "test"})
    wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).exists(), timeout=300)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert Explanation.objects.filter(job=job).count() == 24
    trained.refresh_from_db()
    assert trained.explanations["test"]["images"] == 24 and job.result["split"] == "test"

    again = job_create(
        kind=Job.Kind.EXPLAIN, dataset=dataset, params={"model": trained.pk, "split": "test", "method": "smoothgrad"}
    )
    wait_for(lambda: Job.objects.filter(pk=again.pk, status=Job.Status.RUNNING, progress__gt=0).exists(), timeout=120)
    asked = time.monotonic()
    job_cancel(job=again)
    wait_for(lambda: Job.objects.filter(pk=again.pk, status__in=Job.FINISHED).exists(), timeout=60)
    again.refresh_from_db()
    assert again.status == Job.Status.CANCELLED, again.error
    assert time.monotonic() - asked < 30
    kept = Explanation.objects.filter(job=again)
    assert 0 < kept.count() < 24  # stopped part-way; what it finished stays, complete
    for explanation in kept:
        assert media_path(explanation.class_map.name).is_file()
        assert all(media_path(unit["map"]).is_file() for unit in explanation.units)
    trained.refresh_from_db()
    assert trained.explanations["test"]["method"] == "cam"  # the cancelled run wrote no summary
