"""`manage.py make_renditions [--dataset ID ...] [--force]`: the display renditions of images stored before
renditions were made at import (or all of them again with --force, e.g. after the window changed; their
deep zoom pyramids go with the old renditions and are made again on their next view).

A thin adapter over annotator.services.renditions.renditions_make.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from annotator.models import Image
from annotator.services.renditions import renditions_make


class Command(BaseCommand):
    help = "Make the 8-bit windowed display renditions images lack (every image's with --force)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", type=int, action="append", help="only this dataset (repeatable)")
        parser.add_argument("--force", action="store_true", help="remake existing renditions too")

    def handle(self, *args: Any, **options: Any) -> None:
        images = Image.objects.all()
        if options["dataset"]:
            images = images.filter(dataset_id__in=options["dataset"])

        def progress(done: int, total: int, message: str) -> None:
            if done == total or done % 50 == 0:
                self.stdout.write(f"  {message}")

        made, kept = renditions_make(images=images, force=options["force"], progress=progress)
        self.stdout.write(self.style.SUCCESS(f"{made} renditions made, {kept} kept."))
