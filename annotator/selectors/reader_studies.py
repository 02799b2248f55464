"""Reads of reader studies: what a reader is shown (blind), and the results (admins and researchers).

Blind means: a reader's items carry an opaque key, a picture under an opaque name, the sentences and the
scale, and their own scores -- never the arm's name, the source of a sentence, a model or image id, nor
another reader's score. Each reader has their own order, the study's items shuffled by their assignment's
seed, so a reload (and the resume point, the first item they have not rated) is the same.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Value
from django.shortcuts import get_object_or_404

from mining.reader_stats import Score, arm_summaries, paired_tests, reader_means

from ..models import ReaderStudy, StudyAssignment, StudyItem, StudyRating
from ..permissions import RESEARCHER_GROUP, user_is_admin, user_roles, user_sees_others_labels

__all__ = [
    "ARM_SCALES",
    "EXPORT_COLUMNS",
    "RESULT_ARMS",
    "item_scale",
    "reader_items",
    "reader_progress",
    "reader_study_items",
    "reader_view",
    "study_assignment",
    "study_export_rows",
    "study_get",
    "study_list_for",
    "study_results",
    "study_results_visible",
    "study_scores",
]

Arm = ReaderStudy.Arm
# The scale of each arm's paper: 1-10 for the hip-fracture paper's explanations, 1-5 for the chest X-ray
# paper's reports; and the question a reader is asked, worded alike whatever produced what is shown.
ARM_SCALES = {Arm.SALIENCY.value: 10, Arm.SENTENCE.value: 10, Arm.BOTH.value: 10, Arm.COMPARISON.value: 5}
QUESTION = "How good is this explanation of the diagnosis? 1 = completely unsatisfactory, 10 = perfect."
PAIR_QUESTION = "Score each sentence as a report of this image: 1 = major findings missed or wrong, 5 = all correct."
# The arms of the results: the comparison's two sentences are scored apart, by who wrote them.
GENERATED, EXPERT = "generated_sentence", "expert_sentence"
RESULT_ARMS = {
    Arm.SALIENCY.value: "Saliency map alone",
    Arm.SENTENCE.value: "Generated sentence alone",
    Arm.BOTH.value: "Saliency map and sentence",
    GENERATED: "Generated sentence (comparison)",
    EXPERT: "Expert-written sentence (comparison)",
}
# Arms compared with one another: those on one scale.
SCALE_GROUPS = {"1-10": [Arm.SALIENCY.value, Arm.SENTENCE.value, Arm.BOTH.value], "1-5": [GENERATED, EXPERT]}
_SOURCE_ARMS = {"generated": GENERATED, "expert": EXPERT}
EXPORT_COLUMNS = (
    "study",
    "reader",
    "image_id",
    "source_name",
    "split",
    "item",
    "arm",
    "position",
    "sentence_source",
    "score",
    "scale",
    "updated_at",
)


def item_scale(arm: str) -> dict[str, Any]:
    """What a reader is told of an item's scale: its top score, how many scores it takes, the question."""
    pair = arm == Arm.COMPARISON
    return {"top": ARM_SCALES[arm], "scores": 2 if pair else 1, "question": PAIR_QUESTION if pair else QUESTION}


def study_results_visible(user: Any) -> bool:
    """Results hold every reader's scores and who produced what: admins and researchers only."""
    return user_is_admin(user) or RESEARCHER_GROUP in user_roles(user)


def study_get(*, pk: int) -> ReaderStudy:
    return get_object_or_404(ReaderStudy.objects.select_related("dataset"), pk=pk)


def study_assignment(*, study: ReaderStudy, user: Any) -> StudyAssignment | None:
    if not user.is_authenticated:
        return None
    return StudyAssignment.objects.filter(study=study, reader=user).first()


def study_list_for(*, user: Any) -> QuerySet[ReaderStudy]:
    """The studies ``user`` reads (with ``rated``: how many items they rated) or, for those who see
    results, every study; ``item_count`` on each."""
    studies = ReaderStudy.objects.select_related("dataset").annotate(
        item_count=Count("items", distinct=True),
        rated=Count("items__ratings", filter=Q(items__ratings__reader_id=user.pk), distinct=True),
        is_reader=Exists(StudyAssignment.objects.filter(study=OuterRef("pk"), reader_id=user.pk)),
        sees_results=Value(study_results_visible(user)),
    )
    if study_results_visible(user):
        return studies
    return studies.filter(is_reader=True)


def reader_study_items(*, study: ReaderStudy, reader: Any) -> QuerySet[StudyItem]:
    """The items ``reader`` may rate: all of them, but a pair only while its expert sentence may be shown
    (the dataset's labels open to them): an admin who blinds the dataset again hides the pairs at once."""
    items = study.items.all()
    if not user_sees_others_labels(reader, study.dataset):
        items = items.exclude(arm=Arm.COMPARISON)
    return items


