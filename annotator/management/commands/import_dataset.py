"""`manage.py import_dataset FOLDER --name NAME [--manifest CSV] [--layout manifest|cbis-ddsm] [--kind ...] [--seed N]`.

A thin adapter over annotator.services.datasets.dataset_import: prints a summary, or every bad row as
``line N: reason`` on stderr and exits non-zero having imported nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotator.errors import ApplicationError
from annotator.selectors.imports import import_summary
from annotator.services.datasets import CLASSES_BY_KIND, LAYOUTS, dataset_import


class Command(BaseCommand):
    help = (
        "Import a folder of images as a new dataset: images + manifest CSV (see annotator/importing/manifest.py "
        "for the columns) or the CBIS-DDSM layout (description CSVs + DICOM tree). All or nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", help="folder holding the images (and the manifest / CBIS-DDSM CSVs)")
        parser.add_argument("--name", required=True, help="name of the new dataset (must be unused)")
        parser.add_argument("--manifest", help="manifest CSV, absolute or relative to FOLDER (default manifest.csv)")
        parser.add_argument("--layout", choices=LAYOUTS, default="manifest")
        parser.add_argument("--kind", choices=list(CLASSES_BY_KIND), default="mammogram")
        parser.add_argument("--seed", type=int, default=0, help="seed of the patient-level 80/10/10 split")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            dataset = dataset_import(
                name=options["name"],
                folder=options["folder"],
                manifest=options["manifest"],
                layout=options["layout"],
                kind=options["kind"],
                seed=options["seed"],
                progress=self._progress if options["verbosity"] >= 2 else _quiet,
            )
        except ApplicationError as exc:
            for error in exc.extra.get("errors", []):
                where = f"{error['file']}: " if error.get("file") else ""
                self.stderr.write(f"{where}line {error['line']}: {error['reason']}")
            raise CommandError(f"{exc.message}; nothing was imported") from exc
        self._print_summary(dataset.name, import_summary(dataset))

    def _progress(self, done: int, total: int, message: str) -> None:
        if done == total or done % 50 == 0:
            self.stdout.write(message)

    def _print_summary(self, name: str, summary: dict[str, Any]) -> None:
        patients = ", ".join(f"{split} {n}" for split, n in summary["patients"].items())
        labels = ", ".join(f"{label} {n}" for label, n in summary["labels"].items())
        findings = ", ".join(f"{pathology} {n}" for pathology, n in summary["findings"].items())
        self.stdout.write(self.style.SUCCESS(f"Imported dataset {name!r}: {summary['images']} images"))
        self.stdout.write(f"  patients per split: {patients}")
        self.stdout.write(f"  images per label:   {labels}")
        self.stdout.write(f"  findings:           {findings}")


def _quiet(done: int, total: int, message: str) -> None:
    """Progress is shown only with --verbosity 2."""
