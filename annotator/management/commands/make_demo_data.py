"""manage.py make_demo_data --images N --fracture-images M --seed S: write mammogram and hip phantoms
+ manifests, then import them. Idempotent: a demo dataset that exists is kept unless --replace."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.demo import (
    DEMO_FRACTURE_DATASET,
    DEMO_MAMMOGRAM_DATASET,
    demo_dataset_create,
    demo_fracture_dataset_create,
)
from annotator.errors import ApplicationError
from annotator.models import Dataset
from annotator.selectors.imports import import_summary


class Command(BaseCommand):
    help = (
        "Build the demo datasets and import them: mammogram-like phantoms with planted findings, and hip "
        "radiograph phantoms with known fracture descriptors, queued for labelling."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--images", type=int, default=200, help="number of images (two views per patient)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--name", default=DEMO_MAMMOGRAM_DATASET)
        parser.add_argument("--folder", type=Path, default=None, help="where the PNGs and manifest.csv go")
        parser.add_argument(
            "--fracture-images", type=int, default=200, help="hip radiograph phantoms to label (0: no fracture dataset)"
        )
        parser.add_argument("--fracture-name", default=DEMO_FRACTURE_DATASET)
        parser.add_argument("--fracture-folder", type=Path, default=None, help="where the hip PNGs and manifest go")
        parser.add_argument("--replace", action="store_true", help="rebuild even if the datasets exist")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["images"] < 2:
            raise CommandError("--images must be at least 2 (a patient has two views)")
        if options["fracture_images"] < 0:
            raise CommandError("--fracture-images must be 0 (none) or more")
        seed, demo = options["seed"], Path(settings.VAR_DIR) / "demo"
        both = {"seed": seed, "replace": options["replace"]}  # the same for the two datasets
        folder = options["folder"] or demo / f"mammograms-{seed}"
        self._build(demo_dataset_create, folder, n_images=options["images"], name=options["name"], **both)
        if options["fracture_images"]:
            hips = options["fracture_folder"] or demo / f"hips-{seed}"
            n_hips, hips_name = options["fracture_images"], options["fracture_name"]
            dataset = self._build(demo_fracture_dataset_create, hips, n_images=n_hips, name=hips_name, **both)
            self.stdout.write(f"  Label them at /datasets/{dataset.pk}/fractures/")

    def _build(self, create: Callable[..., tuple[Dataset, bool]], folder: Path, **arguments: Any) -> Dataset:
        """Run ``create(folder=folder, **arguments)`` and report what it imported (or that it kept the dataset)."""
        started = time.monotonic()
        try:
            dataset, created = create(folder=folder, **arguments)
        except ApplicationError as exc:
            for error in exc.extra.get("errors", []):
                self.stderr.write(f"line {error['line']}: {error['reason']}")
            raise CommandError(exc.message) from exc
        if not created:
            self.stdout.write(f"Dataset {dataset.name!r} already exists (use --replace to rebuild it).")
            return dataset
        summary = import_summary(dataset)
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {dataset.name!r}: {summary['images']} images from {folder} "
                f"in {time.monotonic() - started:.1f} s"
            )
        )
        self.stdout.write(f"  {summary}")
        return dataset
