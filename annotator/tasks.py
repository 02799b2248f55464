"""The thin bridge between Celery and the product: each task takes ids, and calls one service.

Services enqueue `run_job` once the transaction that created the job commits; a mining job split into
shards fans out as a chord of `mine_shard` tasks whose states `mine_merge` combines.
"""

from __future__ import annotations

from celery import chord, shared_task

from .services.job_runs import job_run, shard_run, shards_merge

__all__ = ["mine_merge", "mine_shard", "run_job"]


@shared_task(name="deepminer.run_job", ignore_result=False)
def run_job(job_id: int) -> str:
    return job_run(job_id=job_id, fan_out=_mine_chord)


def _mine_chord(job_id: int, shards: int) -> None:
    """Mine a job's patches as `shards` parallel tasks whose per-unit states one merge task combines."""
    chord(mine_shard.s(job_id, index, shards) for index in range(shards))(mine_merge.s(job_id))


@shared_task(name="deepminer.mine_shard")
def mine_shard(job_id: int, shard: int, shards: int) -> str:
    return shard_run(job_id=job_id, shard=shard, shards=shards)


@shared_task(name="deepminer.mine_merge")
def mine_merge(shard_files: list[str], job_id: int) -> str:
    return shards_merge(job_id=job_id, shard_files=shard_files)
