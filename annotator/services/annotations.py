"""Writes for the expert survey: a unit's annotation, its consensus, and their history.

Every save names the version the writer last saw. The row is updated only if it still has that version
(one conditional UPDATE, portable across SQLite and PostgreSQL), otherwise the save is refused with a
409 that carries the current answers, so nobody silently overwrites anybody. Every accepted save adds an
AnnotationChange row (who, when, before, after) in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Model
from django.utils import timezone

from ..errors import ApplicationError
from ..models import AnnotationChange, Concept, Unit, UnitAnnotation, UnitConsensus

__all__ = [
    "MAX_PHENOMENA",
    "annotation_snapshot",
    "consensus_snapshot",
    "save_versioned",
    "unit_annotation_save",
    "unit_consensus_clear",
    "unit_consensus_save",
]

MAX_PHENOMENA = 10
MAX_TEXT = 4000
RECOGNIZABLE = set(UnitAnnotation.Recognizable.values)
ASSOCIATIONS = set(UnitAnnotation.Association.values)


def annotation_snapshot(annotation: UnitAnnotation | None) -> dict[str, Any] | None:
    """The answers as plain JSON, the shape the history and the API keep."""
    if annotation is None:
        return None
    return {
        "recognizable": annotation.recognizable,
        "phenomena": annotation.phenomena,
        "confidence": annotation.confidence,
        "notes": annotation.notes,
    }


def consensus_snapshot(consensus: UnitConsensus | None) -> dict[str, Any] | None:
    if consensus is None:
        return None
    return {
        "recognizable": consensus.recognizable,
        "description": consensus.description,
        "concept": consensus.concept.code if consensus.concept_id else "",
        "association": consensus.association,
    }


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


def _conflict(row: Model | None, snapshot: dict[str, Any] | None, seen: int, what: str) -> ApplicationError:
    current = getattr(row, "version", 0)
    who = ""
    if row is not None:
        change = AnnotationChange.objects.filter(target_id=row.pk, version=current).select_related("user").first()
        who = f" by {change.user}" if change and change.user else ""
    return ApplicationError(
        f"This {what} was changed{who} since you opened it (you had version {seen}, it is now version {current}). "
        "Your changes were not saved: reload to see the current answers.",
        {"version": current, "current": snapshot},
        status=409,
    )


def save_versioned(
    *,
    model: type[Model],
    lookup: dict[str, Any],
    values: dict[str, Any],
    version: int,
    snapshot: Any,
    target: str,
    user: AbstractBaseUser,
    what: str,
    history: dict[str, Any],
) -> Model:
    """Create (version 0 seen) or update (version n seen) the row `lookup` names, only if nobody saved since.

    Must run inside a transaction. Raises a 409 ApplicationError on a stale version.
    """
    row = model.objects.filter(**lookup).first()
    before = snapshot(row)
    if version == 0:
        if row is not None:
            raise _conflict(row, before, version, what)
        try:
            with transaction.atomic():  # a savepoint: a concurrent create loses cleanly
                row = model.objects.create(**lookup, **values, version=1)
        except IntegrityError:
            row = model.objects.filter(**lookup).first()
            raise _conflict(row, snapshot(row), version, what) from None
    else:
        # update() skips auto_now, so the timestamp is set here.
        updated = model.objects.filter(**lookup, version=version).update(
            **values, updated_at=timezone.now(), version=F("version") + 1
        )
        if updated == 0:
            raise _conflict(row, before, version, what)
        row = model.objects.get(**lookup)
    AnnotationChange.objects.create(
        target=target, target_id=row.pk, user=user, version=row.version, before=before, after=snapshot(row), **history
    )
    return row


@transaction.atomic
def unit_annotation_save(
    *,
    unit: Unit,
    expert: AbstractBaseUser,
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
    return save_versioned(
        model=UnitAnnotation, lookup={"unit": unit, "expert": expert}, values=values, version=int(version),
        snapshot=annotation_snapshot, target=AnnotationChange.Target.UNIT_ANNOTATION, user=expert,
        what="annotation", history={"unit": unit},
    )  # fmt: skip


@transaction.atomic
def unit_consensus_save(
    *,
    unit: Unit,
    admin: AbstractBaseUser,
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
    return save_versioned(
        model=UnitConsensus, lookup={"unit": unit}, values=values, version=int(version),
        snapshot=consensus_snapshot, target=AnnotationChange.Target.UNIT_CONSENSUS, user=admin,
        what="consensus", history={"unit": unit},
    )  # fmt: skip


@transaction.atomic
def unit_consensus_clear(*, unit: Unit, admin: AbstractBaseUser) -> None:
    consensus = UnitConsensus.objects.filter(unit=unit).first()
    if consensus is None:
        return
    AnnotationChange.objects.create(
        target=AnnotationChange.Target.UNIT_CONSENSUS, target_id=consensus.pk, unit=unit, user=admin,
        version=consensus.version + 1, before=consensus_snapshot(consensus), after={},
    )  # fmt: skip
    consensus.delete()
