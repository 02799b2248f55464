"""The thin bridge between Celery and the product: each task takes ids, and calls one service.

Services enqueue `run_job` once the transaction that created the job commits; a mining job split into
shards fans out as a chord of `mine_shard` tasks (first pass) whose states `mine_reduce` merges, which
starts a chord of `dissect_shard` tasks (second pass) whose IoU sums `mine_merge` adds and stores.
"""

from __future__ import annotations

from celery import Signature, chord, shared_task

from .models import Job
from .services.compute import job_queue
from .services.job_runs import dissect_run, job_run, shard_run, shards_merge, shards_reduce

__all__ = ["dissect_shard", "mine_merge", "mine_reduce", "mine_shard", "run_job"]


@shared_task(name="deepminer.run_job", ignore_result=False)
def run_job(job_id: int) -> str:
    return job_run(job_id=job_id, fan_out=_mine_chord)


def _on_queue(signature: Signature) -> Signature:
    """A mining task goes where mining jobs go (the GPU queue when one is set)."""
    queue = job_queue(Job.Kind.MINE)
    return signature.set(queue=queue) if queue else signature


def _mine_chord(job_id: int, shards: int) -> None:
    """Mine a job's patches in `shards` parallel tasks per pass: the first pass's merge starts the second."""
    first = (_on_queue(mine_shard.s(job_id, index, shards)) for index in range(shards))
    chord(first)(_on_queue(mine_reduce.s(job_id, shards)))


@shared_task(name="deepminer.mine_shard")
def mine_shard(job_id: int, shard: int, shards: int) -> str:
    return shard_run(job_id=job_id, shard=shard, shards=shards)


@shared_task(name="deepminer.mine_reduce")
def mine_reduce(shard_files: list[str], job_id: int, shards: int) -> str:
    merged = shards_reduce(job_id=job_id, shard_files=shard_files)
    if merged is not None:  # None: the job has ended (failed or cancelled)
        second = (_on_queue(dissect_shard.s(job_id, index, shards, merged)) for index in range(shards))
        chord(second)(_on_queue(mine_merge.s(job_id, merged)))
    return merged or ""


@shared_task(name="deepminer.dissect_shard")
def dissect_shard(job_id: int, shard: int, shards: int, merged_file: str) -> str:
    return dissect_run(job_id=job_id, shard=shard, shards=shards, merged_file=merged_file)


@shared_task(name="deepminer.mine_merge")
def mine_merge(iou_files: list[str], job_id: int, merged_file: str) -> str:
    return shards_merge(job_id=job_id, merged_file=merged_file, iou_files=iou_files)
