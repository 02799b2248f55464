"""Reads for hip-fracture labelling: the labelling queue, progress, who sees which labels, history, exports.

Who sees what is the one blindness rule of ``permissions.user_sees_others_labels``, as for the unit survey.
The queue is every image of the dataset the user has not labelled yet, in image-id order, so two tabs
and a reload agree on what comes next.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from ..models import AnnotationChange, Dataset, FractureDescriptor, Image
from ..permissions import user_sees_others_labels, user_sees_truth

__all__ = [
    "EXPORT_COLUMNS",
    "export_columns",
    "fracture_dataset_get",
    "fracture_dataset_list",
    "fracture_export_rows",
    "fracture_first_image",
    "fracture_history",
    "fracture_image_neighbours",
    "fracture_images",
    "fracture_label_get",
    "fracture_labels_visible",
    "fracture_next_image",
    "fracture_progress",
    "fracture_queue",
    "fracture_truth",
]

DESCRIPTORS = ("fracture", "displacement", "comminuted", "impacted", "location", "avulsed_fragment")
EXPORT_COLUMNS = (
    "image_id",
    "source_name",
    "patient_id",
    "split",
    "expert",
    *DESCRIPTORS,
    "sentence",
    "version",
    "updated_at",
    *[f"truth_{name}" for name in DESCRIPTORS],
    "truth_report",
)
_TRUE, _FALSE = {"true", "yes", "1", "y", "t"}, {"false", "no", "0", "n", "f", ""}


def fracture_dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.filter(kind=Dataset.Kind.HIP_FRACTURE).order_by("-created_at")


def fracture_dataset_get(*, pk: int) -> Dataset:
    """A hip-fracture dataset. Http404 for a missing one or another kind: pages answer it with the 404
    page, the API (DRF turns Http404 into NotFound) with its JSON 404."""
    return get_object_or_404(fracture_dataset_list(), pk=pk)


def fracture_first_image(*, dataset: Dataset) -> int | None:
    """The id of the dataset's first image in queue order, labelled or not."""
    return dataset.images.order_by("id").values_list("id", flat=True).first()


def fracture_images(image_ids: list[int | None]) -> QuerySet[Image]:
    """These images (ids that are None are skipped), for prefetching their deep zoom descriptors."""
    return Image.objects.filter(pk__in=[i for i in image_ids if i]).only("display", "overlay", "width", "height")


def fracture_queue(*, dataset: Dataset, user: Any) -> QuerySet[Image]:
    """The dataset's images ``user`` has not labelled yet, in a stable order (image id)."""
    return dataset.images.exclude(fracture_descriptors__expert=user).order_by("id")


def fracture_next_image(*, dataset: Dataset, user: Any, after: int | None = None) -> int | None:
    """The id of the next image ``user`` has not labelled: the first after ``after`` (wrapping round to
    the start), never ``after`` itself; None when every image is done."""
    queue = fracture_queue(dataset=dataset, user=user).values_list("id", flat=True)
    if after is None:
        return queue.first()
    return queue.filter(id__gt=after).first() or queue.exclude(id=after).first()


def fracture_progress(*, dataset: Dataset, user: Any) -> dict[str, int]:
    """Counts for the progress line: images in all, labelled by me, labelled by at least one expert."""
    labels = FractureDescriptor.objects.filter(image__dataset=dataset)
    return {
        "total": dataset.images.count(),
        "mine": labels.filter(expert_id=getattr(user, "pk", None)).count(),
        "everyone": labels.values("image_id").distinct().count(),
    }


def fracture_image_neighbours(*, image: Image) -> dict[str, int | None]:
    """The previous and next image of the same dataset in queue order (labelled or not)."""
    siblings = Image.objects.filter(dataset_id=image.dataset_id).values_list("id", flat=True)
    return {
        "previous": siblings.filter(id__lt=image.pk).order_by("-id").first(),
        "next": siblings.filter(id__gt=image.pk).order_by("id").first(),
    }


def fracture_labels_visible(*, image: Image, user: Any) -> QuerySet[FractureDescriptor]:
    """The labels of ``image`` that ``user`` may see (their own only while the dataset is blind)."""
    labels = FractureDescriptor.objects.filter(image=image).select_related("expert").order_by("expert__username")
    if user_sees_others_labels(user, image.dataset):
        return labels
    return labels.filter(expert_id=user.pk)


