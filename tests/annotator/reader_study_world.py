"""Reader studies for tests: a real one (phantom hips, a classifier with a real checkpoint, a sentence
generator trained by a real caption job, SmoothGrad maps), and a cheap one whose content is planted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from annotator.demo import demo_fracture_dataset_create
from annotator.models import Dataset, Image, Job, ReaderStudy, SentenceModel
from annotator.services.fractures import fracture_descriptor_save
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from annotator.services.reader_studies import ImageContent, StudyDesign, reader_study_store
from tests.factories import random_model

__all__ = ["LABELLED", "hip_models", "planted_study"]

LABELLED = 2  # of the first training images, those the non-reading expert labelled


def hip_models(folder: Path, *, author: Any, n_images: int = 16) -> tuple[Dataset, Any, SentenceModel]:
    """An open phantom hip dataset, a whole-image classifier on it and a sentence generator on that; the
    first LABELLED training images labelled "no fracture" by ``author``."""
    dataset, _ = demo_fracture_dataset_create(folder=folder, n_images=n_images, seed=7, name="study-hips")
    Dataset.objects.filter(pk=dataset.pk).update(annotation_blind=False)
    dataset.refresh_from_db()
    classifier = random_model(
        dataset=dataset, patch_params={"input_size": 64, "side_fraction": 1.0, "whole_image": True}
    )
    job = job_create(kind=Job.Kind.CAPTION, dataset=dataset, params={"model": classifier.pk, "epochs": 2})
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    for image in Image.objects.filter(dataset=dataset, split="train").order_by("pk")[:LABELLED]:
        fracture_descriptor_save(image=image, expert=author, version=0, fracture=False)
    return dataset, classifier, SentenceModel.objects.get(job=job)


def planted_study(
    *, dataset: Dataset, classifier: Any, readers: list[Any], images: list[Image], name: str = "planted", **kw: Any
) -> ReaderStudy:
    """A study of every arm whose content is planted (the images' own files as pictures; "alpha words <id>"
    the generated sentence, "omega words <id>" the expert's), for what needs rows, not a model."""
    contents = [
        ImageContent(
            image=image,
            pictures=dict.fromkeys(ReaderStudy.Arm.values, image.file.name),
            generated=f"alpha words {image.pk}",
            expert=f"omega words {image.pk}",
        )
        for image in images
    ]
    design = StudyDesign(
        name=name,
        dataset=dataset,
        classifier=classifier,
        sentence_model=None,
        arms=kw.pop("arms", list(ReaderStudy.Arm.values)),
        readers=readers,
    )
    return reader_study_store(design=design, selection={"images": len(images)}, contents=contents, **kw)
