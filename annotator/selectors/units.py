"""Reads for the unit list, the survey page, agreement and the labelled-unit export.

Who sees what: experts see only their own answers while the dataset is blind (the default), admins and
researchers see everyone's (researchers read and export, they never annotate).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import Case, Count, Exists, IntegerField, OuterRef, Q, QuerySet, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.shortcuts import get_object_or_404

from mining.agreement import fleiss_kappa, percent_agreement, ratings_to_counts, unit_agreement

from ..models import AnnotationChange, Concept, TopActivation, TrainedModel, Unit, UnitAnnotation, UnitConsensus
from ..permissions import user_sees_others_labels

__all__ = [
    "concept_lexicon",
    "export_csv_header",
    "export_csv_rows",
    "model_agreement",
    "unit_annotations_visible",
    "unit_export_rows",
    "unit_get",
    "unit_history",
    "unit_list",
    "unit_neighbours",
    "unit_progress",
    "unit_survey",
]

NO_CONCEPT = "none"


def unit_get(*, pk: int) -> Unit:
    """The unit with what its pages and API read next to it; Http404 (a 404 page or JSON 404) if missing."""
    return get_object_or_404(Unit.objects.select_related("model__dataset", "suggested_concept"), pk=pk)


def _unit_answers(unit: Unit) -> QuerySet[UnitAnnotation]:
    return UnitAnnotation.objects.filter(unit=unit).select_related("expert").order_by("created_at")


def unit_annotations_visible(*, unit: Unit, user: Any) -> QuerySet[UnitAnnotation]:
    """The answers on ``unit`` that ``user`` may see (their own only while the dataset is blind)."""
    answers = _unit_answers(unit)
    if user_sees_others_labels(user, unit.model.dataset):
        return answers
    return answers.filter(expert=user)


def unit_history(*, unit: Unit, user: Any) -> QuerySet[AnnotationChange]:
    """Changes to the answers and consensus of ``unit``, newest first: all of them when ``user`` sees
    others' labels, otherwise only changes to their own answer."""
    changes = AnnotationChange.objects.filter(unit=unit).select_related("user")
    if user_sees_others_labels(user, unit.model.dataset):
        return changes
    return changes.filter(user=user, target=AnnotationChange.Target.UNIT_ANNOTATION)


def unit_list(
    *,
    trained: TrainedModel,
    user: Any,
    selected_for: str = "",
    status: str = "",
    concept: str = "",
    suggested: str = "",
    search: str = "",
    selected_only: bool = True,
) -> QuerySet[Unit]:
    """Units of a model, selected ones first by class and rank, with annotation counts.

    status: "mine" (I answered), "todo" (I did not), "annotated" (anyone did), "unannotated" (nobody did).
    concept: a Concept code some visible answer names; suggested: the mining suggestion's code.
    search: a channel number, "layer4:12" or a unit id.
    """
    units = (
        Unit.objects.filter(model=trained)
        .select_related("suggested_concept", "consensus__concept")
        .annotate(
            answer_count=Count("annotations", filter=~Q(annotations__recognizable=""), distinct=True),
            mine=Exists(UnitAnnotation.objects.filter(unit=OuterRef("pk"), expert=user).exclude(recognizable="")),
        )
    )
    if selected_only and not search:
        units = units.exclude(selected_for="")
    if selected_for:  # every unit in the class's list, also those that rank better in another class
        units = units.filter(selections__has_key=selected_for)
    if status == "mine":
        units = units.filter(mine=True)
    elif status == "todo":
        units = units.filter(mine=False)
    elif status == "annotated":
        units = units.filter(answer_count__gt=0)
    elif status == "unannotated":
        units = units.filter(answer_count=0)
    if concept:
        answers = UnitAnnotation.objects.filter(unit=OuterRef("pk"), phenomena__icontains=f'"{concept}"')
        if not user_sees_others_labels(user, trained.dataset):
            answers = answers.filter(expert=user)
        units = units.filter(Q(Exists(answers)) | Q(consensus__concept__code=concept))
    if suggested:
        units = units.filter(suggested_concept__code=suggested)
    if search:
        units = units.filter(_search_filter(search))
    if selected_for in trained.classes:  # one class's list, in its own rank order
        return units.order_by(Cast(KT(f"selections__{selected_for}"), IntegerField()), "channel")
    # Selected units first (by class and rank), then the rest by channel.
    return units.order_by(Case(When(selected_for="", then=1), default=0), "selected_for", "selection_rank", "channel")


