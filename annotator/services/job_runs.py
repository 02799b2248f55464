"""The worker side of a job: run a queued job to its end state with its kind's runner, or, for a mining
job split into shards, run the shards of its two passes and merge them (pass 1 shards -> reduce ->
pass 2 shards -> merge). The tasks in `annotator.tasks` call these, and
nothing here knows Celery: a job that fans out is handed a `fan_out` callable by its caller.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from mining.progress import Cancelled

from ..errors import ApplicationError
from ..models import Job
from .compute import job_device_label
from .job_kinds import JOB_KINDS
from .job_log import job_log_capture
from .job_state import (
    JobReporter,
    Sharded,
    job_claim,
    job_finish_cancelled,
    job_finish_failed,
    job_finish_succeeded,
    job_heartbeat,
    job_log_flush,
)
from .mining import units_dissect_shard, units_mine_discard, units_mine_merge, units_mine_reduce, units_mine_shard

logger = logging.getLogger(__name__)

__all__ = ["FanOut", "dissect_run", "job_run", "shard_run", "shards_merge", "shards_reduce"]

# (job id, number of shards) -> None: starts the shards and the merge that ends the job.
FanOut = Callable[[int, int], None]


def job_run(*, job_id: int, fan_out: FanOut | None = None) -> str:
    """Run a queued job to its end state. Safe to call twice: a job that is not queued is left alone.

    A runner that splits its work returns Sharded(n); `fan_out(job_id, n)` then starts the shards and the
    job stays running until their merge ends it. Without `fan_out` (called outside a worker) such a job fails.
    """
    job = job_claim(job_id=job_id)
    if job is None:
        status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        logger.info("job %s not run: status is %s", job_id, status)
        return status or "missing"
    Job.objects.filter(pk=job.pk).update(device=job_device_label(job.kind))
    with job_log_capture() as log:
        try:
            return _job_run_claimed(job, JobReporter(job_id=job.pk, log=log), fan_out)
        finally:
            job_log_flush(job_id=job.pk, log=log)


def _job_run_claimed(job: Job, reporter: JobReporter, fan_out: FanOut | None) -> str:
    try:
        with job_heartbeat(job_id=job.pk):
            kind = JOB_KINDS.get(job.kind)
            if kind is None:
                raise ApplicationError(f"no runner for job kind {job.kind!r}")
            result = kind.run(job, reporter)
            if isinstance(result, Sharded):
                if fan_out is None:
                    raise ApplicationError(f"job #{job.pk} is split into {result.shards} shards: it needs a worker")
                fan_out(job.pk, result.shards)
                return Job.Status.RUNNING
    except Cancelled:
        return job_finish_cancelled(job_id=job.pk)
    except Exception as exc:
        return job_finish_failed(job_id=job.pk, exc=exc)
    return job_finish_succeeded(job_id=job.pk, result=result)


class _ShardReporter(JobReporter):
    """Progress of one shard, labelled with its pass and number (the shards share one job row)."""

    def __init__(self, job_id: int, label: str) -> None:
        super().__init__(job_id=job_id)
        self.prefix = label

    def progress(self, done: int, total: int, message: str = "") -> None:
        super().progress(done, total, f"{self.prefix} · {message}")


# A shard's service call, given the job row, a progress callback and a cancel check; returns a file name.
ShardWork = Callable[..., str]


def _shard(job_id: int, label: str, work: ShardWork) -> str:
    """Run one shard's work for a running job; returns the file its result was written to.

    The job stays `running` across the shards, each keeps its heartbeat fresh, and the first failure or a
    cancel request ends it (the exception propagates, so the chord's callback never runs).
    """
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != Job.Status.RUNNING:
        # A shard left queued by a job that ended without it (its worker was killed and the stale sweep
        # failed the job): the files the job's finished shards wrote go, as no merge will read them.
        units_mine_discard(job_id=job_id)
        raise RuntimeError(f"job {job_id} is not running; {label} skipped")
    reporter = _ShardReporter(job_id, label)
    try:
        with job_heartbeat(job_id=job_id):
            name = work(job=job, progress=reporter.progress, cancelled=reporter.cancelled)
    except Cancelled:
        job_finish_cancelled(job_id=job_id)
        units_mine_discard(job_id=job_id)
        raise
    except Exception as exc:
        job_finish_failed(job_id=job_id, exc=exc)
        units_mine_discard(job_id=job_id)  # the other shards' files: the merge that reads them never runs
        raise
    if not Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).exists():
        units_mine_discard(job_id=job_id)  # another shard ended the job while this one worked
    return name


def shard_run(*, job_id: int, shard: int, shards: int) -> str:
    """The first mining pass over one shard of a running job; returns the file of its per-unit state."""
    work = functools.partial(units_mine_shard, shard=shard, shards=shards)
    return _shard(job_id, f"pass 1, shard {shard + 1}/{shards}", work)


def shards_reduce(*, job_id: int, shard_files: list[str]) -> str | None:
    """Merge the first pass's shard states; returns the merged state's file, or None when the job ended."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != Job.Status.RUNNING:
        units_mine_discard(job_id=job_id)
        return None
    JobReporter(job_id=job_id).progress(1, 2, "Merging the first pass's shards")
    try:
        with job_heartbeat(job_id=job_id):
            return units_mine_reduce(job=job, shard_files=shard_files)
    except Exception as exc:
        job_finish_failed(job_id=job_id, exc=exc)
        return None


def dissect_run(*, job_id: int, shard: int, shards: int, merged_file: str) -> str:
    """The second mining pass (IoU over every patch) over one shard; returns the file of its IoU sums."""
    work = functools.partial(units_dissect_shard, shard=shard, shards=shards, merged_file=merged_file)
    return _shard(job_id, f"pass 2, shard {shard + 1}/{shards}", work)


def shards_merge(*, job_id: int, merged_file: str, iou_files: list[str]) -> str:
    """Add the second pass's IoU sums to the merged first pass, store the units and end the job."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != Job.Status.RUNNING:
        units_mine_discard(job_id=job_id)
        return job.status if job else "missing"
    JobReporter(job_id=job_id).progress(1, 1, "Merging shards, writing units and masks")
    try:
        with job_heartbeat(job_id=job_id):
            result = units_mine_merge(job=job, merged_file=merged_file, iou_files=iou_files)
    except Exception as exc:
        return job_finish_failed(job_id=job_id, exc=exc)
    return job_finish_succeeded(job_id=job_id, result=result)
