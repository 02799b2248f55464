"""Reads for explanations: the name each unit goes by, an image's explanations, and their export.

A unit's name (DeepMiner section 2.3: explanations are worded with the experts' names of the units):
  1. the consensus an admin set: its BI-RADS term and category ("spiculated (mass margin)"), else its
     description; a consensus that the unit is *not* recognisable means the unit has no name;
  2. else the experts' majority: the concept (or description) that more than half of the experts who
     answered gave it; a majority saying "not recognisable" again means no name. Hidden from a viewer who
     may not see other experts' answers (a blind expert), who gets 3 instead;
  3. else the mining suggestion (the concept with the best Network Dissection IoU), marked suggested.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import QuerySet

from mining.explain import InfluentialUnit, explanation_text

from ..models import Concept, Explanation, Image, TrainedModel, Unit, UnitAnnotation, UploadedImage
from ..permissions import user_is_admin, user_sees_others_labels

__all__ = [
    "UnitName",
    "concept_name",
    "explanation_csv_header",
    "explanation_csv_rows",
    "explanation_export_rows",
    "explanations_of",
    "models_for_image",
    "unit_names",
    "upload_visible",
    "viewer_text",
    "viewer_units",
]

NOT_RECOGNISABLE = "__no__"


@dataclass(frozen=True)
class UnitName:
    label: str
    source: str  # one of mining.explain.SOURCES: consensus, experts, suggested
    unit_id: int
    concept: str = ""  # the BI-RADS concept code, when the name is one


def concept_name(concept: Concept) -> str:
    """How a BI-RADS concept reads in an explanation: term and category in lower case, e.g. "spiculated
    (mass margin)" for the lexicon's "Spiculated" in "Mass — margin"."""
    category = " ".join(concept.category_label.replace("—", " ").split()).lower()
    return f"{concept.term[:1].lower()}{concept.term[1:]} ({category})"


def _answer_key(answer: UnitAnnotation) -> str:
    if answer.recognizable != UnitAnnotation.Recognizable.YES:
        return NOT_RECOGNISABLE
    first = next((p for p in answer.phenomena if p.get("concept") or p.get("description")), None)
    if first is None:
        return NOT_RECOGNISABLE
    return f"concept:{first['concept']}" if first.get("concept") else f"text:{first['description'].strip()}"


def _majorities(trained: TrainedModel) -> dict[int, str]:
    """unit pk -> the key more than half of its answering experts agree on."""
    keys: dict[int, list[str]] = defaultdict(list)
    answers = UnitAnnotation.objects.filter(unit__model=trained).exclude(recognizable="").order_by("unit_id", "pk")
    for answer in answers.only("unit_id", "recognizable", "phenomena"):
        keys[answer.unit_id].append(_answer_key(answer))
    result = {}
    for unit_id, unit_keys in keys.items():
        key, votes = Counter(unit_keys).most_common(1)[0]
        if votes * 2 > len(unit_keys):
            result[unit_id] = key
    return result


def unit_names(*, trained: TrainedModel, user: Any = None) -> dict[int, UnitName]:
    """channel -> the name each named unit of ``trained`` goes by (module docstring), as ``user`` may see
    it (None: everything, as a batch job records it)."""
    concepts = {c.code: c for c in Concept.objects.all()}
    experts_visible = user is None or user_sees_others_labels(user, trained.dataset)
    majorities = _majorities(trained) if experts_visible else {}
    names: dict[int, UnitName] = {}
    units = Unit.objects.filter(model=trained).select_related("consensus__concept", "suggested_concept")
    for unit in units.only(
        "pk",
        "channel",
        "suggested_concept__code",
        "suggested_concept__term",
        "suggested_concept__category_label",
        "consensus__recognizable",
        "consensus__description",
        "consensus__concept__code",
        "consensus__concept__term",
        "consensus__concept__category_label",
    ):
        name = _name_of(unit, majorities.get(unit.pk), concepts)
        if name is not None:
            names[unit.channel] = name
    return names


def _name_of(unit: Unit, majority: str | None, concepts: dict[str, Concept]) -> UnitName | None:
    consensus = getattr(unit, "consensus", None)
    if consensus is not None:
        if consensus.recognizable != UnitAnnotation.Recognizable.YES:
            return None
        if consensus.concept is not None:
            return UnitName(concept_name(consensus.concept), "consensus", unit.pk, consensus.concept.code)
        if consensus.description.strip():
            return UnitName(consensus.description.strip(), "consensus", unit.pk)
    if majority is not None:
        if majority == NOT_RECOGNISABLE:
            return None
        kind, value = majority.split(":", 1)
        concept = concepts.get(value) if kind == "concept" else None
        if concept is not None:
            return UnitName(concept_name(concept), "experts", unit.pk, concept.code)
        return UnitName(value, "experts", unit.pk)
    if unit.suggested_concept is not None:
        return UnitName(concept_name(unit.suggested_concept), "suggested", unit.pk, unit.suggested_concept.code)
    return None


