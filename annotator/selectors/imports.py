"""Reads about dataset imports: the counts the import commands print, and the folders the browser import offers."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from mining.splits import SPLITS

from ..models import PATHOLOGIES, Dataset, Finding

__all__ = ["import_folder_choices", "import_summary"]

FOLDER_CHOICES_MAX = 200


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


def import_folder_choices(roots: list[str]) -> list[str]:
    """The folders directly under each import root (absolute, sorted, at most FOLDER_CHOICES_MAX), for the
    import form to suggest; hidden folders and links leading out of their root are left out."""
    choices: list[str] = []
    for root in roots:
        real_root = Path(os.path.realpath(root))
        try:
            entries = sorted(os.scandir(root), key=lambda entry: entry.name)
        except OSError:
            continue  # a root that is gone or unreadable offers nothing; naming it still says why
        for entry in entries:
            real = Path(os.path.realpath(entry.path))
            if not entry.name.startswith(".") and real.is_dir() and real.is_relative_to(real_root):
                choices.append(entry.path)
    return choices[:FOLDER_CHOICES_MAX]