def _ordered(study: ReaderStudy, assignment: StudyAssignment) -> list[StudyItem]:
    items = list(reader_study_items(study=study, reader=assignment.reader).order_by("pk"))
    random.Random(assignment.seed).shuffle(items)
    return items


def reader_items(*, study: ReaderStudy, assignment: StudyAssignment, media_url: str) -> list[dict[str, Any]]:
    """The reader's items in their order, as the rating page and the API show them (nothing else)."""
    ratings = StudyRating.objects.filter(item__study=study, reader=assignment.reader)
    mine = {rating.item_id: rating for rating in ratings}
    shown = []
    for item in _ordered(study, assignment):
        rating = mine.get(item.pk)
        shown.append(
            {
                "key": item.key,
                "picture": f"{media_url}{item.content['picture']}",
                "sentences": list(item.content.get("sentences", [])),
                "scale": item_scale(item.arm),
                "score": rating.score if rating else None,
                "second_score": rating.second_score if rating else None,
            }
        )
    return shown


def reader_view(*, study: ReaderStudy, assignment: StudyAssignment, media_url: str) -> dict[str, Any]:
    """A reader's page and API: their items in order, how many they rated and where to resume."""
    items = reader_items(study=study, assignment=assignment, media_url=media_url)
    unrated = [index for index, item in enumerate(items) if item["score"] is None]
    return {
        "study": study.pk,
        "name": study.name,
        "total": len(items),
        "rated": len(items) - len(unrated),
        "resume": unrated[0] if unrated else len(items),
        "items": items,
    }


def reader_progress(*, study: ReaderStudy, reader: Any) -> dict[str, int]:
    """How many of the study's items ``reader`` rated, of how many."""
    items = reader_study_items(study=study, reader=reader)
    return {"rated": StudyRating.objects.filter(item__in=items, reader=reader).count(), "total": items.count()}


def study_scores(*, study: ReaderStudy) -> list[Score]:
    """Every score of the study, the comparison's split by the source of each sentence."""
    scores = []
    ratings = StudyRating.objects.filter(item__study=study).select_related("item", "reader")
    for rating in ratings:
        item, reader = rating.item, rating.reader.username
        if item.arm == Arm.COMPARISON:
            for source, value in zip(item.sources, (rating.score, rating.second_score), strict=True):
                if value is not None:
                    scores.append(Score(reader, item.image_id, _SOURCE_ARMS[source], value))
        else:
            scores.append(Score(reader, item.image_id, item.arm, rating.score))
    return scores


def _result_arms(study: ReaderStudy) -> list[str]:
    arms = [arm for arm in study.arms if arm != Arm.COMPARISON]
    return arms + ([GENERATED, EXPERT] if Arm.COMPARISON in study.arms else [])


def study_results(*, study: ReaderStudy) -> dict[str, Any]:
    """Per arm the mean and range, per reader their means and progress, and the paired Wilcoxon tests."""
    scores = study_scores(study=study)
    arms = _result_arms(study)
    groups = {scale: [arm for arm in group if arm in arms] for scale, group in SCALE_GROUPS.items()}
    items = study.items.count()
    rated = dict(StudyRating.objects.filter(item__study=study).values_list("reader__username").annotate(n=Count("pk")))
    readers = list(study.assignments.values_list("reader__username", flat=True))
    means = reader_means(scores, arms)
    return {
        "study": study.pk,
        "name": study.name,
        "items": items,
        "arms": [{**summary.as_dict(), "title": RESULT_ARMS[summary.arm]} for summary in arm_summaries(scores, arms)],
        "readers": [
            {"reader": name, "rated": rated.get(name, 0), "means": means.get(name, dict.fromkeys(arms))}
            for name in sorted(readers)
        ],
        "paired": [test.as_dict() for test in paired_tests(scores, groups)],
        "skipped": study.skipped,
    }


def study_export_rows(*, study: ReaderStudy) -> Iterator[dict[str, Any]]:
    """One record per score (a comparison rating gives two), for the CSV and JSON exports."""
    ratings = (
        StudyRating.objects.filter(item__study=study)
        .select_related("item__image", "reader")
        .order_by("reader__username", "item__image_id", "item__arm")
    )
    for rating in ratings.iterator(chunk_size=500):
        item = rating.item
        base = {
            "study": study.pk,
            "reader": rating.reader.username,
            "image_id": item.image_id,
            "source_name": item.image.source_name,
            "split": item.image.split,
            "item": item.key,
            "arm": item.arm,
            "scale": item_scale(item.arm)["top"],
            "updated_at": rating.updated_at.isoformat(),
        }
        if item.arm == Arm.COMPARISON:
            for position, (source, value) in enumerate(
                zip(item.sources, (rating.score, rating.second_score), strict=True)
            ):
                yield {
                    **base,
                    "position": "left" if position == 0 else "right",
                    "sentence_source": source,
                    "score": value,
                }
        else:
            yield {**base, "position": "", "sentence_source": "", "score": rating.score}
