"""manage.py run_demo_jobs: run the demo pipeline through the real Celery worker, with progress in the terminal."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotator.demo import DEMO_FRACTURE_DATASET, DEMO_MAMMOGRAM_DATASET
from annotator.models import Dataset, Image, Job, TrainedModel
from annotator.selectors import job_list
from annotator.services.jobs import job_create

# The demo hip classifier: about a minute on 2 cores (55 s in a make demo run: test AUC 0.90 on its 20 hips). Mirrored and shifted (the whole-image default), 20 epochs
# of 32 reached test AUC 0.945 on 200 hip phantoms (140 training), against 0.76 after 4 epochs.
HIP_EPOCHS, HIP_INPUT, HIP_BATCH = 20, 128, 32


class Command(BaseCommand):
    help = (
        "Run the demo pipeline on the demo dataset through the Celery worker: patch extraction, training, "
        "unit mining, then batch explanations of the test split (image-level AUC) and the hold-out split (the "
        "explanations' evaluation); on the demo hips a whole-image fracture classifier and a sentence generator. "
        "Steps already done are skipped."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dataset", default=DEMO_MAMMOGRAM_DATASET)
        # One epoch of the from-scratch preset reaches test malignant AUC ~0.99 on 500 phantoms (~5 min on 2 cores).
        parser.add_argument("--epochs", type=int, default=1, help="training epochs (1 suffices on the phantoms)")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for each job")

    def handle(self, *args: Any, **options: Any) -> None:
        dataset = Dataset.objects.filter(name=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {options['dataset']!r}; run make_demo_data first")
        done = dataset.jobs.filter(status=Job.Status.SUCCEEDED)
        if not done.filter(kind=Job.Kind.EXTRACT_PATCHES).exists():
            self._follow(job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset), options["timeout"])
        trained = TrainedModel.objects.filter(dataset=dataset).order_by("-created_at").first()
        if trained is None:
            params = {"epochs": options["epochs"]} if options["epochs"] else {}
            self._follow(job_create(kind=Job.Kind.TRAIN, dataset=dataset, params=params), options["timeout"])
            trained = TrainedModel.objects.filter(dataset=dataset).order_by("-created_at").first()
        if trained is not None and not trained.mining:
            job = job_create(kind=Job.Kind.MINE, dataset=dataset, params={"model": trained.pk})
            self._follow(job, options["timeout"])
            trained.refresh_from_db()
        for split in (Image.Split.TEST, Image.Split.HOLDOUT):
            if trained is not None and split not in trained.explanations:
                job = job_create(kind=Job.Kind.EXPLAIN, dataset=dataset, params={"model": trained.pk, "split": split})
                self._follow(job, options["timeout"])
        self._hips(options["timeout"])
        self.stdout.write(
            self.style.SUCCESS(
                "Demo pipeline done: the trained model's units are ready to annotate, and its test and hold-out "
                "images are explained (open any image of the dataset)."
            )
        )

    def _hips(self, timeout: float) -> None:
        """The demo hips: a whole-image fracture classifier, then a sentence generator on its features
        (trained on the sentences the phantoms' descriptor columns give, as no expert has labelled yet)."""
        hips = Dataset.objects.filter(name=DEMO_FRACTURE_DATASET).first()
        if hips is None:
            return
        classifier = TrainedModel.objects.filter(dataset=hips).order_by("-created_at").first()
        if classifier is None:
            params = {"input": "whole_image", "epochs": HIP_EPOCHS, "patch_size": HIP_INPUT, "batch_size": HIP_BATCH}
            self._follow(job_create(kind=Job.Kind.TRAIN, dataset=hips, params=params), timeout)
            classifier = TrainedModel.objects.filter(dataset=hips).order_by("-created_at").first()
        if classifier is not None and not classifier.sentence_models.exists():
            job = job_create(kind=Job.Kind.CAPTION, dataset=hips, params={"model": classifier.pk})
            self._follow(job, timeout)

    def _follow(self, job: Job, timeout: float) -> None:
        """Draw a progress bar until the job ends; fail loudly if no worker picks it up."""
        started = time.monotonic()
        while True:
            list(job_list())  # sweeps jobs whose worker died
            job.refresh_from_db()
            bar = "#" * int(job.progress * 30)
            sys.stdout.write(
                f"\r  {job.get_kind_display():<18} [{bar:<30}] {job.progress:4.0%}  {job.message[:50]:<50}"
            )
            sys.stdout.flush()
            if job.is_finished:
                sys.stdout.write("\n")
                break
            if time.monotonic() - started > timeout:
                raise CommandError(f"job #{job.pk} did not finish within {timeout:.0f} s (is the worker running?)")
            time.sleep(0.5)
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"job #{job.pk} {job.status}: {job.error or job.message}")
        self.stdout.write(self.style.SUCCESS(f"  job #{job.pk} done in {time.monotonic() - started:.0f} s"))