def _search_filter(text: str) -> Q:
    text = text.strip()
    if ":" in text:
        layer, _, channel = text.partition(":")
        return Q(layer=layer.strip(), channel=int(channel)) if channel.strip().isdigit() else Q(pk=-1)
    if text.isdigit():
        return Q(channel=int(text)) | Q(pk=int(text))
    return Q(pk=-1)


def unit_progress(*, trained: TrainedModel, user: Any) -> dict[str, dict[str, int]]:
    """Per class (and "all", each unit once): selected units, answered by me, answered by anyone.

    A unit in two classes' lists counts in both classes (a few dozen rows: counted here, not in SQL).
    """
    rows = (
        Unit.objects.filter(model=trained)
        .exclude(selected_for="")
        .annotate(
            mine=Exists(UnitAnnotation.objects.filter(unit=OuterRef("pk"), expert=user).exclude(recognizable="")),
            anyone=Exists(UnitAnnotation.objects.filter(unit=OuterRef("pk")).exclude(recognizable="")),
        )
        .values_list("selections", "mine", "anyone")
    )
    progress: dict[str, dict[str, int]] = {}
    every = {"total": 0, "mine": 0, "anyone": 0}
    for selections, mine, anyone in rows:
        for counts in [
            *(progress.setdefault(name, {"total": 0, "mine": 0, "anyone": 0}) for name in selections),
            every,
        ]:
            counts["total"] += 1
            counts["mine"] += int(mine)
            counts["anyone"] += int(anyone)
    progress["all"] = every
    return progress


def unit_neighbours(*, unit: Unit, user: Any) -> dict[str, int | None]:
    """Previous / next selected unit in list order, and the next one I have not answered."""
    order = list(
        Unit.objects.filter(model_id=unit.model_id)
        .exclude(selected_for="")
        .order_by("selected_for", "selection_rank", "channel")
        .values_list("pk", flat=True)
    )
    answered = set(
        UnitAnnotation.objects.filter(unit__model_id=unit.model_id, expert=user)
        .exclude(recognizable="")
        .values_list("unit_id", flat=True)
    )
    here = order.index(unit.pk) if unit.pk in order else -1
    rotated = order[here + 1 :] + order[: max(here, 0)]
    return {
        "previous": order[here - 1] if here > 0 else None,
        "next": order[here + 1] if 0 <= here < len(order) - 1 else None,
        "next_unannotated": next((pk for pk in rotated if pk not in answered), None),
        "position": here + 1,
        "count": len(order),
    }


def concept_lexicon() -> list[dict[str, str]]:
    """The BI-RADS terms for the picker, in category order."""
    return [
        {
            "code": c.code,
            "category": c.category,
            "category_label": c.category_label,
            "term": c.term,
            "association": c.association,
        }
        for c in Concept.objects.order_by("category_label", "term")
    ]


def unit_survey(*, unit: Unit, user: Any, top: int = 64) -> dict[str, Any]:
    """Everything the survey page shows, in a fixed number of queries whatever the patch count."""
    trained = unit.model
    activations = list(
        TopActivation.objects.filter(unit=unit)
        .select_related("patch", "image")
        .only(
            "rank",
            "score",
            "box",
            "patch__crop",
            "patch__label",
            "patch__x0",
            "patch__y0",
            "patch__x1",
            "patch__y1",
            "image__file",
            "image__display",
            "image__overlay",
            "image__width",
            "image__height",
            "image__label",
            "image__source_name",
            "image__view",
            "image__laterality",
        )
        .order_by("rank")[:top]
    )
    sees_all = user_sees_others_labels(user, trained.dataset)
    # A blind expert's page reads only their own answer, not every expert's (50 rows on a well-answered unit).
    answers = list(unit_annotations_visible(unit=unit, user=user))
    mine = next((a for a in answers if a.expert_id == user.pk), None)
    others = [a for a in answers if a.expert_id != user.pk]
    consensus = UnitConsensus.objects.filter(unit=unit).select_related("concept", "set_by").first()
    return {
        "unit": unit,
        "model": trained,
        "activations": activations,
        "mine": mine,
        "others": others,
        "sees_all": sees_all,
        "agreement": _unit_agreement_summary(answers) if sees_all else None,
        "consensus": consensus,
        "neighbours": unit_neighbours(unit=unit, user=user),
    }


def _unit_agreement_summary(answers: list[UnitAnnotation]) -> dict[str, Any]:
    recognizable = [a.recognizable for a in answers if a.recognizable]
    categories = [_answer_category(a) for a in answers if a.recognizable]
    return {
        "raters": len(recognizable),
        "recognizable": unit_agreement(recognizable) if len(recognizable) >= 2 else None,
        "category": unit_agreement(categories) if len(categories) >= 2 else None,
        "votes": {value: recognizable.count(value) for value in UnitAnnotation.Recognizable.values},
    }


