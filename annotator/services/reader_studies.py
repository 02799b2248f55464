"""Blinded reader studies: creating one (its items' content computed once, here) and a reader's ratings.

An item is one (image, arm). Its content is fixed at creation so the rating page only reads rows: the
SmoothGrad heat over the image (the hip-fracture paper's saliency maps) composited into one picture, the
generated sentence, both, or for the human-vs-machine comparison (the chest X-ray paper's) the generated
and the expert-written sentence in a seeded random order. Pictures are copied under opaque names, so no
file name, model id or image id tells a reader where an item came from; ``sources`` keeps that for the
results only.

The expert-written sentence is the template sentence of the image's expert labels (the one most of them
give), never a reader's own (they would know it). Showing it is showing an expert's answer, so the
comparison arm needs a dataset whose labels an admin has opened (the blindness rule of permissions.py).
"""

from __future__ import annotations

import io
import random
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from PIL import Image as PILImage

from mining.sentence_parse import sentence_from_tokens

from ..errors import ApplicationError
from ..files import delete_quietly, read_png, write_bytes_atomic
from ..models import (
    Dataset,
    Explanation,
    FractureDescriptor,
    Image,
    ReaderStudy,
    SentenceModel,
    StudyAssignment,
    StudyItem,
    StudyRating,
    TrainedModel,
)
from ..permissions import user_can_annotate
from ..selectors.reader_studies import ARM_SCALES, reader_study_items
from .captioning import image_sentence
from .explanations import explanation_get
from .renditions import rendition_name

__all__ = [
    "MAX_IMAGES",
    "ImageContent",
    "StudyDesign",
    "reader_study_create",
    "reader_study_store",
    "study_design_validate",
    "study_image_content",
    "study_images_choose",
    "study_rating_save",
]

Arm = ReaderStudy.Arm
SENTENCE_ARMS = (Arm.SENTENCE, Arm.BOTH, Arm.COMPARISON)
MAX_IMAGES = 1000  # content is computed by a worker (reader_study_jobs), a SmoothGrad map per image
HEAT_OPACITY = 0.6


@dataclass(frozen=True)
class StudyDesign:
    """What an admin decides about a study, apart from its images: its name, what explains (the
    classifier's SmoothGrad, the sentence generator), the arms and who reads."""

    name: str
    dataset: Dataset
    classifier: TrainedModel
    sentence_model: SentenceModel | None
    arms: Sequence[str]
    readers: Sequence[Any]
    created_by: Any = None


@dataclass
class ImageContent:
    """What a study shows of one image: per arm the media name of its picture (each arm its own copy, so
    no two items of an image share a URL a reader could match), and its sentences ("" for none)."""

    image: Image
    pictures: dict[str, str] = field(default_factory=dict)
    generated: str = ""
    expert: str = ""


def study_images_choose(
    *, dataset: Dataset, split: str = "", sample: int | None = None, image_ids: Sequence[int] = (), seed: int = 0
) -> list[Image]:
    """The study's images: the ``image_ids`` chosen, or a split (all of it, or a seeded sample of
    ``sample`` of its images). At least one, at most MAX_IMAGES."""
    if image_ids:
        images = list(Image.objects.filter(dataset=dataset, pk__in=image_ids).order_by("pk"))
        missing = sorted(set(image_ids) - {image.pk for image in images})
        if missing:
            raise ApplicationError(f"images not in dataset {dataset.name!r}: {missing[:10]}", {"field": "images"})
    else:
        if split not in Image.Split.values:
            raise ApplicationError("choose a split or images", {"field": "split"})
        images = list(Image.objects.filter(dataset=dataset, split=split).order_by("pk"))
        if sample is not None:
            if sample < 1:
                raise ApplicationError("a sample needs at least one image", {"field": "sample"})
            images = sorted(random.Random(seed).sample(images, min(sample, len(images))), key=lambda i: i.pk)
    if not images:
        raise ApplicationError("the study would have no image", {"field": "images"})
    if len(images) > MAX_IMAGES:
        raise ApplicationError(f"at most {MAX_IMAGES} images per study (got {len(images)})", {"field": "images"})
    return images


