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
from ..permissions import user_is_admin

__all__ = ["label_snapshot", "save_versioned"]

LabelT = TypeVar("LabelT", bound=VersionedLabel)


def label_snapshot(label: VersionedLabel | None) -> dict[str, Any] | None:
    """A label's answers as plain JSON, the shape the history, the 409 body and the API keep."""
    return None if label is None else label.snapshot()


def _changed_by(row: VersionedLabel | None, target: str, user: User, names_visible: bool) -> str:
    """Who made the row's current version, as the saver may be told: themselves ("in another tab"), by name
    where they see others' labels, else only "an admin" or "someone else" (a blind expert learns no name)."""
    if row is None:
        return ""
    # The change log is shared by every kind of label: its row ids collide across kinds, so match the kind too.
    change = (
        AnnotationChange.objects.filter(target=target, target_id=row.pk, version=row.version)
        .select_related("user")
        .first()
    )
    author = change.user if change else None
    if author is None:
        return ""
    if author.pk == user.pk:
        return " in another tab or window"
    if names_visible:
        return f" by {author}"
    return " by an admin" if user_is_admin(author) else " by someone else"


def _conflict(
    row: VersionedLabel | None, snapshot: dict[str, Any] | None, seen: int, what: str, who: str
) -> ApplicationError:
    current = getattr(row, "version", 0)
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
    names_visible: bool,
) -> LabelT:
    """Create (version 0 seen) or update (version n seen) the row `lookup` names, only if nobody saved since.

    Must run inside a transaction. Raises a 409 ApplicationError on a stale version, naming who saved last
    only if ``names_visible`` (the saver sees others' labels on this dataset).
    """
    row = model._default_manager.filter(**lookup).first()
    before = label_snapshot(row)
    if version == 0:
        if row is not None:
            raise _conflict(row, before, version, what, _changed_by(row, target, user, names_visible))
        try:
            with transaction.atomic():  # a savepoint: a concurrent create loses cleanly
                row = model._default_manager.create(**lookup, **values, version=1)
        except IntegrityError:
            row = model._default_manager.filter(**lookup).first()
            raise _conflict(
                row, label_snapshot(row), version, what, _changed_by(row, target, user, names_visible)
            ) from None
    else:
        # update() skips auto_now, so the timestamp is set here.
        updated = model._default_manager.filter(**lookup, version=version).update(
            **values, updated_at=timezone.now(), version=F("version") + 1
        )
        if updated == 0:
            raise _conflict(row, before, version, what, _changed_by(row, target, user, names_visible))
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
