"""The thin bridge between Celery and the product: tasks take a job id and run that job (or one shard
of it). This is the one module under mining/ that reaches Django (through annotator.services); all
computation lives in the pure modules beside it."""

from __future__ import annotations

from celery import chord, shared_task


@shared_task(name="deepminer.run_job", ignore_result=False)
def run_job(job_id: int) -> str:
    from annotator.services.runners import job_run  # importing registers every job kind's runner

    return job_run(job_id=job_id)


def mine_chord(*, job_id: int, shards: int) -> None:
    """Mine a job's patches as `shards` parallel tasks whose per-unit states one merge task combines."""
    chord(mine_shard.s(job_id, index, shards) for index in range(shards))(mine_merge.s(job_id))


@shared_task(name="deepminer.mine_shard")
def mine_shard(job_id: int, shard: int, shards: int) -> str:
    from annotator.services.shards import shard_run

    return shard_run(job_id=job_id, shard=shard, shards=shards)


@shared_task(name="deepminer.mine_merge")
def mine_merge(shard_files: list[str], job_id: int) -> str:
    from annotator.services.shards import shards_merge

    return shards_merge(job_id=job_id, shard_files=shard_files)
