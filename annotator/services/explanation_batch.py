"""The `explain` job: every image of one split explained by one model (an Explanation each, replacing
earlier ones), then the split's summary on the model: the image-level AUC of the decision rule and, on
the hold-out split, how well the explanations match the images' descriptions (DeepMiner section 3.2).

Cancelled part-way, the explanations already made stay (each is complete and is what the image page
would compute); the summary is only written when every image was explained.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import transaction

from mining.evaluation import ImageDeletion
from mining.explain import Explanation as Explained
from mining.explain import image_level_auc
from mining.progress import CancelFn, ProgressFn, check_cancel

from ..errors import ApplicationError
from ..models import Dataset, Explanation, Image, Job, TrainedModel
from ..selectors.explanations import UnitName
from .explanation_evaluation import evaluation_summary, image_evaluation
from .explanations import Evaluate, explanation_make, network_for
from .job_state import JobReporter

__all__ = ["EXPLAIN_DEFAULTS", "explain_batch", "explain_params_validate", "run_explain"]

EXPLAIN_DEFAULTS: dict[str, Any] = {"split": Image.Split.HOLDOUT, "method": Explanation.Method.CAM}


def explain_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    model_id = params.get("model")
    trained = TrainedModel.objects.filter(pk=int(str(model_id))).first() if str(model_id or "").isdigit() else None
    if trained is None:
        raise ApplicationError("a batch explanation needs a trained model (params.model)")
    if dataset is not None and trained.dataset_id != dataset.pk:
        raise ApplicationError(f"model #{trained.pk} was trained on another dataset")
    cleaned = {**EXPLAIN_DEFAULTS, **{k: v for k, v in params.items() if v not in (None, "")}, "model": trained.pk}
    if cleaned["split"] not in Image.Split.values:
        raise ApplicationError(f"split must be one of {', '.join(Image.Split.values)}")
    if cleaned["method"] not in Explanation.Method.values:
        raise ApplicationError(f"method must be one of {', '.join(Explanation.Method.values)}")
    return {key: cleaned[key] for key in ("model", "split", "method")}


def explain_batch(*, job: Job, progress: ProgressFn, cancelled: CancelFn) -> dict[str, Any]:
    trained = TrainedModel.objects.select_related("dataset").get(pk=job.params["model"])
    split, method = job.params["split"], job.params["method"]
    images = list(Image.objects.filter(dataset=trained.dataset, split=split).prefetch_related("findings__concepts"))
    if not images:
        raise ApplicationError(f"the {split} split of {trained.dataset.name} has no images")
    classes = list(trained.classes)
    truth: list[int] = []
    scores: list[list[float]] = []
    records: list[dict[str, Any]] = []
    deletions: list[ImageDeletion] = []
    network = network_for(trained)
    evaluated = split == Image.Split.HOLDOUT

    def evaluate(image: Image) -> Evaluate:
        def record(result: Explained, names: dict[int, UnitName], tissue: np.ndarray) -> dict[str, Any]:
            row, deletion = image_evaluation(
                image=image,
                result=result,
                names=names,
                model=network.model,
                normal_class=network.normal_class,
                tissue=tissue,
            )
            records.append(row)
            deletions.append(deletion)
            return row

        return record

    for index, image in enumerate(images, start=1):
        check_cancel(cancelled)
        explanation = explanation_make(
            trained=trained,
            image=image,
            method=method,
            job_id=job.pk,
            replace=True,
            evaluate=evaluate(image) if evaluated else None,
        )
        truth.append(classes.index(image.label) if image.label in classes else -1)
        scores.append([explanation.scores[name] for name in classes])
        progress(index, len(images), f"Explained {index}/{len(images)} {split} images")
    check_cancel(cancelled)
    known = [i for i, t in enumerate(truth) if t >= 0]
    summary: dict[str, Any] = {
        "job": job.pk,
        "method": method,
        "images": len(images),
        "decided": {name: sum(1 for s in scores if int(np.argmax(s)) == i) for i, name in enumerate(classes)},
        "image_auc": image_level_auc(
            np.asarray([truth[i] for i in known], dtype=np.int64),
            np.asarray([scores[i] for i in known], dtype=np.float64).reshape(len(known), len(classes)),
            classes,
        ),
    }
    if evaluated:
        summary["evaluation"] = evaluation_summary(records, deletions)
    with transaction.atomic():
        locked = TrainedModel.objects.select_for_update().get(pk=trained.pk)
        locked.explanations = {**locked.explanations, split: summary}
        locked.save(update_fields=["explanations"])
    return {"model": trained.pk, "split": split, **summary}


def run_explain(job: Job, reporter: JobReporter) -> dict[str, Any]:
    return explain_batch(job=job, progress=reporter.progress, cancelled=reporter.cancelled)
