"""Optimistic concurrency for labels: save a row only if nobody saved it since the writer loaded it.

The row is updated only if it still has the version the writer saw (one conditional UPDATE, portable
across SQLite and PostgreSQL); otherwise the save is refused with a 409 that carries the current answers,
so nobody silently overwrites anybody. Every accepted save adds an AnnotationChange row (who, when, before,
after) in the same transaction. Used for unit annotations, unit consensus and fracture labels.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ..errors import ApplicationError
from ..models import AnnotationChange, VersionedLabel

__all__ = ["label_snapshot", "save_versioned"]

LabelT = TypeVar("LabelT", bound=VersionedLabel)


def label_snapshot(label: VersionedLabel | None) -> dict[str, Any] | None:
    """A label's answers as plain JSON, the shape the history, the 409 body and the API keep."""
    return None if label is None else label.snapshot()


def _conflict(row: VersionedLabel | None, snapshot: dict[str, Any] | None, seen: int, what: str) -> ApplicationError:
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
    model: type[LabelT],
    lookup: dict[str, Any],
    values: dict[str, Any],
    version: int,
    target: str,
    user: User,
    what: str,
    history: dict[str, Any],
) -> LabelT:
    """Create (version 0 seen) or update (version n seen) the row `lookup` names, only if nobody saved since.

    Must run inside a transaction. Raises a 409 ApplicationError on a stale version.
    """
    row = model._default_manager.filter(**lookup).first()
    before = label_snapshot(row)
    if version == 0:
        if row is not None:
            raise _conflict(row, before, version, what)
        try:
            with transaction.atomic():  # a savepoint: a concurrent create loses cleanly
                row = model._default_manager.create(**lookup, **values, version=1)
        except IntegrityError:
            row = model._default_manager.filter(**lookup).first()
            raise _conflict(row, label_snapshot(row), version, what) from None
    else:
        # update() skips auto_now, so the timestamp is set here.
        updated = model._default_manager.filter(**lookup, version=version).update(
            **values, updated_at=timezone.now(), version=F("version") + 1
        )
        if updated == 0:
            raise _conflict(row, before, version, what)
        row = model._default_manager.get(**lookup)
    AnnotationChange.objects.create(
        target=target,
        target_id=row.pk,
        user=user,
        version=row.version,
        before=before,
        after=label_snapshot(row),
        **history,
    )
    return row
