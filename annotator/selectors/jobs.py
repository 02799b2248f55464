"""Reads of one job for its page and the job API: the job itself, and what of its failure a user may read."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404

from ..models import Job
from ..permissions import user_is_admin
from .core import job_list

__all__ = ["job_error_seen", "job_get"]


def job_get(*, pk: int) -> Job:
    """A job with its dataset and creator (stale running jobs failed first); Http404 if there is none."""
    return get_object_or_404(job_list(), pk=pk)


def job_error_seen(user: Any, job: Job) -> str:
    """A failed job's error as ``user`` may read it: the whole text with its traceback for admins, its first
    line (what went wrong, in words) for everyone else; the traceback shows code paths and server files."""
    if user_is_admin(user):
        return job.error
    return job.error.split("\n", 1)[0]