def fracture_label_get(*, pk: int, user: Any) -> FractureDescriptor:
    """One label ``user`` may see. Http404 when it is missing, and when blindness hides it: a hidden label
    is answered like a missing one."""
    label = get_object_or_404(FractureDescriptor.objects.select_related("image__dataset"), pk=pk)
    return get_object_or_404(fracture_labels_visible(image=label.image, user=user), pk=pk)


def fracture_history(*, image: Image, user: Any) -> QuerySet[AnnotationChange]:
    """Every change to the labels of ``image`` that ``user`` may see, newest first."""
    changes = AnnotationChange.objects.filter(
        target=AnnotationChange.Target.FRACTURE_DESCRIPTOR, image=image
    ).select_related("user")
    if user_sees_others_labels(user, image.dataset):
        return changes.order_by("-created_at", "-id")
    own = FractureDescriptor.objects.filter(image=image, expert_id=user.pk).values_list("id", flat=True)
    return changes.filter(target_id__in=list(own)).order_by("-created_at", "-id")


def fracture_truth(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The known descriptors and report an image's metadata carries (phantoms, or a report column of a
    real dataset); {} when it carries none. A manifest cell "true"/"1" arrives as text or a number."""
    metadata = metadata or {}
    truth: dict[str, Any] = {}
    for name in DESCRIPTORS:
        if name not in metadata:
            continue
        value = metadata[name]
        if name in ("displacement", "location"):
            truth[name] = "" if value is None else str(value)
        elif isinstance(value, bool) or value is None:
            truth[name] = bool(value)
        elif str(value).strip().lower() in _TRUE | _FALSE:
            truth[name] = str(value).strip().lower() in _TRUE
        else:
            truth[name] = value
    for key in ("report", "sentence", "report_text"):
        if metadata.get(key):
            truth["report"] = str(metadata[key])
            break
    return truth


def export_columns(*, dataset: Dataset, user: Any) -> tuple[str, ...]:
    """The CSV columns of the fracture export for ``user``: without the truth for a blind expert."""
    if user_sees_truth(user, dataset):
        return EXPORT_COLUMNS
    return tuple(name for name in EXPORT_COLUMNS if not name.startswith("truth_"))


def fracture_export_rows(*, dataset: Dataset, user: Any, chunk: int = 2000) -> Iterator[dict[str, Any]]:
    """One record per visible label (image x expert), in image order, read ``chunk`` rows at a time by
    keyset pagination, so memory stays flat and no cursor is held open while the response streams.
    The truth_* columns only for users who may see the images' ground truth (see `export_columns`)."""
    with_truth = user_sees_truth(user, dataset)
    labels = FractureDescriptor.objects.filter(image__dataset=dataset)
    if not user_sees_others_labels(user, dataset):
        labels = labels.filter(expert_id=user.pk)
    fields = (
        "id",
        "image_id",
        "image__source_name",
        "image__patient_id",
        "image__split",
        "expert__username",
        *DESCRIPTORS,
        "sentence",
        "version",
        "updated_at",
        "image__metadata",
    )
    last: tuple[int, int] = (0, 0)
    while True:
        after = Q(image_id__gt=last[0]) | Q(image_id=last[0], id__gt=last[1])
        batch = list(labels.filter(after).order_by("image_id", "id").values(*fields)[:chunk])
        for row in batch:
            truth = fracture_truth(row["image__metadata"]) if with_truth else {}
            record = {
                "image_id": row["image_id"],
                "source_name": row["image__source_name"],
                "patient_id": row["image__patient_id"],
                "split": row["image__split"],
                "expert": row["expert__username"],
                **{name: row[name] for name in DESCRIPTORS},
                "sentence": row["sentence"],
                "version": row["version"],
                "updated_at": row["updated_at"].isoformat(),
            }
            if with_truth:
                record.update({f"truth_{name}": truth.get(name) for name in DESCRIPTORS})
                record["truth_report"] = truth.get("report", "")
            yield record
        if len(batch) < chunk:
            return
        last = (batch[-1]["image_id"], batch[-1]["id"])
