"""Writes for the expert survey: a unit's annotation, its consensus, and their history.

Every save names the version the writer last saw and goes through ``save_versioned``: a stale version is
refused with a 409 that carries the current answers, and every accepted save adds an AnnotationChange row
(who, when, before, after) in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from ..errors import ApplicationError
from ..models import AnnotationChange, Association, Concept, Unit, UnitAnnotation, UnitConsensus, VersionedLabel
from ..permissions import user_sees_others_labels
from .versioned import LabelT, label_snapshot, save_versioned

__all__ = [
    "MAX_PHENOMENA",
    "clean_phenomena",
    "unit_annotation_save",
    "unit_consensus_clear",
    "unit_consensus_save",
]

MAX_PHENOMENA = 10
MAX_TEXT = 4000
RECOGNIZABLE = set(UnitAnnotation.Recognizable.values)
ASSOCIATIONS = set(Association.values)


# What the history and a 409 message call each label of a unit.
_UNIT_LABELS: dict[type[VersionedLabel], tuple[str, str]] = {
    UnitAnnotation: (AnnotationChange.Target.UNIT_ANNOTATION, "annotation"),
    UnitConsensus: (AnnotationChange.Target.UNIT_CONSENSUS, "consensus"),
}


def _unit_label_save(
    model: type[LabelT], *, lookup: dict[str, Any], values: dict[str, Any], version: int, user: User
) -> LabelT:
    """``save_versioned`` for an answer or a consensus: the change is kept in the history of ``lookup["unit"]``."""
    target, what = _UNIT_LABELS[model]
    return save_versioned(
        model=model,
        lookup=lookup,
        values=values,
        version=int(version),
        target=target,
        user=user,
        what=what,
        history={"unit": lookup["unit"]},
        names_visible=user_sees_others_labels(user, lookup["unit"].model.dataset),
    )


def clean_phenomena(phenomena: Any) -> list[dict[str, str]]:
    """Validate the phenomena list at the boundary; returns it with known keys only."""
    if not isinstance(phenomena, list):
        raise ApplicationError("phenomena must be a list", {"field": "phenomena"})
    if len(phenomena) > MAX_PHENOMENA:
        raise ApplicationError(f"at most {MAX_PHENOMENA} phenomena per unit", {"field": "phenomena"})
    codes = {str(item.get("concept") or "") for item in phenomena if isinstance(item, dict)} - {""}
    known = set(Concept.objects.filter(code__in=codes).values_list("code", flat=True))
    cleaned = []
    for number, item in enumerate(phenomena, start=1):
        if not isinstance(item, dict):
            raise ApplicationError(f"phenomenon {number} must be an object", {"field": "phenomena"})
        description = str(item.get("description") or "").strip()
        concept = str(item.get("concept") or "")
        association = str(item.get("association") or "")
        if len(description) > MAX_TEXT:
            raise ApplicationError(f"phenomenon {number}: description is too long", {"field": "phenomena"})
        if concept and concept not in known:
            raise ApplicationError(f"phenomenon {number}: unknown BI-RADS concept {concept!r}", {"field": "phenomena"})
        if association and association not in ASSOCIATIONS:
            raise ApplicationError(
                f"phenomenon {number}: association must be one of {', '.join(sorted(ASSOCIATIONS))}",
                {"field": "phenomena"},
            )
        cleaned.append({"description": description, "concept": concept, "association": association})
    return cleaned


@transaction.atomic
def unit_annotation_save(
    *,
    unit: Unit,
    expert: User,
    version: int,
    recognizable: str = "",
    phenomena: list[dict[str, Any]] | None = None,
    confidence: int | None = None,
    notes: str = "",
) -> UnitAnnotation:
    """Save one expert's survey answers for a unit. `version` is the one the expert loaded (0: none yet)."""
    if recognizable not in RECOGNIZABLE | {""}:
        raise ApplicationError("recognizable must be yes, no or unsure", {"field": "recognizable"})
    if confidence is not None and not 1 <= int(confidence) <= 5:
        raise ApplicationError("confidence must be between 1 and 5", {"field": "confidence"})
    if len(notes) > MAX_TEXT:
        raise ApplicationError("notes are too long", {"field": "notes"})
    values = {
        "recognizable": recognizable,
        "phenomena": clean_phenomena(phenomena or []),
        "confidence": confidence,
        "notes": notes,
    }
    return _unit_label_save(
        UnitAnnotation, lookup={"unit": unit, "expert": expert}, values=values, version=version, user=expert
    )


@transaction.atomic
def unit_consensus_save(
    *,
    unit: Unit,
    admin: User,
    version: int,
    recognizable: str,
    description: str = "",
    concept: str = "",
    association: str = "",
) -> UnitConsensus:
    """An admin's consensus label for a unit, with the same version check as the experts' answers."""
    if recognizable not in RECOGNIZABLE:
        raise ApplicationError("recognizable must be yes, no or unsure", {"field": "recognizable"})
    if association and association not in ASSOCIATIONS:
        raise ApplicationError("unknown association", {"field": "association"})
    concept_row = None
    if concept:
        concept_row = Concept.objects.filter(code=concept).first()
        if concept_row is None:
            raise ApplicationError(f"unknown BI-RADS concept {concept!r}", {"field": "concept"})
    values = {
        "recognizable": recognizable,
        "description": description.strip()[:MAX_TEXT],
        "concept": concept_row,
        "association": association,
        "set_by": admin,
    }
    return _unit_label_save(UnitConsensus, lookup={"unit": unit}, values=values, version=version, user=admin)


@transaction.atomic
def unit_consensus_clear(*, unit: Unit, admin: User) -> None:
    consensus = UnitConsensus.objects.filter(unit=unit).first()
    if consensus is None:
        return
    AnnotationChange.objects.create(
        target=AnnotationChange.Target.UNIT_CONSENSUS,
        target_id=consensus.pk,
        unit=unit,
        user=admin,
        version=consensus.version + 1,
        before=label_snapshot(consensus),
        after={},
    )
    consensus.delete()
