"""Resuming a cancelled training job (in-process, a tiny seeded run on the CPU): the new job goes on at the
epoch after the last one checkpointed and ends with the model of an uninterrupted run; the state files are
atomic, kept while a resume may need them and gone once it succeeded; and what cannot be resumed is refused."""

from __future__ import annotations

import pytest
import torch

from annotator.errors import ApplicationError
from annotator.files import media_path
from annotator.models import Job, TrainedModel
from annotator.services.job_runs import job_run
from annotator.services.job_state import job_claim, job_finish_cancelled
from annotator.services.jobs import job_create
from annotator.services.training import trained_model_train
from annotator.services.training_checkpoints import training_resumable, training_state_name
from annotator.services.training_resume import training_job_resume
from mining.networks import checkpoint_load
from mining.progress import Cancelled, no_progress
from mining.training_state import TrainingState
from tests.annotator.test_training_job import split_dataset  # noqa: F401  (the fixture)
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

PARAMS = {"epochs": 3, "batch_size": 8, "patch_size": 32, "validation_fraction": 0.2, "seed": 5}


def _create(dataset, capture, **kwargs) -> Job:
    with capture(execute=False):
        return job_create(kind=Job.Kind.TRAIN, dataset=dataset, **kwargs)


def _cancelled_after_epoch(dataset, capture, epoch: int) -> Job:
    """A training job cancelled as soon as ``epoch`` epochs are in its result (read from its row)."""
    job = _create(dataset, capture, params=PARAMS)
    job = job_claim(job_id=job.pk)
    assert job is not None

    def cancelled() -> bool:
        return len(Job.objects.get(pk=job.pk).result.get("history", [])) >= epoch

    with pytest.raises(Cancelled):
        trained_model_train(job=job, progress=no_progress, cancelled=cancelled)
    job_finish_cancelled(job_id=job.pk)
    job.refresh_from_db()
    return job


def _state_files() -> list[str]:
    folder = media_path("training-state")
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def test_a_resumed_job_goes_on_from_its_last_epoch_to_the_uninterrupted_model(
    split_dataset,  # noqa: F811
    django_capture_on_commit_callbacks,
    admin_user,
):
    whole = _create(split_dataset, django_capture_on_commit_callbacks, params=PARAMS)
    assert job_run(job_id=whole.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=whole.pk).error
    reference = TrainedModel.objects.get(job=whole)
    assert _state_files() == []  # a job that succeeded leaves no state behind

    stopped = _cancelled_after_epoch(split_dataset, django_capture_on_commit_callbacks, 1)
    assert stopped.status == Job.Status.CANCELLED
    assert [r["epoch"] for r in stopped.result["history"]] == [1]
    assert stopped.result["checkpointed_epoch"] == 1 and training_resumable(stopped)
    assert _state_files() == [f"job{stopped.pk}.pt"]  # one complete file: no temp file beside it
    state = TrainingState.from_bytes(media_path(training_state_name(stopped.pk)).read_bytes())
    assert state.epoch == 1 and state.step == state.steps_per_epoch

    with django_capture_on_commit_callbacks(execute=False):
        resumed = training_job_resume(job=stopped, created_by=admin_user)
    assert resumed.params == {**stopped.params, "resume_from": stopped.pk} and resumed.status == Job.Status.QUEUED
    assert job_run(job_id=resumed.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=resumed.pk).error
    resumed.refresh_from_db()
    model = TrainedModel.objects.get(job=resumed)

    # Epoch 1 was not trained again: its record (with its wall-clock seconds) is the stopped job's.
    assert model.history[0] == state.history[0] and "seconds" in state.history[0]
    assert _without_seconds(model.history) == _without_seconds(reference.history)
    assert model.best_epoch == reference.best_epoch and model.metrics == reference.metrics
    _, theirs = checkpoint_load(reference.checkpoint.path)
    _, ours = checkpoint_load(model.checkpoint.path)
    for key, value in theirs["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][key], value, rtol=0, atol=1e-6)
    assert resumed.result["resumed_from"] == stopped.pk
    assert resumed.result["history"] == _without_seconds(model.history)  # the page's curves; untimed
    assert _state_files() == []  # the resumed job's and the one it went on from: both gone
    assert not training_resumable(stopped)

    with pytest.raises(ApplicationError, match=f"has been resumed already, by job #{resumed.pk}"):
        training_job_resume(job=stopped)


def test_a_resume_that_dies_before_its_first_epoch_can_be_resumed_again(
    split_dataset,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    stopped = _cancelled_after_epoch(split_dataset, django_capture_on_commit_callbacks, 2)
    with django_capture_on_commit_callbacks(execute=False):
        first = training_job_resume(job=stopped)
    # Its worker was lost before it checkpointed an epoch of its own: the stopped job's state is still there.
    Job.objects.filter(pk=first.pk).update(status=Job.Status.FAILED, error="Worker lost")
    first.refresh_from_db()
    assert training_resumable(first) and _state_files() == [f"job{stopped.pk}.pt"]
    with django_capture_on_commit_callbacks(execute=False):
        second = training_job_resume(job=first)
    assert job_run(job_id=second.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=second.pk).error
    second.refresh_from_db()
    assert [r["epoch"] for r in second.result["history"]] == [1, 2, 3]
    assert second.result["history"][:2] == stopped.result["history"]
    assert _state_files() == []


def test_what_cannot_be_resumed_is_refused_and_nothing_is_created(
    split_dataset,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    done = JobFactory(kind=Job.Kind.TRAIN, dataset=split_dataset, status=Job.Status.SUCCEEDED, params=PARAMS)
    patches = JobFactory(dataset=split_dataset, status=Job.Status.FAILED)
    never = JobFactory(kind=Job.Kind.TRAIN, dataset=split_dataset, status=Job.Status.FAILED, params=PARAMS)
    before = Job.objects.count()
    with pytest.raises(ApplicationError, match="succeeded training job: only a failed or cancelled") as refused:
        training_job_resume(job=done)
    assert refused.value.status == 409
    with pytest.raises(ApplicationError, match="failed patch extraction job"):
        training_job_resume(job=patches)
    with pytest.raises(ApplicationError, match="no checkpointed epoch to resume from"):
        training_job_resume(job=never)
    with pytest.raises(ApplicationError, match="resume_from must be a job id"):
        _create(split_dataset, django_capture_on_commit_callbacks, params={"resume_from": "x"})
    with pytest.raises(ApplicationError, match="is not a training job"):
        _create(split_dataset, django_capture_on_commit_callbacks, params={"resume_from": patches.pk})
    assert Job.objects.count() == before
    assert not training_resumable(never) and not training_resumable(done)
