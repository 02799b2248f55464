"""manage.py run_demo_jobs: run the demo pipeline through the real Celery worker, with progress in the terminal."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotator.demo import DEMO_MAMMOGRAM_DATASET
from annotator.models import Dataset, Job
from annotator.selectors import job_list
from annotator.services.jobs import job_create


class Command(BaseCommand):
    help = "Enqueue the demo pipeline (patch extraction) for the demo dataset and wait for the worker to finish it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dataset", default=DEMO_MAMMOGRAM_DATASET)
        parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each job")

    def handle(self, *args: Any, **options: Any) -> None:
        dataset = Dataset.objects.filter(name=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {options['dataset']!r}; run make_demo_data first")
        if dataset.jobs.filter(kind=Job.Kind.EXTRACT_PATCHES, status=Job.Status.SUCCEEDED).exists():
            self.stdout.write("Patch extraction already done for the demo dataset.")
            return
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset)
        self._follow(job, options["timeout"])

    def _follow(self, job: Job, timeout: float) -> None:
        """Draw a progress bar until the job ends; fail loudly if no worker picks it up."""
        started = time.monotonic()
        while True:
            list(job_list())  # sweeps jobs whose worker died
            job.refresh_from_db()
            bar = "#" * int(job.progress * 30)
            sys.stdout.write(f"\r  {job.get_kind_display():<18} [{bar:<30}] {job.progress:4.0%}  {job.message[:50]:<50}")
            sys.stdout.flush()
            if job.is_finished:
                sys.stdout.write("\n")
                break
            if time.monotonic() - started > timeout:
                raise CommandError(f"job #{job.pk} did not finish within {timeout:.0f} s (is the worker running?)")
            time.sleep(0.5)
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"job #{job.pk} {job.status}: {job.error or job.message}")
        self.stdout.write(self.style.SUCCESS(f"  job #{job.pk} done in {time.monotonic() - started:.1f} s: {job.result}"))
