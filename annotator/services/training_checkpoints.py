"""A training job's checkpoints for resuming: after every finished epoch the job's TrainingState
(weights, optimiser, RNGs, history; see ``mining.training_state``) replaces its state file atomically,
and the epoch's history goes into the job's result, which the job page draws while the job runs.

A failed or cancelled training job whose chain has a state file can be resumed: a new job with
``params["resume_from"]`` = its id goes on at the epoch after the last one checkpointed. A state file is
kept until its job succeeded or is superseded (the job resuming it checkpointed an epoch of its own), so
nothing is left behind by a run that ends well, and a resume that dies early can be resumed again.
"""

from __future__ import annotations

import logging
from typing import Any

from mining.training import EpochFn
from mining.training_state import TrainingState

from ..errors import ApplicationError
from ..files import delete_quietly, media_exists, media_read_bytes, write_bytes_atomic
from ..models import Dataset, Job

logger = logging.getLogger(__name__)

__all__ = [
    "RESUMABLE_STATUSES",
    "curves_of",
    "resumable_job_get",
    "training_epoch_recorder",
    "training_resumable",
    "training_state_load",
    "training_state_name",
    "training_states_discard",
]

RESUMABLE_STATUSES = (Job.Status.FAILED, Job.Status.CANCELLED)
_CHAIN_LIMIT = 100  # resumes of resumes: a bound, so a corrupt loop of ids cannot hang a request


def training_state_name(job_id: int) -> str:
    """One name per job, replaced each epoch: a reader sees the last complete state, never half of one."""
    return f"training-state/job{job_id}.pt"


def _chain(job: Job) -> list[int]:
    """The ids of ``job`` and of the jobs it resumed, newest first."""
    ids = [job.pk]
    source = job.params.get("resume_from")
    while isinstance(source, int) and source not in ids and len(ids) < _CHAIN_LIMIT:
        ids.append(source)
        params = Job.objects.filter(pk=source).values_list("params", flat=True).first() or {}
        source = params.get("resume_from")
    return ids


def _newest_state(job_ids: list[int]) -> int | None:
    """The first of ``job_ids`` with a state file."""
    return next((job_id for job_id in job_ids if media_exists(training_state_name(job_id))), None)


def training_resumable(job: Job) -> bool:
    """Whether ``job`` is a failed or cancelled training job with a checkpointed epoch to go on from."""
    return job.kind == Job.Kind.TRAIN and job.status in RESUMABLE_STATUSES and _newest_state(_chain(job)) is not None


def resumable_job_get(job_id: Any, dataset: Dataset | None) -> Job:
    """The job ``params["resume_from"]`` names, checked: a failed or cancelled training job of ``dataset``
    with a checkpointed epoch. Raises ApplicationError (409 for a job in the wrong state) otherwise."""
    try:
        source = Job.objects.filter(pk=int(job_id)).first()
    except (TypeError, ValueError):
        raise ApplicationError(f"resume_from must be a job id, got {job_id!r}") from None
    if source is None or source.kind != Job.Kind.TRAIN:
        raise ApplicationError(f"resume_from: job {job_id} is not a training job")
    if dataset is not None and source.dataset_id != dataset.pk:
        raise ApplicationError(f"resume_from: job #{source.pk} trained on another dataset")
    if source.status not in RESUMABLE_STATUSES:
        raise ApplicationError(
            f"job #{source.pk} is {source.status}: only a failed or cancelled training job can be resumed", status=409
        )
    resumed_by = Job.objects.filter(params__resume_from=source.pk).order_by("pk").first()
    if resumed_by is not None:  # its checkpoint went on in that job's, which is the one to resume now
        raise ApplicationError(f"job #{source.pk} has been resumed already, by job #{resumed_by.pk}", status=409)
    if _newest_state(_chain(source)) is None:
        raise ApplicationError(
            f"job #{source.pk} has no checkpointed epoch to resume from: start the training again", status=409
        )
    return source


def training_state_load(job: Job) -> TrainingState | None:
    """The state a resuming ``job`` goes on from (that of the newest job of its chain with one); None for a
    job that resumes nothing. Raises ApplicationError when the state is gone or unreadable."""
    if job.params.get("resume_from") in (None, ""):
        return None
    source = _newest_state(_chain(job)[1:])
    if source is None:
        raise ApplicationError(f"job #{job.pk} resumes job #{job.params['resume_from']}, whose checkpoint is gone")
    try:
        return TrainingState.from_bytes(media_read_bytes(training_state_name(source)))
    except (OSError, ValueError) as exc:
        raise ApplicationError(f"the checkpoint of job #{source} cannot be read: {exc}") from exc


def curves_of(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epochs' records as a job's result holds them: without their wall-clock seconds, so the result of
    a seeded run is the same whenever and wherever it ran (the model's own history keeps them)."""
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


def training_epoch_recorder(job: Job, *, epochs: int) -> EpochFn:
    """The ``on_epoch`` of ``job``'s training: checkpoint the state, then put the history into the result
    (the page's live curves), then drop the states this job's own supersedes."""
    superseded = _chain(job)[1:]

    def record(state: TrainingState) -> None:
        write_bytes_atomic(training_state_name(job.pk), state.to_bytes())
        result = {"history": curves_of(state.history), "epochs": epochs, "checkpointed_epoch": state.epoch}
        if job.params.get("resume_from") is not None:
            result["resumed_from"] = job.params["resume_from"]
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(result=result)
        if superseded:
            delete_quietly([training_state_name(job_id) for job_id in superseded])
            superseded.clear()

    return record


def training_states_discard(*, job: Job) -> None:
    """Remove the state files of ``job`` and of the jobs it resumed: it succeeded, nothing goes on from them."""
    delete_quietly([training_state_name(job_id) for job_id in _chain(job)])