def study_design_validate(design: StudyDesign) -> StudyDesign:
    """``design`` with its name trimmed and its arms in their canonical order, once all is checked."""
    name, dataset, classifier, sentence_model = design.name, design.dataset, design.classifier, design.sentence_model
    arms, readers = design.arms, design.readers
    if not name.strip():
        raise ApplicationError("a study needs a name", {"field": "name"})
    if ReaderStudy.objects.filter(name=name.strip()).exists():
        raise ApplicationError(f"a study named {name.strip()!r} exists already", {"field": "name"})
    unknown = sorted(set(arms) - set(Arm.values))
    if unknown or not arms:
        raise ApplicationError(f"choose arms among {', '.join(Arm.values)}", {"field": "arms"})
    if classifier.dataset_id != dataset.pk:
        raise ApplicationError(f"model #{classifier.pk} was trained on another dataset", {"field": "classifier"})
    if any(arm in SENTENCE_ARMS for arm in arms):
        if sentence_model is None:
            raise ApplicationError("the sentence arms need a sentence generator", {"field": "sentence_model"})
        if sentence_model.classifier_id != classifier.pk:
            raise ApplicationError("that sentence generator reads another classifier", {"field": "sentence_model"})
    if Arm.COMPARISON in arms and dataset.annotation_blind:
        raise ApplicationError(
            "the comparison shows experts' sentences to the readers: open the dataset's labels first (it is blind)",
            {"field": "arms"},
        )
    if not readers:
        raise ApplicationError("assign at least one reader", {"field": "readers"})
    not_annotators = [reader.username for reader in readers if not user_can_annotate(reader)]
    if not_annotators:
        raise ApplicationError(f"only experts and admins can read: {not_annotators}", {"field": "readers"})
    return replace(design, name=name.strip(), arms=[arm for arm in Arm.values if arm in arms])


def _picture_name() -> str:
    return f"reader_studies/{secrets.token_hex(16)}.png"  # opaque: says nothing of the image or the model


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.rint(rgb).astype(np.uint8)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _pictures(image: Image, heat: str | None, arms: Sequence[str], written: list[str]) -> dict[str, str]:
    """Arm -> its picture of ``image``: the display rendition, under the SmoothGrad heat for the saliency
    arms (``heat``: the map's media name), each arm's written under a name of its own."""
    gray = read_png(rendition_name(image)).astype(np.float64)
    if gray.ndim == 3:
        gray = gray[..., :3].mean(axis=-1)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    encoded = {"plain": _png(rgb)}
    if heat is not None:
        rgba = read_png(heat).astype(np.float64)
        if rgba.shape[:2] != rgb.shape[:2]:
            raise ApplicationError(f"image {image.pk}'s saliency map does not match its rendition", status=409)
        alpha = rgba[..., 3:4] / 255.0 * HEAT_OPACITY
        encoded["heat"] = _png(rgb * (1 - alpha) + rgba[..., :3] * alpha)
    pictures = {}
    for arm in arms:
        name = _picture_name()
        written.append(name)
        kind = "heat" if arm in (Arm.SALIENCY, Arm.BOTH) else "plain"
        pictures[arm] = write_bytes_atomic(name, encoded[kind], durable=False)
    return pictures


def _expert_sentence(image: Image, readers: Sequence[Any]) -> str:
    """The sentence most of the image's expert labels give (the earliest on a tie), readers' own aside."""
    sentences = list(
        FractureDescriptor.objects.filter(image=image)
        .exclude(expert__in=[reader.pk for reader in readers])
        .order_by("created_at", "pk")
        .values_list("sentence", flat=True)
    )
    return Counter(sentences).most_common(1)[0][0] if sentences else ""


def study_image_content(image: Image, design: StudyDesign, written: list[str]) -> ImageContent:
    """What the study shows of ``image`` under each arm; the media names it writes are appended to ``written``."""
    arms, sentence_model = design.arms, design.sentence_model
    heat = None
    if Arm.SALIENCY in arms or Arm.BOTH in arms:
        heat = explanation_get(
            trained=design.classifier, image=image, method=Explanation.Method.SMOOTHGRAD
        ).class_map.name
    content = ImageContent(image=image, pictures=_pictures(image, heat, arms, written))
    if sentence_model is not None and any(arm in SENTENCE_ARMS for arm in arms):
        try:
            content.generated = sentence_from_tokens(image_sentence(model=sentence_model, image=image).tokens)
        except (OSError, ValueError) as exc:
            raise ApplicationError(f"the sentence generator cannot be read: {exc}", status=409) from exc
    if Arm.COMPARISON in arms:
        content.expert = _expert_sentence(image, design.readers)
    return content


