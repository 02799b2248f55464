"""Every kind of job, in one table: the function that runs it in a worker and the one that checks its
parameters when it is created (so a bad request is refused at once, not minutes later in a worker).

Adding a kind: a `Job.Kind` value, its runner and validator beside the work they do, and one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models import Dataset, Job
from .captioning import caption_params_validate, run_caption
from .dataset_imports import import_params_validate, run_import
from .explanation_batch import explain_params_validate, run_explain
from .job_state import JobReporter, Sharded
from .mining import mine_params_validate, run_mine
from .patches import patch_params_validate, run_extract_patches
from .reader_study_jobs import reader_study_params_validate, run_reader_study
from .training import run_train, train_params_validate

__all__ = ["JOB_KINDS", "JobKind"]


@dataclass(frozen=True)
class JobKind:
    # (job, reporter) -> the job's result, or Sharded when the work goes on as parallel tasks.
    run: Callable[[Job, JobReporter], dict[str, Any] | Sharded]
    # (params, dataset) -> cleaned params; raises ApplicationError on bad input.
    validate: Callable[[dict[str, Any], Dataset | None], dict[str, Any]]


JOB_KINDS: dict[str, JobKind] = {
    Job.Kind.EXTRACT_PATCHES: JobKind(run=run_extract_patches, validate=patch_params_validate),
    Job.Kind.TRAIN: JobKind(run=run_train, validate=train_params_validate),
    Job.Kind.MINE: JobKind(run=run_mine, validate=mine_params_validate),
    Job.Kind.EXPLAIN: JobKind(run=run_explain, validate=explain_params_validate),
    Job.Kind.CAPTION: JobKind(run=run_caption, validate=caption_params_validate),
    Job.Kind.IMPORT: JobKind(run=run_import, validate=import_params_validate),
    Job.Kind.READER_STUDY: JobKind(run=run_reader_study, validate=reader_study_params_validate),
}
