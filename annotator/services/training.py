"""The `train` job: fine-tune a ResNet on a dataset's patches, evaluate it on the test split, store the
checkpoint and the report as a TrainedModel. Train on `train`, pick the best epoch on `holdout`,
report on `test`, so the reported figures never saw model selection."""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from django.db import transaction

from mining.metrics import evaluate
from mining.networks import ARCHITECTURES, build_network, checkpoint_save
from mining.progress import CancelFn, ProgressFn, check_cancel
from mining.training import TrainConfig, predict, train

from ..errors import ApplicationError
from ..files import delete_quietly, media_path, unique_name
from ..models import Dataset, Job, TrainedModel
from .job_state import JobReporter
from .patch_data import patch_split_load

__all__ = ["run_train", "train_config_from", "train_params_validate", "trained_model_train"]

TRAIN_SPLIT, VALIDATION_SPLIT, TEST_SPLIT = "train", "holdout", "test"
_TUNABLE = {f.name for f in fields(TrainConfig)}


def train_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    """Clean a train job's params: architecture, epochs, patch_size, weights_file, preset, and any TrainConfig field."""
    if dataset is None:
        raise ApplicationError("a training job needs a dataset")
    if not dataset.images.filter(patches__isnull=False).exists():
        raise ApplicationError(f"dataset {dataset.name!r} has no patches yet: run patch extraction first")
    cleaned: dict[str, Any] = {"architecture": params.get("architecture") or "resnet18"}
    if cleaned["architecture"] not in ARCHITECTURES:
        raise ApplicationError(f"architecture must be one of {', '.join(ARCHITECTURES)}")
    weights = (params.get("weights_file") or "").strip()
    if weights and not Path(weights).is_file():
        raise ApplicationError(f"weights file not found on the server: {weights}")
    cleaned["weights_file"] = weights
    cleaned["preset"] = params.get("preset") or ("fine_tune" if weights else "from_scratch")
    if cleaned["preset"] not in ("from_scratch", "fine_tune"):
        raise ApplicationError("preset must be from_scratch or fine_tune")
    try:
        if params.get("patch_size") not in (None, ""):
            cleaned["patch_size"] = int(params["patch_size"])
            if not 32 <= cleaned["patch_size"] <= 1024:
                raise ApplicationError("patch_size must be between 32 and 1024 pixels")
        for name in sorted(_TUNABLE & set(params)):
            if params[name] not in (None, ""):
                cleaned[name] = _coerce(getattr(TrainConfig(), name), params[name])
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"bad training parameter: {exc}") from exc
    if cleaned.get("epochs", 1) < 1:
        raise ApplicationError("epochs must be at least 1")
    train_config_from(cleaned)  # refuses values TrainConfig itself would not take
    return cleaned


def _coerce(default: Any, value: Any) -> Any:
    """A form or JSON value as the type of the TrainConfig default ("false" is False, not True)."""
    if isinstance(default, bool):
        return value is True or str(value).lower() in ("1", "true", "yes", "on")
    return type(default)(value)


def train_config_from(params: dict[str, Any]) -> TrainConfig:
    preset = TrainConfig.fine_tune if params.get("preset") == "fine_tune" else TrainConfig.from_scratch
    return preset(**{name: value for name, value in params.items() if name in _TUNABLE})


def trained_model_train(*, job: Job, progress: ProgressFn, cancelled: CancelFn) -> dict[str, Any]:
    """Run the whole training job; returns a summary for the job's result."""
    dataset, params = job.dataset, job.params
    assert dataset is not None
    classes = list(dataset.classes)
    torch.set_num_threads(int(os.environ.get("DEEPMINER_TORCH_THREADS", os.cpu_count() or 1)))
    size = params.get("patch_size")
    progress(0, 1, "Loading patches")
    train_split = patch_split_load(dataset=dataset, splits=[TRAIN_SPLIT], classes=classes, size=size)
    val_split = patch_split_load(dataset=dataset, splits=[VALIDATION_SPLIT], classes=classes, size=size)
    test_split = patch_split_load(dataset=dataset, splits=[TEST_SPLIT], classes=classes, size=size)
    check_cancel(cancelled)
    try:
        network = build_network(params["architecture"], len(classes), params.get("weights_file") or None)
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc
    config = train_config_from(params)
    result = train(
        network.model,
        train_split.crops,
        torch.from_numpy(train_split.table.labels),
        val_split.crops,
        torch.from_numpy(val_split.table.labels),
        config,
        progress=progress,
        cancelled=cancelled,
        num_classes=len(classes),
        class_names=classes,
    )
    network.model.load_state_dict(result.best_state)
    progress(1, 1, "Evaluating on the test split")
    test_probs = predict(network.model, test_split.crops, batch_size=config.eval_batch_size)
    metrics = evaluate(test_split.table.labels, test_probs, classes, metadata=test_split.metadata)
    metrics["split"] = TEST_SPLIT
    check_cancel(cancelled)
    patch_params = _patch_params(dataset, train_split.crops.shape[-1])
    checkpoint_name = unique_name("checkpoints", f"job{job.pk}-{network.architecture}", ".pt")
    checkpoint_save(
        media_path(checkpoint_name),
        model=network.model,
        architecture=network.architecture,
        classes=classes,
        patch_params=patch_params,
        epoch=result.best_epoch,
        metrics=metrics,
        history=result.history,
        config=asdict(config),
    )
    try:
        trained = _store(
            job,
            network.architecture,
            network.initialisation,
            classes,
            checkpoint_name,
            patch_params,
            asdict(config),
            result,
            metrics,
        )
    except BaseException:
        delete_quietly([checkpoint_name])
        raise
    return {
        "trained_model": trained.pk,
        "initialisation": network.initialisation,
        "best_epoch": result.best_epoch,
        "best_val_auc": result.best_val_auc,
        "test_auc": {name: metrics["per_class"][name]["auc"] for name in classes},
        "patches": {"train": len(train_split), "validation": len(val_split), "test": len(test_split)},
    }


def _patch_params(dataset: Dataset, input_size: int) -> dict[str, Any]:
    extraction = dataset.jobs.filter(kind=Job.Kind.EXTRACT_PATCHES, status=Job.Status.SUCCEEDED).first()
    params = dict(extraction.result.get("params", {})) if extraction else {}
    params["input_size"] = input_size
    return params


@transaction.atomic
def _store(
    job: Job,
    architecture: str,
    initialisation: str,
    classes: list[str],
    checkpoint: str,
    patch_params: dict[str, Any],
    config: dict[str, Any],
    result: Any,
    metrics: dict[str, Any],
) -> TrainedModel:
    """Replace, never duplicate: a re-run of the same job swaps its model in one transaction."""
    assert job.dataset is not None  # train_params_validate refuses a job without one
    TrainedModel.objects.filter(job=job).delete()
    trained = TrainedModel(
        job=job,
        dataset=job.dataset,
        name=f"{architecture} on {job.dataset.name} (job #{job.pk})",
        architecture=architecture,
        classes=classes,
        initialisation=initialisation,
        checkpoint=checkpoint,
        patch_params=patch_params,
        config=config,
        history=result.history,
        best_epoch=result.best_epoch,
        metrics=metrics,
    )
    trained.full_clean()
    trained.save()
    return trained


def run_train(job: Job, reporter: JobReporter) -> dict[str, Any]:
    return trained_model_train(job=job, progress=reporter.progress, cancelled=reporter.cancelled)
