"""Reads. Querysets and small summaries for pages and the API; no writes except the stale-job sweep
that every job listing runs first, so nobody ever sees a dead job as 'running'."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from .models import Dataset, Finding, Image, Job, Patch
from .services.jobs import jobs_fail_stale

__all__ = ["dataset_list", "dataset_summary", "image_list", "job_list", "patch_counts"]


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.annotate(
        image_count=Count("images", distinct=True),
        patient_count=Count("images__patient_id", distinct=True),
    ).order_by("-created_at")


def image_list(*, dataset: Dataset | None = None, split: str | None = None, label: str | None = None) -> QuerySet[Image]:
    images = Image.objects.select_related("dataset").prefetch_related("findings__concepts")
    if dataset is not None:
        images = images.filter(dataset=dataset)
    if split:
        images = images.filter(split=split)
    if label:
        images = images.filter(label=label)
    return images.order_by("id")


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


def dataset_summary(*, dataset: Dataset) -> dict[str, Any]:
    """Images per split and label, findings per pathology, for the dataset page."""
    per_split = dataset.images.values("split").annotate(
        n=Count("id"), patients=Count("patient_id", distinct=True)
    )
    per_label = dataset.images.values("label").annotate(n=Count("id"))
    findings = (
        Finding.objects.filter(image__dataset=dataset)
        .values("pathology")
        .annotate(n=Count("id"), abnormal=Count("id", filter=~Q(pathology="normal")))
    )
    splits = {row["split"]: {"images": row["n"], "patients": row["patients"]} for row in per_split}
    patches = patch_counts(dataset=dataset)
    split_rows = [
        {
            "key": key,
            "label": text,
            "images": splits.get(key, {}).get("images", 0),
            "patients": splits.get(key, {}).get("patients", 0),
            "patches": [patches.get(key, {}).get(name, 0) for name in dataset.classes],
        }
        for key, text in Image.Split.choices
    ]
    return {
        "splits": splits,
        "split_rows": split_rows,
        "labels": {row["label"]: row["n"] for row in per_label},
        "findings": {row["pathology"]: row["n"] for row in findings},
        "patches": patches,
    }
