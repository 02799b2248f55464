"""The job page and what a worker records for it: the device, a bounded log tail written with the job's own
writes, the error with its traceback for admins only (the first line for everyone else), the page's facts
and curve containers, the dashboard's link, and resuming through the API and the page."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotator.models import Job
from annotator.services.job_log import JOB_LOG_LINES, JobLog, job_log_capture
from annotator.services.job_runs import job_run
from annotator.services.job_state import JobReporter
from annotator.services.jobs import job_create
from tests.factories import DatasetFactory, ImageFactory, JobFactory, client_for

pytestmark = pytest.mark.django_db

HISTORY = [
    {"epoch": 1, "train_loss": 1.1, "val_loss": 1.0, "val_auc": {"normal": 0.6, "benign": 0.5, "malignant": 0.7}},
    {"epoch": 2, "train_loss": 0.8, "val_loss": 0.9, "val_auc": {"normal": 0.7, "benign": 0.6, "malignant": 0.8}},
]


def _failed_training() -> Job:
    """A training job run by job_run on a dataset without patches: it fails in its runner, with a traceback."""
    job = JobFactory(kind=Job.Kind.TRAIN, dataset=DatasetFactory(name="no-patches"), params={"epochs": 1})
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    job.refresh_from_db()
    return job


def test_a_run_records_its_device_and_a_log_tail_ending_with_its_end(django_capture_on_commit_callbacks):
    dataset = DatasetFactory()
    pixels = np.zeros((128, 128), dtype=np.uint8)
    pixels[:, :96] = 170
    for _ in range(3):
        ImageFactory(dataset=dataset, pixels=pixels, label="normal")
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    job.refresh_from_db()
    assert job.device == "cpu"
    lines = job.log.splitlines()
    assert len(lines) >= 2 and lines[-1].endswith("INFO    succeeded: Done")
    assert job.message not in ("", "Started")


def test_a_failed_run_logs_its_error_in_one_line_and_keeps_the_traceback_in_the_error():
    job = _failed_training()
    text = "at least 2 are needed to carve out a validation set"
    assert text in job.error and "Traceback (most recent call last)" in job.error
    assert job.device == "cpu"  # a training job on a CPU-only worker (DEEPMINER_DEVICE=auto)
    assert any("ERROR" in line and text in line for line in job.log.splitlines())
    assert job.log.splitlines()[-1].split(maxsplit=2)[2].startswith("failed: Failed: dataset 'no-patches'")
    assert "Traceback" not in job.log and 'File "' not in job.log  # every signed-in user reads the log


def test_the_log_keeps_the_last_lines_of_the_jobs_own_thread_only():
    log = JobLog()
    for index in range(JOB_LOG_LINES + 50):
        log.write(f"line {index}")
    lines = log.text().splitlines()
    assert len(lines) == JOB_LOG_LINES and lines[-1].endswith("line 249") and lines[0].endswith("line 50")
    assert log.pending() is not None and log.pending() is None  # once per change

    import threading

    with job_log_capture() as captured:
        logging.getLogger("mining.anything").warning("from the job: %s", 42)
        other = threading.Thread(target=lambda: logging.getLogger("celery").warning("another thread"))
        other.start()
        other.join()
    logging.getLogger("mining.anything").warning("after the job")
    assert [line.split(maxsplit=1)[1] for line in captured.text().splitlines()] == ["WARNING from the job: 42"]


def test_log_lines_cost_no_query_of_their_own_they_go_with_the_progress_writes():
    job = JobFactory(status=Job.Status.RUNNING)
    with job_log_capture() as log:
        reporter = JobReporter(job_id=job.pk, log=log, min_interval=0)
        with CaptureQueriesContext(connection) as queries:
            for index in range(30):
                logging.getLogger("annotator.test").warning("line %d", index)
            reporter.progress(1, 4, "step one")
            reporter.progress(2, 4, "step two")
    assert len(queries) == 2  # one UPDATE per progress write, none per logged line
    job.refresh_from_db()
    lines = job.log.splitlines()
    assert len(lines) == 32 and lines[-1].endswith("step two") and lines[0].endswith("WARNING line 0")


def test_admins_read_the_traceback_everyone_else_the_first_line(admin_user, expert_user, researcher_user):
    job = _failed_training()
    first_line = job.error.split("\n", 1)[0]
    assert client_for(admin_user).get(f"/api/jobs/{job.pk}/").json()["error"] == job.error
    for user in (expert_user, researcher_user):
        data = client_for(user).get(f"/api/jobs/{job.pk}/").json()
        assert data["error"] == first_line and "Traceback" not in str(data)
        assert data["device"] == "cpu" and data["log"] == job.log and data["resumable"] is False
        page = client_for(user).get(f"/jobs/{job.pk}/").content.decode()
        assert first_line.replace("'", "&#x27;") in page and "Traceback" not in page
        listed = client_for(user).get("/api/jobs/").json()["results"]
        assert [row["error"] for row in listed if row["id"] == job.pk] == [first_line]
        assert "Traceback" not in client_for(user).get("/").content.decode()  # the dashboard's message tooltip
    admin_page = client_for(admin_user).get(f"/jobs/{job.pk}/").content.decode()
    assert "Traceback (most recent call last)" in admin_page


def test_the_page_shows_the_runs_facts_and_params_and_a_training_jobs_curves(admin_user, expert_user):
    job = JobFactory(
        kind=Job.Kind.TRAIN,
        status=Job.Status.RUNNING,
        params={"epochs": 5, "architecture": "resnet18"},
        result={"history": HISTORY, "epochs": 5, "checkpointed_epoch": 2},
        worker="gpu-box-7:4242",
        device="cuda:1",
        log="12:00:00 INFO    epoch 2/5 · batch 3/9 · loss 0.812",
    )
    response = client_for(expert_user).get(f"/jobs/{job.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    for shown in ("Training #", "gpu-box-7:4242", "cuda:1", "epoch 2/5 · batch 3/9", "architecture", "resnet18"):
        assert shown in page, shown
    assert 'id="curve-loss"' in page and 'id="curve-auc"' in page
    assert response.context["data"]["result"]["history"] == HISTORY  # the curves' first drawing
    assert 'data-field="resume"' not in page  # no admin controls for an expert
    admin = client_for(admin_user).get(f"/jobs/{job.pk}/").content.decode()
    assert f'action="/jobs/{job.pk}/cancel/"' in admin
    assert admin.split('data-field="resume"')[1].startswith(" hidden>")  # running: nothing to resume yet
    dashboard = client_for(expert_user).get("/").content.decode()
    assert f'href="/jobs/{job.pk}/"' in dashboard
    assert client_for(expert_user).get("/jobs/999999/").status_code == 404


def test_resume_through_the_api_and_the_page_refuses_what_cannot_be_resumed(admin_user, expert_user):
    job = _failed_training()  # failed before any epoch: nothing checkpointed
    answer = client_for(admin_user).post(f"/api/jobs/{job.pk}/resume/")
    assert answer.status_code == 409 and "no checkpointed epoch to resume from" in answer.json()["message"]
    assert client_for(expert_user).post(f"/api/jobs/{job.pk}/resume/").status_code == 403
    page = client_for(admin_user).post(f"/jobs/{job.pk}/resume/", follow=True)
    assert page.redirect_chain == [(f"/jobs/{job.pk}/", 302)]
    assert "no checkpointed epoch to resume from" in page.content.decode()
    assert client_for(expert_user).post(f"/jobs/{job.pk}/resume/").status_code == 403
    assert Job.objects.count() == 1
