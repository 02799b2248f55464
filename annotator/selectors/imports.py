"""Reads about a finished dataset import: the counts the import commands print."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mining.splits import SPLITS

from ..models import PATHOLOGIES, Dataset, Finding

__all__ = ["import_summary"]


def import_summary(dataset: Dataset) -> dict[str, Any]:
    """Counts for the command's report: images, patients per split, findings per pathology."""
    images = dataset.images.all()
    patients: dict[str, int] = {
        split: images.filter(split=split).values("patient_id").distinct().count() for split in SPLITS
    }
    findings = Counter(Finding.objects.filter(image__dataset=dataset).values_list("pathology", flat=True))
    labels = Counter(images.values_list("label", flat=True))
    return {
        "images": images.count(),
        "patients": patients,
        "labels": dict(sorted(labels.items())),
        "findings": {pathology: findings.get(pathology, 0) for pathology, _ in PATHOLOGIES},
    }
