"""Reads. Querysets and small summaries for pages and the API; no writes except the stale-job sweep
that every job listing runs first, so nobody ever sees a dead job as 'running'."""

from __future__ import annotations

import functools
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from mining.dissection import INTERPRETABLE_IOU

from ..models import Dataset, Finding, Image, Job, Patch, TopActivation, TrainedModel, Unit
from ..permissions import patch_counts_seen, user_sees_truth
from ..plots import line_chart
from ..services.job_state import jobs_fail_stale

__all__ = [
    "dataset_list",
    "dataset_summary",
    "image_get",
    "image_list",
    "job_list",
    "model_report",
    "patch_counts",
    "trained_model_get",
    "trained_model_list",
]


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.annotate(
        image_count=Count("images", distinct=True),
        patient_count=Count("images__patient_id", distinct=True),
    ).order_by("-created_at")


def image_list(
    *, dataset: Dataset | None = None, split: str | None = None, label: str | None = None
) -> QuerySet[Image]:
    images = Image.objects.select_related("dataset").prefetch_related("findings__concepts")
    if dataset is not None:
        images = images.filter(dataset=dataset)
    if split:
        images = images.filter(split=split)
    if label:
        images = images.filter(label=label)
    return images.order_by("id")


def image_get(*, pk: int, dataset: Dataset | None = None) -> Image:
    """An image with its dataset (one of ``dataset`` when given); Http404 if there is none."""
    images = Image.objects.select_related("dataset")
    return get_object_or_404(images if dataset is None else images.filter(dataset=dataset), pk=pk)


def job_list(*, dataset: Dataset | None = None) -> QuerySet[Job]:
    jobs_fail_stale()
    jobs = Job.objects.select_related("dataset", "created_by")
    if dataset is not None:
        jobs = jobs.filter(dataset=dataset)
    return jobs.order_by("-created_at", "-id")


def patch_counts(*, dataset: Dataset) -> dict[str, dict[str, int]]:
    """{split: {label: n}} of the dataset's current patches."""
    rows = (
        Patch.objects.filter(image__dataset=dataset)
        .values("image__split", "label")
        .annotate(n=Count("id"))
        .order_by("image__split", "label")
    )
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["image__split"], {})[row["label"]] = row["n"]
    return counts


def dataset_summary(*, dataset: Dataset, user: Any) -> dict[str, Any]:
    """Images per split and label, findings per pathology, patches per split and label, for the dataset page
    and API. The label, finding and per-label patch counts are the images' truth (a patch's label is its
    finding's pathology): for a user the truth rule hides it from, labels and findings are empty and patches
    counted per split only, under "all" (in a small dataset or split they would tell each image's label)."""
    sees_truth = user_sees_truth(user, dataset)
    per_split = dataset.images.values("split").annotate(n=Count("id"), patients=Count("patient_id", distinct=True))
    per_label = dataset.images.values("label").annotate(n=Count("id"))
    findings = (
        Finding.objects.filter(image__dataset=dataset)
        .values("pathology")
        .annotate(n=Count("id"), abnormal=Count("id", filter=~Q(pathology="normal")))
    )
    splits = {row["split"]: {"images": row["n"], "patients": row["patients"]} for row in per_split}
    patches = patch_counts_seen(user, dataset, patch_counts(dataset=dataset))
    split_rows = [
        {
            "key": key,
            "label": text,
            "images": splits.get(key, {}).get("images", 0),
            "patients": splits.get(key, {}).get("patients", 0),
            "patches": [patches.get(key, {}).get(name, 0) for name in dataset.classes] if sees_truth else [],
            "patch_total": sum(patches.get(key, {}).values()),
        }
        for key, text in Image.Split.choices
    ]
    return {
        "splits": splits,
        "split_rows": split_rows,
        "labels": {row["label"]: row["n"] for row in per_label} if sees_truth else {},
        "findings": {row["pathology"]: row["n"] for row in findings} if sees_truth else {},
        "patches": patches,
    }


def trained_model_list() -> QuerySet[TrainedModel]:
    return TrainedModel.objects.select_related("dataset", "job").order_by("-created_at", "-id")


def trained_model_get(*, pk: int) -> TrainedModel:
    """A model with its dataset (the blindness rule reads it); Http404 if there is none."""
    return get_object_or_404(TrainedModel.objects.select_related("dataset"), pk=pk)


