"""The job life cycle, run in-process: create/enqueue on commit, run, replace results, fail, cancel, stale heartbeat."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from annotator.models import Job, Patch
from annotator.selectors import job_list
from annotator.services.job_kinds import JOB_KINDS, JobKind
from annotator.services.job_runs import job_run
from annotator.services.job_state import JobReporter, Sharded, job_cancel, job_heartbeat, jobs_fail_stale
from annotator.services.jobs import job_create
from tests.factories import DatasetFactory, FindingFactory, ImageFactory, JobFactory

pytestmark = pytest.mark.django_db


def _breast_image() -> np.ndarray:
    """A 256-wide image whose left 3/4 is bright tissue: 64-px patches, stride 32."""
    pixels = np.zeros((256, 256), dtype=np.uint8)
    pixels[:, :192] = 180
    return pixels


@pytest.fixture
def dataset_with_lesion():
    dataset = DatasetFactory()
    image = ImageFactory(dataset=dataset, pixels=_breast_image(), label="malignant")
    mask = np.zeros((256, 256), dtype=bool)
    mask[100:140, 40:80] = True  # a 40x40 lesion: fully inside several 64-px patches
    FindingFactory(image=image, pathology="malignant", mask_array=mask)
    ImageFactory(dataset=dataset, pixels=_breast_image(), label="normal", split="test")
    return dataset


def test_job_is_enqueued_only_when_the_transaction_commits(django_capture_on_commit_callbacks, dataset_with_lesion):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset_with_lesion)
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert len(job.celery_id) == 32


def test_unknown_kind_is_refused(dataset_with_lesion):
    from annotator.errors import ApplicationError

    with pytest.raises(ApplicationError, match="unknown job kind"):
        job_create(kind="teleport", dataset=dataset_with_lesion)


def test_every_job_kind_has_a_runner_and_a_validator():
    assert set(JOB_KINDS) == set(Job.Kind.values)


def test_a_sharded_job_run_outside_a_worker_fails_with_a_clear_message(monkeypatch, dataset_with_lesion):
    monkeypatch.setitem(
        JOB_KINDS,
        "extract_patches",
        JobKind(run=lambda job, reporter: Sharded(shards=2), validate=lambda params, dataset: params),
    )
    job = JobFactory(dataset=dataset_with_lesion)
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    assert "split into 2 shards: it needs a worker" in Job.objects.get(pk=job.pk).error
    handed: list[tuple[int, int]] = []
    second = JobFactory(dataset=dataset_with_lesion)
    assert job_run(job_id=second.pk, fan_out=lambda job_id, shards: handed.append((job_id, shards))) == "running"
    assert handed == [(second.pk, 2)]
    assert Job.objects.get(pk=second.pk).status == Job.Status.RUNNING  # the shards' merge ends it


def test_patch_extraction_runs_to_success_with_real_labels(dataset_with_lesion):
    job = JobFactory(dataset=dataset_with_lesion)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.progress == 1.0
    assert job.started_at and job.finished_at and job.heartbeat_at and job.worker
    # Grid: x in {0,32,...,192}, y in {0,...,192} -> 7 x 7 boxes; tissue is x < 192, so boxes with
    # x0 <= 160 have >= 50% tissue (x0 = 160 has exactly 50%) -> 6 columns x 7 rows = 42 per image.
    assert Patch.objects.filter(image__dataset=dataset_with_lesion).count() == 84
    malignant = Patch.objects.filter(label="malignant")
    # The 40x40 lesion (x 40-80, y 100-140, 1600 px) has >= 30% (480 px) of its area in these boxes:
    # overlaps 24x28, 40x28, 24x40, 40x40, 16x40 and, exactly at the boundary, 40x12 = 480.
    assert {(p.x0, p.y0) for p in malignant} == {(0, 64), (32, 64), (0, 96), (32, 96), (64, 96), (32, 128)}
    assert job.result["patches"] == 84
    assert job.result["by_split"]["train"] == {"malignant": 6, "normal": 36}


def test_rerun_replaces_patches_and_a_second_delivery_is_a_no_op(dataset_with_lesion):
    first = JobFactory(dataset=dataset_with_lesion)
    job_run(job_id=first.pk)
    # A redelivered message for a finished job does nothing.
    assert job_run(job_id=first.pk) == Job.Status.SUCCEEDED
    second = JobFactory(dataset=dataset_with_lesion, params={"side_fraction": 0.5})
    job_run(job_id=second.pk)
    # 128-px patches, stride 64 on 256x256: x0 in {0, 64, 128}, y0 in {0, 64, 128}; x0=128 has 50% tissue.
    assert Patch.objects.filter(image__dataset=dataset_with_lesion).count() == 2 * 9
    assert set(Patch.objects.values_list("x1", flat=True).distinct()) == {128, 192, 256}


def test_failure_keeps_the_error_text():
    job = JobFactory(dataset=DatasetFactory())  # no images
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "has no images" in job.error
    assert job.message.startswith("Failed: dataset")


def test_bad_params_fail_with_a_clear_message(dataset_with_lesion):
    job = JobFactory(dataset=dataset_with_lesion, params={"min_tissue": 1.5})
    job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "min_tissue must be in (0, 1]" in job.error
    assert Patch.objects.count() == 0


def test_cancel_a_queued_job_never_runs_it(dataset_with_lesion):
    job = JobFactory(dataset=dataset_with_lesion)
    job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job_run(job_id=job.pk) == Job.Status.CANCELLED
    assert Patch.objects.count() == 0


def test_cancel_a_running_job_stops_it_at_the_next_check_and_keeps_nothing(dataset_with_lesion):
    job = JobFactory(dataset=dataset_with_lesion)
    # The job is asked to stop after it was claimed: flag it the moment it reports progress.
    original = JobReporter.progress

    def progress_then_cancel(self: JobReporter, done: int, total: int, message: str = "") -> None:
        original(self, done, total, message)
        Job.objects.filter(pk=self.job_id).update(cancel_requested=True)
        self.min_interval = 0  # look at the flag on the next check

    JobReporter.progress = progress_then_cancel  # type: ignore[method-assign]
    try:
        assert job_run(job_id=job.pk) == Job.Status.CANCELLED
    finally:
        JobReporter.progress = original  # type: ignore[method-assign]
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert Patch.objects.count() == 0


def test_cancel_a_finished_job_is_a_conflict(dataset_with_lesion):
    from annotator.errors import ApplicationError

    job = JobFactory(dataset=dataset_with_lesion, status=Job.Status.SUCCEEDED)
    with pytest.raises(ApplicationError) as info:
        job_cancel(job=job)
    assert info.value.status == 409


def test_stale_heartbeat_marks_running_jobs_failed(settings):
    settings.JOB_HEARTBEAT_TIMEOUT = 60
    now = timezone.now()
    dead = JobFactory(status=Job.Status.RUNNING, heartbeat_at=now - timedelta(seconds=61))
    alive = JobFactory(status=Job.Status.RUNNING, heartbeat_at=now - timedelta(seconds=59))
    done = JobFactory(status=Job.Status.SUCCEEDED, heartbeat_at=now - timedelta(hours=1))
    assert jobs_fail_stale(now=now) == 1
    dead.refresh_from_db(), alive.refresh_from_db(), done.refresh_from_db()
    assert dead.status == Job.Status.FAILED
    assert "stopped responding" in dead.error
    assert alive.status == Job.Status.RUNNING
    assert done.status == Job.Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)  # the heartbeat thread writes on its own connection
def test_a_long_silent_step_keeps_its_job_alive_through_sweeps(monkeypatch, settings):
    settings.JOB_HEARTBEAT_TIMEOUT = 3  # a beat every second (a sixth of the timeout, at least 1 s)
    seen: list[tuple[object, str]] = []

    def silent_step(job: Job, reporter: JobReporter) -> dict:
        # No progress call for longer than the timeout, while the dashboard lists (and sweeps) jobs.
        deadline = time.monotonic() + settings.JOB_HEARTBEAT_TIMEOUT + 1.5
        while time.monotonic() < deadline:
            time.sleep(0.25)
            list(job_list())
            seen.append(Job.objects.values_list("heartbeat_at", "status").get(pk=job.pk))
        return {"silent": True}

    monkeypatch.setitem(JOB_KINDS, "extract_patches", JobKind(run=silent_step, validate=lambda params, dataset: params))
    job = JobFactory()
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    assert {status for _, status in seen} == {Job.Status.RUNNING}  # never swept
    beats = sorted({beat for beat, _ in seen})
    assert len(beats) >= 3, beats  # the heartbeat advanced about once a second
    job.refresh_from_db()
    assert (job.status, job.result) == (Job.Status.SUCCEEDED, {"silent": True})


@pytest.mark.django_db(transaction=True)
def test_once_its_heartbeat_stops_a_running_job_is_swept_as_failed(settings):
    settings.JOB_HEARTBEAT_TIMEOUT = 2
    job = JobFactory(status=Job.Status.RUNNING, heartbeat_at=timezone.now())
    with job_heartbeat(job_id=job.pk):  # a beat every second
        time.sleep(settings.JOB_HEARTBEAT_TIMEOUT + 0.5)
        list(job_list())
        job.refresh_from_db()
        assert job.status == Job.Status.RUNNING  # the beats kept it alive past the timeout
    last_beat = Job.objects.get(pk=job.pk).heartbeat_at
    # Its worker froze or died: the job still says running, but nothing beats any more.
    time.sleep(settings.JOB_HEARTBEAT_TIMEOUT + 0.5)
    job.refresh_from_db()
    assert (job.status, job.heartbeat_at) == (Job.Status.RUNNING, last_beat)
    list(job_list())  # any job listing sweeps stale jobs first
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "stopped responding" in job.error


@pytest.mark.django_db(transaction=True)  # ending the job reconnects, which a test's transaction forbids
def test_a_job_whose_database_dropped_the_connection_ends_with_its_own_error(monkeypatch):
    """A database restarted mid-job breaks the worker's connection: the runner fails, and recording that
    failure reconnects instead of leaving the job to go stale and be reported as a lost worker."""
    from django.db import InterfaceError, OperationalError
    from django.db.models import QuerySet

    from annotator.services import job_state

    def restarted_database(job: Job, reporter: JobReporter) -> dict:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setitem(JOB_KINDS, "extract_patches", JobKind(run=restarted_database, validate=lambda p, d: p))
    update, dropped = QuerySet.update, []

    def update_on_a_dropped_connection(self, **fields):
        if self.model is Job and "error" in fields and not dropped:  # the first try at recording the failure
            dropped.append(fields)
            raise InterfaceError("connection already closed")  # what psycopg says after the server went
        return update(self, **fields)

    monkeypatch.setattr(QuerySet, "update", update_on_a_dropped_connection)
    monkeypatch.setattr(job_state.time, "sleep", lambda seconds: None)
    job = JobFactory()
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    job.refresh_from_db()
    assert dropped and job.status == Job.Status.FAILED
    assert job.message == "Failed: OperationalError: server closed the connection unexpectedly"


def test_a_shard_left_queued_by_a_dead_job_deletes_the_files_of_its_finished_shards():
    """A sharded mining job whose worker was killed is failed by the sweep; the shard tasks still queued
    then delete the state files (and the crops they list) of the shards that finished, which no merge reads."""
    from annotator.files import media_path, write_bytes_atomic
    from annotator.services.job_runs import shard_run
    from annotator.services.mining import _save_state

    job = JobFactory(kind=Job.Kind.MINE, status=Job.Status.FAILED)
    crop = write_bytes_atomic("patches/patch1-candidate.png", b"png")
    state = _save_state({"patches": {"crops": [crop]}}, f"job{job.pk}-shard0")
    with pytest.raises(RuntimeError, match="is not running"):
        shard_run(job_id=job.pk, shard=1, shards=2)
    assert not media_path(state).exists() and not media_path(crop).exists()


def test_progress_writes_are_throttled_but_the_last_one_always_lands(dataset_with_lesion):
    job = JobFactory(dataset=dataset_with_lesion, status=Job.Status.RUNNING)
    reporter = JobReporter(job_id=job.pk, min_interval=3600)
    reporter.progress(1, 10, "first")
    reporter.progress(5, 10, "throttled")
    job.refresh_from_db()
    assert (job.progress, job.message) == (0.1, "first")
    reporter.progress(10, 10, "last")
    job.refresh_from_db()
    assert (job.progress, job.message) == (0.99, "last")  # 1.0 only once the job has finished
