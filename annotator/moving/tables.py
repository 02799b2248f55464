"""Which tables a move copies, and the copy itself: every row with its primary key, value for value.

Rows are read through the ORM (so each value is the Python value Django reads, JSON decoded, datetimes
aware) and written with each field's own ``get_db_prep_save`` for the target's backend, in multi-row
INSERTs: no model ``save()``, so ``auto_now`` times and versions stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core.management.color import no_style
from django.db import connections
from django.db.models import Field, Model

from annotator.errors import ApplicationError
from annotator.models import Concept

# Rebuilt by the target's migrate (post_migrate) with ids of its own: matched by natural key, never copied
# by id; a source row the target lacks (a model since removed) is created.
NATURAL_KEY_MODELS: tuple[type[Model], ...] = (ContentType, Permission)
# Sign-in sessions stay behind: everyone signs in again on the new installation.
LEFT_BEHIND: tuple[type[Model], ...] = (Session,)
# Seeded by migrations (the BI-RADS lexicon, the role groups): the target's seed rows are replaced by the
# source's, whose ids the findings, units and users point at.
SEEDED_BY_MIGRATIONS: tuple[type[Model], ...] = (Concept, Group)

IdMaps = dict[type[Model], dict[Any, Any]]
Mapped = TypeVar("Mapped")


def copied_models() -> list[type[Model]]:
    """Every table of every installed app that a move copies by id, many-to-many link tables included."""
    skip = {*NATURAL_KEY_MODELS, *LEFT_BEHIND}
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy and model not in skip
    ]


def tables_with_rows(alias: str) -> list[str]:
    """The copied tables that hold rows at ``alias``, the migration-seeded ones aside."""
    return [
        model._meta.db_table
        for model in copied_models()
        if model not in SEEDED_BY_MIGRATIONS and model._base_manager.using(alias).exists()
    ]


def seeded_rows_delete(alias: str) -> None:
    for model in SEEDED_BY_MIGRATIONS:
        model._base_manager.using(alias).all().delete()


def natural_key_ids_map(*, source: str, target: str) -> IdMaps:
    """Source id -> target id of every content type and permission, matched by natural key."""
    types: dict[Any, Any] = {}
    for row in ContentType.objects.using(source).order_by("pk"):
        match, _ = ContentType.objects.db_manager(target).get_or_create(app_label=row.app_label, model=row.model)
        types[row.pk] = match.pk
    permissions: dict[Any, Any] = {}
    for perm in Permission.objects.using(source).order_by("pk"):
        found, _ = Permission.objects.db_manager(target).get_or_create(
            content_type_id=types[perm.content_type_id], codename=perm.codename, defaults={"name": perm.name}
        )
        permissions[perm.pk] = found.pk
    return {ContentType: types, Permission: permissions}


def columns_pointing_at(fields: list[Field[Any, Any]], maps: dict[type[Model], Mapped]) -> dict[int, Mapped]:
    """Index of each field that references one of ``maps``' models -> that model's entry."""
    return {
        index: maps[field.related_model]
        for index, field in enumerate(fields)
        if isinstance(field.related_model, type) and field.related_model in maps
    }


def _batches(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def table_copy(model: type[Model], *, source: str, target: str, id_maps: IdMaps) -> int:
    """Copy every row of ``model`` from ``source`` to ``target`` keeping its primary key; returns the count."""
    fields = list(model._meta.concrete_fields)
    connection = connections[target]
    remapped = columns_pointing_at(fields, id_maps)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    row_placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    size = max(1, min(1000, (connection.features.max_query_params or 60000) // len(fields)))
    rows = (
        model._base_manager.using(source)
        .order_by("pk")
        .values_list(*[field.attname for field in fields])
        .iterator(chunk_size=size)
    )
    copied = 0
    with connection.cursor() as cursor:
        for batch in _batches(rows, size):
            params: list[Any] = []
            for row in batch:
                for index, (field, value) in enumerate(zip(fields, row, strict=True)):
                    if index in remapped and value is not None:
                        if value not in remapped[index]:
                            raise ApplicationError(f"{model._meta.db_table}: {field.column} {value} points at no row")
                        value = remapped[index][value]
                    params.append(field.get_db_prep_save(value, connection))
            sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row_placeholders] * len(batch))}"
            try:
                cursor.execute(sql, params)
            except Exception as exc:  # the backend's own error types; re-raised with the table named
                raise ApplicationError(f"copying {model._meta.db_table} failed: {exc}") from exc
            copied += len(batch)
    return copied


def sequences_reset(alias: str, models: list[type[Model]]) -> None:
    """Point each table's id sequence past its largest copied id, so new rows do not collide."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(statement)
