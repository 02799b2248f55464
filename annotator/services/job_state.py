"""A job row's state: claimed by a worker, kept alive by a heartbeat, told of progress, finished
(succeeded, cancelled, failed), cancelled on request, or failed when its worker died (stale heartbeat).

A job row is the single source of truth for its state; the broker only carries the job id. This module
knows no job kind and no task: `jobs` creates jobs, `job_runs` runs them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import Error, connection, transaction
from django.utils import timezone

from ..errors import ApplicationError
from ..models import Job
from .job_log import JobLog

logger = logging.getLogger(__name__)

__all__ = [
    "JobReporter",
    "Sharded",
    "job_cancel",
    "job_claim",
    "job_finish_cancelled",
    "job_finish_failed",
    "job_finish_succeeded",
    "job_heartbeat",
    "job_log_flush",
    "jobs_fail_stale",
]


def job_cancel(*, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop at its next check."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            raise ApplicationError(f"job #{job.pk} has already finished ({job.status})", status=409)
        if job.status == Job.Status.QUEUED:
            job.status = Job.Status.CANCELLED
            job.finished_at = timezone.now()
            job.message = "Cancelled before it started"
        else:
            job.cancel_requested = True
            job.message = "Cancelling…"
        job.save(update_fields=["status", "finished_at", "message", "cancel_requested"])
    return job


def jobs_fail_stale(*, now: Any = None) -> int:
    """Mark running jobs whose heartbeat is older than JOB_HEARTBEAT_TIMEOUT as failed.

    A worker killed mid-job (OOM, SIGKILL, machine lost) cannot say so itself; this is how the
    product finds out. Its partial results were never committed (runners write in one transaction).
    """
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)
    stale = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=limit)
    return stale.update(
        status=Job.Status.FAILED,
        finished_at=now,
        error=(
            "The worker running this job stopped responding (no heartbeat for over "
            f"{settings.JOB_HEARTBEAT_TIMEOUT} s); it was probably killed. No partial results were kept. "
            "Start the job again."
        ),
        message="Worker lost",
    )


@dataclass
class JobReporter:
    """Handed to runners: `progress(done, total, message)` and `cancelled()` as mining/ expects them.

    Writes are throttled (the hot loop may call progress per batch) and use UPDATE on the fields
    it owns, so a concurrent cancel request is never overwritten.
    """

    job_id: int
    min_interval: float = 0.5
    log: JobLog | None = None  # the job's log tail: each written progress message is a line, sent with it
    _last_write: float = field(default=-float("inf"), init=False)
    _last_cancel_check: float = field(default=-float("inf"), init=False)
    _cancel_seen: bool = field(default=False, init=False)

    def progress(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self._last_write < self.min_interval:
            return
        self._last_write = now
        # 100% means finished: a running job's results are still being written after its last step.
        fraction = min(max(done / total, 0.0), 0.99) if total else 0.0
        fields: dict[str, Any] = {"progress": fraction, "message": message[:500], "heartbeat_at": timezone.now()}
        if self.log is not None:
            self.log.write(message)
            fields["log"] = self.log.pending()
        Job.objects.filter(pk=self.job_id).update(**fields)

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancel_seen and now - self._last_cancel_check >= self.min_interval:
            self._last_cancel_check = now
            self._cancel_seen = Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self._cancel_seen


class _Heartbeat:
    """Bumps the job's heartbeat from a side thread, so a long step with no progress call still looks alive."""

    def __init__(self, job_id: int, interval: float) -> None:
        self.job_id = job_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{job_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(heartbeat_at=timezone.now())
                except Error as exc:  # SQLite busy, a restarted server: try again next beat, never kill the job
                    logger.warning("heartbeat for job %s skipped: %s", self.job_id, exc)
                    connection.close()  # a connection the server dropped (restart) is never usable again
        finally:
            connection.close()  # this thread's own connection


def job_claim(*, job_id: int) -> Job | None:
    """Move a queued job to running; None if it is not queued (already ran, cancelled, or failed)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != Job.Status.QUEUED:
            return None
        now = timezone.now()
        job.status = Job.Status.RUNNING
        job.started_at = now
        job.heartbeat_at = now
        job.worker = f"{socket.gethostname()}:{os.getpid()}"
        job.message = "Started"
        job.save(update_fields=["status", "started_at", "heartbeat_at", "worker", "message"])
    return job


FINISH_RETRY_SECONDS = 60  # how long a job's end waits for a database that dropped its connection


def _finish(job_id: int, **fields: Any) -> None:
    """End a running job. A database that dropped the connection (restarted mid-job, and often the cause of
    the failure being recorded) is reconnected to until it answers, so the job ends with its own outcome
    instead of going stale and being reported as a lost worker."""
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    while True:
        try:
            Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(finished_at=timezone.now(), **fields)
            return
        except Error as exc:  # OperationalError, or InterfaceError on a connection the server closed
            if connection.in_atomic_block or time.monotonic() > deadline:
                raise
            logger.warning("ending job %s: %s; reconnecting", job_id, exc)
            connection.close()
            time.sleep(1)


@dataclass(frozen=True)
class Sharded:
    """What a runner returns instead of a result when its work is split into `shards` parallel tasks:
    the job stays running, and the last task (the merge) ends it with job_finish_* below."""

    shards: int


def job_finish_succeeded(*, job_id: int, result: dict[str, Any]) -> str:
    """A runner may call it inside the transaction that stores its results, so both commit together; the
    call `job_run` makes after the runner returned then changes nothing (the job is no longer running)."""
    _finish(job_id, status=Job.Status.SUCCEEDED, progress=1.0, result=result, message="Done")
    return Job.Status.SUCCEEDED


def job_finish_cancelled(*, job_id: int) -> str:
    _finish(job_id, status=Job.Status.CANCELLED, message="Cancelled")
    return Job.Status.CANCELLED


def job_finish_failed(*, job_id: int, exc: BaseException) -> str:
    logger.error("job %s failed: %s", job_id, exc, exc_info=exc)
    text = exc.message if isinstance(exc, ApplicationError) else f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc, limit=8))
    _finish(job_id, status=Job.Status.FAILED, error=f"{text}\n\n{trace}", message=f"Failed: {text}"[:500])
    return Job.Status.FAILED


def job_heartbeat(*, job_id: int, interval: float | None = None) -> _Heartbeat:
    """A context manager that keeps a running job's heartbeat fresh while a step works on it."""
    return _Heartbeat(job_id, interval or max(1.0, settings.JOB_HEARTBEAT_TIMEOUT / 6))


def job_log_flush(*, job_id: int, log: JobLog) -> None:
    """After a job's run: its end as the log's last line, and the tail into the row. A log is no outcome:
    a database that refuses this write loses the tail, never the job's end (already written)."""
    try:
        ended = Job.objects.filter(pk=job_id).values_list("status", "message").first()
        if ended is not None:
            log.write(f"{ended[0]}: {ended[1]}")
        Job.objects.filter(pk=job_id).update(log=log.text())
    except Error as exc:
        logger.warning("log of job %s not written: %s", job_id, exc)
