"""The `train` job: fine-tune a ResNet on a dataset's patches, evaluate it on the test split, store the
checkpoint and the report as a TrainedModel.

Each split has one role (docs: DESIGN.md, "Splits have one role each"): fit on the training patients
less a seeded patient-level validation carve-out (`mining.splits.carve_validation`), pick the best
epoch on that carve-out, report on `test`. The hold-out split is never read here: it is kept for
evaluating the explanations. The model's metrics record which split each figure comes from."""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from django.db import transaction

from mining.metrics import evaluate
from mining.networks import ARCHITECTURES, RESNETS, build_network, checkpoint_save
from mining.progress import CancelFn, ProgressFn, check_cancel
from mining.splits import carve_validation
from mining.training import SYMMETRIES, TrainConfig, predict, train

from ..errors import ApplicationError
from ..files import delete_quietly, unique_name, write_local_file_atomic
from ..models import Dataset, Image, Job, TrainedModel
from .compute import worker_device, worker_precision
from .image_data import ImageSplit, image_split_load
from .job_state import JobReporter, job_finish_succeeded
from .network_input import TRAINING_WINDOW
from .patch_data import PatchSplit, patch_split_load
from .training_checkpoints import (
    curves_of,
    resumable_job_get,
    training_epoch_recorder,
    training_state_load,
    training_states_discard,
)

__all__ = ["run_train", "train_config_from", "train_params_validate", "trained_model_train"]

TRAIN_SPLIT, TEST_SPLIT = "train", "test"  # the hold-out split is for explanations only
PATCHES, WHOLE_IMAGE = "patches", "whole_image"  # what the network sees: DeepMiner's patches, or whole images
WHOLE_IMAGE_SIZE = 256  # default input side of a whole-image classifier
# A whole-image classifier's augmentation: left-right mirror and a shift of up to 1/16 of the side. On
# 1,000 hip phantoms (700 training, 128 px, ResNet-18 from random weights, 30 epochs of 32) it gave test
# AUC 0.943 in bench/hip_classifier.py against 0.919 with the 8 dihedral symmetries (0.966 in an earlier
# run of the same setup: multi-threaded CPU training is not bit-reproducible).
WHOLE_IMAGE_AUGMENTATION = {"symmetries": "flip", "shift_fraction": 0.0625}
VALIDATION_FRACTION = 0.1  # share of the training patients carved out to pick the best epoch
_TUNABLE = {f.name for f in fields(TrainConfig)}


