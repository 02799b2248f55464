"""Creating a job: check its parameters with its kind's validator, store it queued, and enqueue it on a
worker once the surrounding transaction commits (so a worker never looks for a row it cannot see yet).

What happens next lives in `job_runs` (the worker side) and `job_state` (progress, cancel, finish).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction

from ..errors import ApplicationError
from ..models import Dataset, Job
from ..tasks import run_job
from .compute import job_queue
from .job_kinds import JOB_KINDS

__all__ = ["job_create"]


def job_create(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    dataset: Dataset | None = None,
    created_by: User | AnonymousUser | None = None,
) -> Job:
    """Create a queued job and enqueue it once the surrounding transaction commits."""
    if kind not in JOB_KINDS:
        raise ApplicationError(f"unknown job kind {kind!r}")
    params = JOB_KINDS[kind].validate(dict(params or {}), dataset)
    job = Job(
        kind=kind,
        params=params,
        dataset=dataset,
        created_by=created_by if isinstance(created_by, User) else None,  # not the anonymous user
        celery_id=uuid.uuid4().hex,
        message="Waiting for a worker",
    )
    job.full_clean()
    job.save()
    task = run_job.s(job.pk).set(task_id=job.celery_id)
    if queue := job_queue(kind):  # else Celery's default queue
        task = task.set(queue=queue)
    transaction.on_commit(task.apply_async)
    return job