_CATEGORY_OF: dict[str, str] = {}


def _category_of(code: str) -> str:
    if not _CATEGORY_OF:
        _CATEGORY_OF.update(Concept.objects.values_list("code", "category"))
    return _CATEGORY_OF.get(code, code.split(".", 1)[0])


def _answer_category(answer: UnitAnnotation) -> str:
    """The BI-RADS category an answer names (its first phenomenon with a concept), or "none"."""
    if answer.recognizable != UnitAnnotation.Recognizable.YES:
        return NO_CONCEPT
    code = next((p.get("concept") for p in answer.phenomena if p.get("concept")), "")
    return _category_of(code) if code else NO_CONCEPT


def model_agreement(*, trained: TrainedModel) -> dict[str, Any]:
    """Fleiss' kappa and percent agreement over the units two or more experts answered."""
    by_unit: dict[int, list[UnitAnnotation]] = defaultdict(list)
    for answer in UnitAnnotation.objects.filter(unit__model=trained).exclude(recognizable="").order_by("unit_id"):
        by_unit[answer.unit_id].append(answer)
    rated = {unit: answers for unit, answers in by_unit.items() if len(answers) >= 2}
    recognizable = [[a.recognizable for a in answers] for answers in rated.values()]
    categories = [[_answer_category(a) for a in answers] for answers in rated.values()]
    category_names = sorted({c for row in categories for c in row})
    result: dict[str, Any] = {"units_with_two_or_more": len(rated), "units_answered": len(by_unit)}
    for name, ratings, values in (
        ("recognizable", recognizable, UnitAnnotation.Recognizable.values),
        ("category", categories, category_names),
    ):
        if not ratings:
            result[name] = {"fleiss_kappa": None, "percent_agreement": None}
            continue
        counts = ratings_to_counts(ratings, list(values))
        kappa = fleiss_kappa(counts)
        result[name] = {
            "fleiss_kappa": None if kappa != kappa else round(float(kappa), 4),  # nan: undefined
            "percent_agreement": round(float(percent_agreement(counts)), 4),
        }
    return result


def unit_export_rows(*, trained: TrainedModel, everything: bool = False, chunk: int = 500) -> Iterator[dict[str, Any]]:
    """One record per unit: its mining facts, consensus, and every expert's answers (streamed in chunks).

    Coverage is the share of its selected class's top-8 slots the unit fills. `everything` includes
    units that were neither selected nor answered.
    """
    classes = list(trained.classes)
    slots: dict[str, int] = defaultdict(int)
    for frequency in Unit.objects.filter(model=trained).values_list("frequency", flat=True).iterator(chunk_size=2000):
        for name, count in (frequency or {}).items():
            slots[name] += int(count)
    concepts = {c.code: c for c in Concept.objects.all()}
    units = Unit.objects.filter(model=trained)
    if not everything:
        units = units.filter(Q(selected_for__gt="") | Q(annotations__isnull=False)).distinct()
    units = units.order_by("selected_for", "selection_rank", "channel")
    checkpoint = trained.checkpoint.name
    for batch_ids in _batches(units.values_list("pk", flat=True).iterator(chunk_size=chunk), chunk):
        # Plain values, not model instances: the export reads tens of thousands of rows.
        rows = {row["pk"]: row for row in Unit.objects.filter(pk__in=batch_ids).values(*_UNIT_FIELDS)}
        tops: dict[int, list[int]] = defaultdict(list)
        for unit_id, patch_id in (
            TopActivation.objects.filter(unit_id__in=batch_ids)
            .order_by("unit_id", "rank")
            .values_list("unit_id", "patch_id")
        ):
            tops[unit_id].append(patch_id)
        answers: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for answer in (
            UnitAnnotation.objects.filter(unit_id__in=batch_ids).order_by("expert__username").values(*_ANSWER_FIELDS)
        ):
            answers[answer["unit_id"]].append(answer)
        for pk in batch_ids:
            yield _export_record(rows[pk], classes, slots, concepts, checkpoint, tops[pk], answers[pk])


def _batches(items: Iterator[int], size: int) -> Iterator[list[int]]:
    batch: list[int] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


