"""Creating a reader study as a job: the request checks the design and chooses the images at once (a bad
study is refused on the form), and a worker computes every item's content (a SmoothGrad map and the
generated sentence per image, seconds each) with progress and cancel, then stores the study.

The job's params hold ids only: the study's name, classifier, sentence generator, arms, readers, the image
ids chosen, how they were chosen (``selection``, kept on the study) and the seed. The worker checks the design
again (a study of that name may have been created meanwhile, a reader may have lost their role), and the
study and its job's success commit in one transaction, so a killed worker leaves no study, only item pictures
that no row names (deleted on a failure it sees).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from mining.progress import check_cancel

from ..errors import ApplicationError
from ..files import delete_quietly
from ..models import Dataset, Image, Job, SentenceModel, TrainedModel
from .job_state import JobReporter, job_finish_succeeded
from .reader_studies import (
    ImageContent,
    StudyDesign,
    reader_study_store,
    study_design_validate,
    study_image_content,
    study_images_choose,
)

__all__ = ["reader_study_job_params", "reader_study_params_validate", "run_reader_study"]


def reader_study_job_params(
    design: StudyDesign, *, split: str = "", sample: int | None = None, image_ids: Any = (), seed: int = 0
) -> dict[str, Any]:
    """A study's design and image selection as job params (ids), checked: raises ApplicationError."""
    design = study_design_validate(design)
    images = study_images_choose(dataset=design.dataset, split=split, sample=sample, image_ids=image_ids, seed=seed)
    selection = {"split": split, "sample": sample, "seed": seed} if not image_ids else {"images": len(images)}
    return {
        "name": design.name,
        "classifier": design.classifier.pk,
        "sentence_model": design.sentence_model.pk if design.sentence_model else None,
        "arms": list(design.arms),
        "readers": [reader.pk for reader in design.readers],
        "images": [image.pk for image in images],
        "selection": selection,
        "seed": seed,
    }


def _design(params: dict[str, Any], dataset: Dataset | None, created_by: Any = None) -> StudyDesign:
    """The StudyDesign the params name; ApplicationError when one of its rows is gone or not the dataset's."""
    if dataset is None:
        raise ApplicationError("a reader study needs a dataset")
    try:
        classifier = TrainedModel.objects.get(pk=int(params["classifier"]), dataset=dataset)
        generator = params.get("sentence_model")
        sentence_model = SentenceModel.objects.get(pk=int(generator)) if generator else None
        reader_ids = [int(pk) for pk in params["readers"]]
    except (KeyError, TypeError, ValueError, TrainedModel.DoesNotExist, SentenceModel.DoesNotExist) as exc:
        raise ApplicationError(f"bad reader-study parameters: {exc}") from exc
    readers = list(get_user_model().objects.filter(pk__in=reader_ids).order_by("pk"))
    if len(readers) != len(set(reader_ids)):
        raise ApplicationError("a reader of the study no longer exists", {"field": "readers"})
    return StudyDesign(
        name=str(params.get("name") or ""),
        dataset=dataset,
        classifier=classifier,
        sentence_model=sentence_model,
        arms=list(params.get("arms") or []),
        readers=readers,
        created_by=created_by,
    )


def reader_study_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    """The job kind's validator: params as ``reader_study_job_params`` gives them, checked again."""
    design = _design(params, dataset)
    images = params.get("images")
    if not isinstance(images, list) or not images:
        raise ApplicationError("a reader study needs its image ids (params.images)", {"field": "images"})
    checked = reader_study_job_params(design, image_ids=images, seed=int(params.get("seed") or 0))
    return {**checked, "selection": params.get("selection") or checked["selection"]}


def run_reader_study(job: Job, reporter: JobReporter) -> dict[str, Any]:
    params = job.params
    design = study_design_validate(_design(params, job.dataset, created_by=job.created_by))
    images = list(Image.objects.filter(dataset=design.dataset, pk__in=params["images"]).order_by("pk"))
    if len(images) != len(params["images"]):
        raise ApplicationError("some of the study's images were deleted: create the study again")
    written: list[str] = []
    try:
        contents: list[ImageContent] = []
        for done, image in enumerate(images, start=1):
            check_cancel(reporter.cancelled)
            contents.append(study_image_content(image, design, written))
            reporter.progress(done, len(images), f"Item content of {done}/{len(images)} images")
        with transaction.atomic():  # the study and its job's success commit together
            study = reader_study_store(
                design=design, selection=params["selection"], contents=contents, seed=int(params["seed"])
            )
            summary = {"reader_study": study.pk, "items": study.items.count(), "images": len(images)}
            job_finish_succeeded(job_id=job.pk, result=summary)
    except BaseException:
        delete_quietly(written)  # no study row names them
        raise
    return summary