def train_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    """Clean a train job's params: input (patches, DeepMiner's, the default for mammograms; or
    whole_image, the hip-fracture classifier's, the default for hip datasets), architecture, epochs,
    patch_size (the network input's side), weights_file, preset, validation_fraction (of the training
    patients, to pick the best epoch) and any TrainConfig field."""
    if dataset is None:
        raise ApplicationError("a training job needs a dataset")
    if params.get("resume_from") not in (None, ""):
        # A resume trains what the job it resumes trained: its parameters, checked again, and nothing else.
        source = resumable_job_get(params["resume_from"], dataset)
        inherited = {name: value for name, value in source.params.items() if name != "resume_from"}
        return {**train_params_validate(inherited, dataset), "resume_from": source.pk}
    default_input = WHOLE_IMAGE if dataset.kind == Dataset.Kind.HIP_FRACTURE else PATCHES
    cleaned: dict[str, Any] = {"input": params.get("input") or default_input}
    if cleaned["input"] not in (PATCHES, WHOLE_IMAGE):
        raise ApplicationError(f"input must be {PATCHES} or {WHOLE_IMAGE}")
    if cleaned["input"] == PATCHES and not dataset.images.filter(patches__isnull=False).exists():
        raise ApplicationError(f"dataset {dataset.name!r} has no patches yet: run patch extraction first")
    if (
        cleaned["input"] == WHOLE_IMAGE
        and not dataset.images.filter(split=TRAIN_SPLIT, label__in=dataset.classes).exists()
    ):
        raise ApplicationError(f"dataset {dataset.name!r} has no labelled training images")
    cleaned["architecture"] = params.get("architecture") or "resnet18"
    if cleaned["architecture"] not in ARCHITECTURES:
        raise ApplicationError(f"architecture must be one of {', '.join(ARCHITECTURES)}")
    if cleaned["input"] == PATCHES and cleaned["architecture"] not in RESNETS:
        # Mining reads a ResNet's layer4 and fc; a DenseNet is the whole-image (hip-fracture) classifier.
        raise ApplicationError(
            f"{cleaned['architecture']} classifies whole images only; a patch model is one of {', '.join(RESNETS)}"
        )
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
        fraction: Any = params.get("validation_fraction")
        cleaned["validation_fraction"] = VALIDATION_FRACTION if fraction in (None, "") else float(fraction)
        if not 0 < cleaned["validation_fraction"] < 1:
            raise ApplicationError("validation_fraction must lie strictly between 0 and 1")
        for name in sorted(_TUNABLE & set(params)):
            if params[name] not in (None, ""):
                cleaned[name] = _coerce(getattr(TrainConfig(), name), params[name])
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"bad training parameter: {exc}") from exc
    if cleaned.get("epochs", 1) < 1:
        raise ApplicationError("epochs must be at least 1")
    # A whole radiograph keeps its orientation (only mirrored) and its anatomy sits a little differently
    # in each image; mammogram patches have no orientation.
    for name, value in (WHOLE_IMAGE_AUGMENTATION if cleaned["input"] == WHOLE_IMAGE else {}).items():
        cleaned.setdefault(name, value)
    cleaned.setdefault("symmetries", "dihedral")
    if cleaned["symmetries"] not in SYMMETRIES:
        raise ApplicationError(f"symmetries must be one of {', '.join(SYMMETRIES)}")
    if not 0 <= float(cleaned.get("shift_fraction", 0.0)) < 0.5:
        raise ApplicationError("shift_fraction must be in [0, 0.5)")
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
    whole = params.get("input") == WHOLE_IMAGE
    size = params.get("patch_size") or (WHOLE_IMAGE_SIZE if whole else None)
    config = train_config_from(params)
    fraction = float(params.get("validation_fraction", VALIDATION_FRACTION))
    progress(0, 1, "Loading images" if whole else "Loading patches")
    training_patients = _training_patients(dataset, TRAIN_SPLIT, classes, whole)
    if len(training_patients) < 2:
        raise ApplicationError(
            f"dataset {dataset.name!r} has {len(training_patients)} training patient(s) with "
            f"{'labelled images' if whole else 'patches'}: at least 2 are needed to carve out a validation set"
        )
    validation = carve_validation(training_patients, fraction, seed=config.seed)

    def load(split: str, **patients: Any) -> PatchSplit | ImageSplit:
        if whole:
            return image_split_load(
                dataset=dataset,
                splits=[split],
                classes=classes,
                size=int(size or 0),
                window=TRAINING_WINDOW,
                **patients,
            )
        return patch_split_load(
            dataset=dataset, splits=[split], classes=classes, size=size, window=TRAINING_WINDOW, **patients
        )

    train_split = load(TRAIN_SPLIT, exclude_patients=validation)
    val_split = load(TRAIN_SPLIT, patients=validation)
    test_split = load(TEST_SPLIT)
    check_cancel(cancelled)
    # A seeded training is the same model whatever the worker ran before: the random initial weights too.
    torch.manual_seed(config.seed)
    try:
        network = build_network(params["architecture"], len(classes), params.get("weights_file") or None)
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc
    network.model.to(worker_device())  # train() runs where the model's parameters are
    precision = worker_precision()
    resume = training_state_load(job)
    result = train(
        network.model,
        train_split.crops,
        torch.from_numpy(train_split.labels),
        val_split.crops,
        torch.from_numpy(val_split.labels),
        config,
        progress=progress,
        cancelled=cancelled,
        precision=precision,
        num_classes=len(classes),
        class_names=classes,
        on_epoch=training_epoch_recorder(job, epochs=config.epochs),
        resume=resume,
    )
    network.model.load_state_dict(result.best_state)
    progress(1, 1, "Evaluating on the test split")
    test_probs = predict(network.model, test_split.crops, batch_size=config.eval_batch_size)
    metrics = evaluate(test_split.labels, test_probs, classes, metadata=test_split.metadata)
    metrics["split"] = TEST_SPLIT
    metrics["splits"] = _splits_record(
        fraction=fraction,
        seed=config.seed,
        parts={
            "train": (len(training_patients) - len(validation), train_split),
            "validation": (len(validation), val_split),
            "test": (len(_training_patients(dataset, TEST_SPLIT, classes, whole)), test_split),
        },
        items="images" if whole else "patches",
    )
    check_cancel(cancelled)
    patch_params = (
        # A whole image is one "patch" as wide as the image: the FCN then runs it at the training scale.
        {"input_size": int(train_split.crops.shape[-1]), "side_fraction": 1.0, "whole_image": True}
        if whole
        else _patch_params(dataset, train_split.crops.shape[-1])
    ) | {"window": TRAINING_WINDOW}  # what explaining and mining must show it (network_input.model_window)
    checkpoint_name = unique_name("checkpoints", f"job{job.pk}-{network.architecture}", ".pt")
    with write_local_file_atomic(checkpoint_name) as checkpoint_file:
        checkpoint_save(
            checkpoint_file,
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
        # The model and its job's success commit together: a worker killed in between would leave a model of
        # a failed job, and its re-run a second one.
        with transaction.atomic():
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
            summary = {
                "trained_model": trained.pk,
                "initialisation": network.initialisation,
                "best_epoch": result.best_epoch,
                "best_val_auc": result.best_val_auc,
                "precision": precision.name,  # the forward passes' autocast: fp32, bf16 or fp16
                "test_auc": {name: metrics["per_class"][name]["auc"] for name in classes},
                "patches": {name: part["patches"] for name, part in metrics["splits"]["sizes"].items()},
                "patients": {name: part["patients"] for name, part in metrics["splits"]["sizes"].items()},
                "history": curves_of(result.history),  # the job page's curves, as drawn while it ran
                "epochs": config.epochs,
                **({"resumed_from": job.params["resume_from"]} if resume is not None else {}),
            }
            job_finish_succeeded(job_id=job.pk, result=summary)
    except BaseException:
        delete_quietly([checkpoint_name])
        raise
    training_states_discard(job=job)  # it succeeded: no resume will go on from its epochs
    return summary


def _training_patients(dataset: Dataset, split: str, classes: list[str], whole: bool) -> list[str]:
    """Patients of ``split`` a model can learn from: with patches, or (whole images) with a labelled image."""
    images = Image.objects.filter(dataset=dataset, split=split)
    images = images.filter(label__in=classes) if whole else images.filter(patches__isnull=False)
    return sorted(set(images.values_list("patient_id", flat=True)))


def _splits_record(
    *, fraction: float, seed: int, parts: dict[str, tuple[int, PatchSplit | ImageSplit]], items: str = "patches"
) -> dict[str, Any]:
    """Where each figure of the model comes from, for its page: the best epoch from the validation
    carve-out, the metrics from test; and how many patients and patches (or images) each part holds."""
    return {
        "items": items,
        "best_epoch": f"validation ({100 * fraction:g}% of training patients)",
        "metrics": TEST_SPLIT,
        "validation_fraction": fraction,
        "validation_seed": seed,
        "sizes": {name: {"patients": patients, "patches": len(split)} for name, (patients, split) in parts.items()},
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