def reader_study_create(
    *,
    design: StudyDesign,
    split: str = "",
    sample: int | None = None,
    image_ids: Sequence[int] = (),
    seed: int = 0,
) -> ReaderStudy:
    """Create a study: check it, choose its images, compute every item's content and store it all."""
    design = study_design_validate(design)
    images = study_images_choose(dataset=design.dataset, split=split, sample=sample, image_ids=image_ids, seed=seed)
    selection = {"split": split, "sample": sample, "seed": seed} if not image_ids else {"images": len(images)}
    written: list[str] = []
    try:
        contents = [study_image_content(image, design, written) for image in images]
        return reader_study_store(design=design, selection=selection, contents=contents, seed=seed)
    except BaseException:
        delete_quietly(written)  # no study row names them
        raise


def _items(study: ReaderStudy, contents: Sequence[ImageContent], rng: random.Random) -> list[StudyItem]:
    items = []
    for content in contents:
        for arm in study.arms:
            if arm == Arm.COMPARISON:
                if not content.expert:
                    study.skipped.setdefault(arm, []).append(content.image.pk)
                    continue
                pair = [("generated", content.generated), ("expert", content.expert)]
                rng.shuffle(pair)
                shown: dict[str, Any] = {"picture": content.pictures[arm], "sentences": [text for _, text in pair]}
                sources = [source for source, _ in pair]
            else:
                sentences = [] if arm == Arm.SALIENCY else [content.generated]
                shown = {"picture": content.pictures[arm], "sentences": sentences}
                sources = []
            items.append(
                StudyItem(
                    study=study, key=secrets.token_hex(8), image=content.image, arm=arm, content=shown, sources=sources
                )
            )
    rng.shuffle(items)  # row ids in no arm's order either
    return items


@transaction.atomic
def reader_study_store(
    *, design: StudyDesign, selection: dict[str, Any], contents: Sequence[ImageContent], seed: int = 0
) -> ReaderStudy:
    """Store a study whose content is computed: the row, its items and one assignment per reader."""
    rng = random.Random(seed)
    name = design.name.strip()
    try:
        study = ReaderStudy.objects.create(
            name=name,
            dataset=design.dataset,
            classifier=design.classifier,
            sentence_model=design.sentence_model,
            arms=list(design.arms),
            selection=selection,
            created_by=design.created_by,
        )
    except IntegrityError:
        raise ApplicationError(f"a study named {name!r} exists already", {"field": "name"}) from None
    items = _items(study, contents, rng)
    if not items:
        raise ApplicationError("no image has what the chosen arms show", {"field": "arms"})
    StudyItem.objects.bulk_create(items)
    if study.skipped:
        study.save(update_fields=["skipped"])
    StudyAssignment.objects.bulk_create(
        StudyAssignment(study=study, reader=reader, seed=rng.randrange(2**31)) for reader in design.readers
    )
    return study


def study_rating_save(
    *, study: ReaderStudy, key: str, reader: Any, score: int, second_score: int | None = None
) -> StudyRating:
    """Save ``reader``'s score of the item ``key`` (a new score replaces their old one). A comparison item
    takes a score for each of its two sentences, any other item one; each on its arm's scale."""
    if not StudyAssignment.objects.filter(study=study, reader_id=reader.pk).exists():
        raise ApplicationError("You are not a reader of this study.", status=403)
    item = reader_study_items(study=study, reader=reader).filter(key=key).first()
    if item is None:
        raise ApplicationError("No such item in this study.", status=404)
    top = ARM_SCALES[item.arm]
    wanted = 2 if item.arm == Arm.COMPARISON else 1
    given = [value for value in (score, second_score) if value is not None]
    if len(given) != wanted:
        what = "a score for each of its two sentences" if wanted == 2 else "one score"
        raise ApplicationError(f"This item takes {what}.", {"field": "second_score"})
    if any(not 1 <= value <= top for value in given):
        raise ApplicationError(f"Scores go from 1 to {top} here.", {"field": "score", "scale": top})
    defaults = {"score": score, "second_score": second_score}
    try:
        with transaction.atomic():
            rating, _ = StudyRating.objects.update_or_create(item=item, reader=reader, defaults=defaults)
    except IntegrityError:  # a first save from another tab won the insert: this one updates it
        rating, _ = StudyRating.objects.update_or_create(item=item, reader=reader, defaults=defaults)
    return rating
