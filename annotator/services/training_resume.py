"""Resuming a failed or cancelled training job: a new train job that goes on at the epoch after the last
one the old job checkpointed (see ``training_checkpoints``), with the old job's parameters."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction

from ..errors import ApplicationError
from ..models import Job
from .jobs import job_create
from .training_checkpoints import RESUMABLE_STATUSES

__all__ = ["training_job_resume"]


def training_job_resume(*, job: Job, created_by: User | AnonymousUser | None = None) -> Job:
    """The queued job resuming ``job``; ApplicationError (409) when ``job`` cannot be resumed."""
    with transaction.atomic():
        # Locked: two admins pressing Resume at once get one new job and one refusal, not two runs.
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.kind != Job.Kind.TRAIN or job.status not in RESUMABLE_STATUSES:
            raise ApplicationError(
                f"job #{job.pk} is a {job.get_status_display().lower()} {job.get_kind_display().lower()} job: "
                "only a failed or cancelled training job can be resumed",
                status=409,
            )
        return job_create(
            kind=Job.Kind.TRAIN, dataset=job.dataset, params={"resume_from": job.pk}, created_by=created_by
        )
