"""Running one shard of a mining job, and merging the shards, inside a job's life cycle: the job stays
`running` across the chord, every shard keeps its heartbeat fresh, and the first failure or a
cancel request ends it."""

from __future__ import annotations

from mining.progress import Cancelled

from ..models import Job
from .jobs import JobReporter, job_finish_cancelled, job_finish_failed, job_finish_succeeded, job_heartbeat
from .mining import units_mine_merge, units_mine_shard

__all__ = ["shard_run", "shards_merge"]


class _ShardReporter(JobReporter):
    """Progress of one shard, labelled with its number (the shards share one job row)."""

    def __init__(self, job_id: int, shard: int, shards: int) -> None:
        super().__init__(job_id=job_id)
        self.prefix = f"shard {shard + 1}/{shards}"

    def progress(self, done: int, total: int, message: str = "") -> None:
        super().progress(done, total, f"{self.prefix} · {message}")


def shard_run(*, job_id: int, shard: int, shards: int) -> str:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != Job.Status.RUNNING:
        raise RuntimeError(f"job {job_id} is not running; shard {shard} skipped")
    reporter = _ShardReporter(job_id, shard, shards)
    try:
        with job_heartbeat(job_id=job_id):
            return units_mine_shard(job=job, shard=shard, shards=shards,
                                    progress=reporter.progress, cancelled=reporter.cancelled)  # fmt: skip
    except Cancelled:
        job_finish_cancelled(job_id=job_id)
        raise
    except Exception as exc:
        job_finish_failed(job_id=job_id, exc=exc)
        raise


def shards_merge(*, job_id: int, shard_files: list[str]) -> str:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != Job.Status.RUNNING:
        return job.status if job else "missing"
    JobReporter(job_id=job_id).progress(1, 1, "Merging shards, matching concepts, writing masks")
    try:
        with job_heartbeat(job_id=job_id):
            result = units_mine_merge(job=job, shard_files=shard_files)
    except Exception as exc:
        return job_finish_failed(job_id=job_id, exc=exc)
    return job_finish_succeeded(job_id=job_id, result=result)