def models_for_image(*, image: Image) -> QuerySet[TrainedModel]:
    """Models that can explain ``image``: those trained on its dataset, newest first."""
    return TrainedModel.objects.filter(dataset_id=image.dataset_id).order_by("-created_at", "-id")


def upload_visible(*, user: Any) -> QuerySet[UploadedImage]:
    """Uploads ``user`` may open: their own, or every upload for an admin."""
    uploads = UploadedImage.objects.all()
    return uploads if user_is_admin(user) else uploads.filter(owner_id=getattr(user, "pk", None))


def explanations_of(*, trained: TrainedModel, split: str = "", method: str = "") -> QuerySet[Explanation]:
    """The dataset images' explanations by ``trained`` (of one split / method when given), by image."""
    rows = Explanation.objects.filter(model=trained, image__isnull=False).select_related("image")
    if split:
        rows = rows.filter(image__split=split)
    if method:
        rows = rows.filter(method=method)
    return rows.order_by("image_id", "method")


def explanation_export_rows(*, rows: QuerySet[Explanation], chunk: int = 500) -> Iterator[dict[str, Any]]:
    """One flat record per explanation (streamed): image, decision, probabilities, units, text, evaluation."""
    for explanation in rows.iterator(chunk_size=chunk):
        image = explanation.image
        yield {
            "explanation_id": explanation.pk,
            "model_id": explanation.model_id,
            "image_id": explanation.image_id,
            "source_name": image.source_name if image else "",
            "split": image.split if image else "",
            "true_label": image.label if image else "",
            "method": explanation.method,
            "decided": explanation.decided,
            "scores": explanation.scores,
            "units": [
                {key: unit.get(key) for key in ("channel", "influence", "max_activation", "label", "source")}
                for unit in explanation.units
            ],
            "text": explanation.text,
            "evaluation": explanation.evaluation,
            "created_at": explanation.created_at.isoformat(),
        }


def viewer_units(*, explanation: Explanation, user: Any) -> list[dict[str, Any]]:
    """The explanation's units with the names they go by now, as ``user`` may see them."""
    names = unit_names(trained=explanation.model, user=user)
    units = []
    for stored in explanation.units:
        name = names.get(stored["channel"])
        units.append(
            {
                **stored,
                "label": name.label if name else None,
                "source": name.source if name else None,
                "concept": name.concept if name else "",
            }
        )
    return units


def viewer_text(*, explanation: Explanation, units: list[dict[str, Any]]) -> str:
    """The explanation's text worded with ``units``' current names (``viewer_units``)."""
    classes = list(explanation.model.classes)
    decided = classes.index(explanation.decided)
    scores = np.asarray([explanation.scores[name] for name in classes], dtype=np.float64)
    influential = [
        InfluentialUnit(
            unit=u["channel"],
            influence=u["influence"],
            max_activation=u["max_activation"],
            activation_map=np.empty((0, 0), dtype=np.float32),
            label=u["label"],
            source=u["source"],
        )
        for u in units
    ]
    return explanation_text(classes, decided, scores, influential)


def explanation_csv_header(classes: list[str]) -> list[str]:
    return [
        "explanation_id",
        "model_id",
        "image_id",
        "source_name",
        "split",
        "true_label",
        "method",
        "decided",
        *(f"p_{name}" for name in classes),
        *(f"unit{rank}_{field}" for rank in range(1, 9) for field in ("channel", "influence", "label", "source")),
        "text",
        "correct",
        "named_hit",
        "greedy_top1",
        "greedy_top8",
        "created_at",
    ]


def explanation_csv_rows(records: Iterable[dict[str, Any]], classes: list[str]) -> Iterator[list[Any]]:
    for record in records:
        units = (record["units"] + [{}] * 8)[:8]
        evaluation = record["evaluation"] or {}
        yield [
            record["explanation_id"],
            record["model_id"],
            record["image_id"],
            record["source_name"],
            record["split"],
            record["true_label"],
            record["method"],
            record["decided"],
            *(record["scores"].get(name) for name in classes),
            *(unit.get(field) for unit in units for field in ("channel", "influence", "label", "source")),
            record["text"],
            evaluation.get("correct"),
            evaluation.get("named_hit"),
            evaluation.get("greedy_top1"),
            evaluation.get("greedy_top8"),
            record["created_at"],
        ]