_UNIT_FIELDS = (
    "pk",
    "layer",
    "channel",
    "selected_for",
    "selection_rank",
    "selections",
    "frequency",
    "suggested_concept__code",
    "suggested_iou",
    "consensus__pk",
    "consensus__recognizable",
    "consensus__description",
    "consensus__concept__code",
    "consensus__association",
)
_ANSWER_FIELDS = (
    "unit_id",
    "expert__username",
    "recognizable",
    "confidence",
    "notes",
    "version",
    "updated_at",
    "phenomena",
)


def _export_record(
    unit: dict[str, Any],
    classes: list[str],
    slots: dict[str, int],
    concepts: dict[str, Concept],
    checkpoint: str,
    top_patch_ids: list[int],
    answers: list[dict[str, Any]],
) -> dict[str, Any]:
    frequency, selected_for = unit["frequency"] or {}, unit["selected_for"]
    coverage = (frequency.get(selected_for, 0) / slots[selected_for]) if slots.get(selected_for) else None
    concept = concepts.get(unit["consensus__concept__code"] or "")
    return {
        "unit_id": unit["pk"],
        "layer": unit["layer"],
        "channel": unit["channel"],
        "selected_for": selected_for,
        "selection_rank": unit["selection_rank"],
        "selections": unit["selections"] or {},
        "frequency": {name: int(frequency.get(name, 0)) for name in classes},
        "coverage": round(coverage, 5) if coverage is not None else None,
        "checkpoint": checkpoint,
        "top_patch_ids": top_patch_ids,
        "suggested_concept": unit["suggested_concept__code"] or "",
        "suggested_iou": round(unit["suggested_iou"], 4),
        "consensus": None
        if unit["consensus__pk"] is None
        else {
            "recognizable": unit["consensus__recognizable"],
            "description": unit["consensus__description"],
            "birads_category": concept.category_label if concept else "",
            "birads_term": concept.term if concept else "",
            "concept": concept.code if concept else "",
            "association": unit["consensus__association"],
        },
        "experts": [
            {
                "expert": a["expert__username"],
                "recognizable": a["recognizable"],
                "confidence": a["confidence"],
                "notes": a["notes"],
                "version": a["version"],
                "updated_at": a["updated_at"].isoformat(),
                "phenomena": [_phenomenon_export(p, concepts) for p in a["phenomena"]],
            }
            for a in answers
        ],
    }


def _phenomenon_export(phenomenon: dict[str, str], concepts: dict[str, Concept]) -> dict[str, str]:
    concept = concepts.get(phenomenon.get("concept") or "")
    return {
        "description": phenomenon.get("description", ""),
        "concept": concept.code if concept else "",
        "birads_category": concept.category_label if concept else "",
        "birads_term": concept.term if concept else "",
        "association": phenomenon.get("association", ""),
    }


def export_csv_header(classes: list[str]) -> list[str]:
    return [
        "unit_id",
        "layer",
        "channel",
        "selected_for",
        "selection_rank",
        *[f"frequency_{name}" for name in classes],
        "coverage",
        "checkpoint",
        "top_patch_ids",
        "suggested_concept",
        "suggested_iou",
        "consensus_recognizable",
        "consensus_birads_category",
        "consensus_birads_term",
        "consensus_association",
        "consensus_description",
        "expert",
        "recognizable",
        "confidence",
        "birads_category",
        "birads_term",
        "association",
        "description",
        "notes",
    ]


def export_csv_rows(records: Iterable[dict[str, Any]], classes: list[str]) -> Iterator[list[Any]]:
    """Long format, as statistics packages like it: one row per unit and expert (one row if nobody answered);
    several phenomena of one answer are joined with " | "."""
    for record in records:
        consensus = record["consensus"] or {}
        unit_part = [
            record["unit_id"],
            record["layer"],
            record["channel"],
            record["selected_for"],
            record["selection_rank"],
            *[record["frequency"][name] for name in classes],
            record["coverage"],
            record["checkpoint"],
            " ".join(map(str, record["top_patch_ids"])),
            record["suggested_concept"],
            record["suggested_iou"],
            consensus.get("recognizable", ""),
            consensus.get("birads_category", ""),
            consensus.get("birads_term", ""),
            consensus.get("association", ""),
            consensus.get("description", ""),
        ]
        if not record["experts"]:
            yield [*unit_part, "", "", "", "", "", "", "", ""]
        for answer in record["experts"]:
            phenomena = answer["phenomena"]
            yield [
                *unit_part,
                answer["expert"],
                answer["recognizable"],
                answer["confidence"] or "",
                " | ".join(p["birads_category"] for p in phenomena),
                " | ".join(p["birads_term"] for p in phenomena),
                " | ".join(p["association"] for p in phenomena),
                " | ".join(p["description"] for p in phenomena),
                answer["notes"],
            ]
