"""Importing this module registers the runner of every job kind with the job machinery."""

from . import patches  # noqa: F401 - registers extract_patches
from .jobs import job_run

__all__ = ["job_run"]