def _curves(history: list[dict[str, Any]], classes: list[str]) -> dict[str, str]:
    epochs = [row["epoch"] for row in history]
    loss = line_chart(
        [
            ("train loss", epochs, [r.get("train_loss") for r in history]),
            ("validation loss", epochs, [r.get("val_loss") for r in history]),
        ],
        title="Loss per epoch",
        x_label="epoch",
        y_label="cross-entropy",
        integer_x=True,
    )
    auc = line_chart(
        [(name, epochs, [(r.get("val_auc") or {}).get(name) for r in history]) for name in classes],
        title="Validation AUC per epoch (hold-out split)",
        x_label="epoch",
        y_label="AUC",
        y_range=(0.4, 1.0),
        integer_x=True,
    )
    return {"loss": loss, "auc": auc}


def _roc_chart(metrics: dict[str, Any], classes: list[str]) -> str:
    per_class = metrics.get("per_class", {})
    series = []
    for name in classes:
        roc = (per_class.get(name) or {}).get("roc") or {}
        auc = (per_class.get(name) or {}).get("auc")
        label = f"{name} (AUC {auc:.3f})" if auc is not None else name
        series.append((label, roc.get("fpr", []), roc.get("tpr", [])))
    return line_chart(
        series,
        title="ROC curves, one vs rest (test split)",
        x_label="false positive rate",
        y_label="true positive rate",
        x_range=(0, 1),
        y_range=(0, 1),
        diagonal=True,
        legend="bottom-right",
    )


def model_report(*, trained: TrainedModel) -> dict[str, Any]:
    """Everything the model page shows: curves, evaluation tables, coverage and selected units."""
    classes, metrics = list(trained.classes), trained.metrics or {}
    per_class = metrics.get("per_class", {})
    matrix = metrics.get("confusion_matrix") or []
    peak = max((max(row) for row in matrix if row), default=1) or 1
    confusion = [
        {"name": classes[i], "cells": [{"n": n, "shade": round(0.08 + 0.72 * n / peak, 2)} for n in row]}
        for i, row in enumerate(matrix)
    ]
    units = Unit.objects.filter(model=trained).exclude(selected_for="").select_related("suggested_concept")
    by_class: dict[str, list[Unit]] = {name: [] for name in classes}
    for unit in units:  # a unit in two classes' lists is shown in both
        for name in unit.selections:
            by_class.setdefault(name, []).append(unit)
    for name, class_units in by_class.items():
        class_units.sort(key=functools.partial(_rank_in, name))
    previews = unit_previews([u.pk for u in units])
    mining = trained.mining or {}
    coverage_rows = [
        {
            "name": name,
            "coverage": (mining.get("coverage") or {}).get(name),
            "selected": len(by_class.get(name, [])),
            "named": sum(1 for u in by_class.get(name, []) if u.suggested_iou > INTERPRETABLE_IOU),
        }
        for name in classes
    ]
    return {
        "curves": _curves(trained.history or [], classes),
        "roc": _roc_chart(metrics, classes),
        "per_class": [{"name": name, **(per_class.get(name) or {})} for name in classes],
        "confusion": confusion,
        "mean_probability": metrics.get("mean_probability_by_true_class") or {},
        "breakdown": metrics.get("breakdown") or {},
        "coverage": coverage_rows,
        "units_by_class": [
            {
                "name": name,
                "units": [
                    {"unit": u, "rank": u.selections[name], "previews": previews.get(u.pk, [])}
                    for u in by_class.get(name, [])
                ],
            }
            for name in classes
        ],
        "mining": mining,
        "causal": [
            {"name": name, **entry} for name, entry in ((mining.get("causal") or {}).get("per_class") or {}).items()
        ],
        "quantile_percent": f"{100 * float(mining.get('quantile', 0.005)):g}",
    }


def _rank_in(name: str, unit: Unit) -> int:
    return int(unit.selections[name])


def unit_previews(unit_ids: list[int], per_unit: int = 4) -> dict[int, list[str]]:
    """The crop file names of each unit's first few top patches, in one query."""
    rows = (
        TopActivation.objects.filter(unit_id__in=unit_ids, rank__lte=per_unit)
        .order_by("unit_id", "rank")
        .values_list("unit_id", "patch__crop")
    )
    previews: dict[int, list[str]] = {}
    for unit_id, crop in rows:
        if crop:
            previews.setdefault(unit_id, []).append(crop)
    return previews
