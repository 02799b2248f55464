"""Row counts and content checksums of a table, comparable across database backends.

A row's values (as Django reads them) become one canonical JSON text: datetimes in UTC ISO form, JSON
values with sorted keys, floats by their shortest exact form, and a reference to a content type or a
permission by that row's natural key (its id differs between an installation and its copy). The table's
checksum is the sum of its rows' SHA-256s modulo 2^256: independent of row order, and no two rows cancel.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model

from .tables import NATURAL_KEY_MODELS, columns_pointing_at, copied_models

NaturalKeys = dict[type[Model], dict[Any, tuple[Any, ...]]]
_MODULUS = 2**256


@dataclass(frozen=True)
class TableDigest:
    table: str
    rows: int
    checksum: str


def natural_keys(alias: str) -> NaturalKeys:
    """Id -> natural key of every content type and permission at ``alias``."""
    types = {
        pk: (app, model) for pk, app, model in ContentType.objects.using(alias).values_list("pk", "app_label", "model")
    }
    permissions = {
        pk: (*types[type_id], codename)
        for pk, type_id, codename in Permission.objects.using(alias).values_list("pk", "content_type_id", "codename")
    }
    return {ContentType: types, Permission: permissions}


def _plain(value: Any) -> Any:
    """What json.dumps cannot write itself, in one canonical text form."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC).isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)  # Decimal, UUID, timedelta


def row_checksum(values: list[Any]) -> int:
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def table_digest(model: type[Model], *, alias: str, keys: NaturalKeys) -> TableDigest:
    """Count and checksum ``model``'s rows at ``alias``. A natural-key table's own ids are left out."""
    fields = [field for field in model._meta.concrete_fields if not (model in NATURAL_KEY_MODELS and field.primary_key)]
    translate = columns_pointing_at(fields, keys)
    rows, total = 0, 0
    for row in model._base_manager.using(alias).values_list(*[field.attname for field in fields]).iterator(2000):
        values = [translate[i].get(value) if i in translate else value for i, value in enumerate(row)]
        total = (total + row_checksum(values)) % _MODULUS
        rows += 1
    return TableDigest(model._meta.db_table, rows, f"{total:064x}")


def installation_digests(alias: str) -> list[TableDigest]:
    """Every moved table's digest at ``alias``: the copied ones and the natural-key ones."""
    keys = natural_keys(alias)
    return [table_digest(model, alias=alias, keys=keys) for model in [*NATURAL_KEY_MODELS, *copied_models()]]
