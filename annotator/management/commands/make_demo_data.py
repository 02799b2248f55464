"""manage.py make_demo_data --images N --seed S: write mammogram phantoms + manifest, then import them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.demo import DEMO_MAMMOGRAM_DATASET, demo_dataset_create
from annotator.errors import ApplicationError
from annotator.importing import import_summary


class Command(BaseCommand):
    help = "Build the demo dataset of mammogram-like phantoms with planted findings and import it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--images", type=int, default=200, help="number of images (two views per patient)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--name", default=DEMO_MAMMOGRAM_DATASET)
        parser.add_argument("--folder", type=Path, default=None, help="where the PNGs and manifest.csv go")
        parser.add_argument("--replace", action="store_true", help="rebuild even if the dataset exists")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["images"] < 2:
            raise CommandError("--images must be at least 2 (a patient has two views)")
        folder = options["folder"] or Path(settings.VAR_DIR) / "demo" / f"mammograms-{options['seed']}"
        started = time.monotonic()
        try:
            dataset, created = demo_dataset_create(
                folder=folder, n_images=options["images"], seed=options["seed"], name=options["name"],
                replace=options["replace"],
            )  # fmt: skip
        except ApplicationError as exc:
            for error in exc.extra.get("errors", []):
                self.stderr.write(f"line {error['line']}: {error['reason']}")
            raise CommandError(exc.message) from exc
        if not created:
            self.stdout.write(f"Dataset {dataset.name!r} already exists (use --replace to rebuild it).")
            return
        summary = import_summary(dataset)
        self.stdout.write(self.style.SUCCESS(
            f"Imported {dataset.name!r}: {summary['images']} images from {folder} "
            f"in {time.monotonic() - started:.1f} s"
        ))  # fmt: skip
        self.stdout.write(f"  {summary}")
