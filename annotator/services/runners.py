"""Importing this module registers the runner of every job kind with the job machinery."""

from . import mining, patches, training  # noqa: F401 - each registers its job kind
from .jobs import job_run

__all__ = ["job_run"]
