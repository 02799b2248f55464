"""The target database of a move: a second connection alias for a URL, its schema made by its own migrate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import environ
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from annotator.errors import ApplicationError

TARGET_ALIAS = "move_target"


def _same_database(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["ENGINE"] != b["ENGINE"]:
        return False
    if a["ENGINE"].endswith("sqlite3"):
        return Path(str(a["NAME"])).resolve() == Path(str(b["NAME"])).resolve()
    return (a["NAME"], a.get("HOST") or "localhost", str(a.get("PORT") or "")) == (
        b["NAME"],
        b.get("HOST") or "localhost",
        str(b.get("PORT") or ""),
    )


def target_connect(url: str) -> str:
    """Register the database at ``url`` as a connection alias; refuses the installation's own database."""
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # django-environ raises several types for a malformed URL
        raise ApplicationError(f"--to is not a database URL ({exc}); e.g. postgres://user@host:5432/name") from exc
    if not config.get("ENGINE") or not config.get("NAME"):
        raise ApplicationError("--to names no database; e.g. postgres://user@host:5432/name")
    # The same defaults Django gives the databases of settings.DATABASES.
    configured = connections.configure_settings({DEFAULT_DB_ALIAS: config})[DEFAULT_DB_ALIAS]
    if _same_database(configured, connections.settings[DEFAULT_DB_ALIAS]):
        raise ApplicationError("--to is this installation's own database: name a new, empty one")
    connections.settings[TARGET_ALIAS] = configured
    return TARGET_ALIAS


def target_foreign_tables(alias: str) -> list[str]:
    """Tables of something other than a DeepMiner installation: a database with tables but no Django
    migrations record is not ours to add tables to."""
    tables = connections[alias].introspection.table_names()
    return [] if not tables or "django_migrations" in tables else tables


def target_migrate(url: str) -> None:
    """Bring the target's schema to this code's migrations with the target's own ``manage.py migrate``
    (a separate process whose only database is the target, so no data migration can write elsewhere)."""
    completed = subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "migrate", "--noinput"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode:
        output = (completed.stdout + completed.stderr).strip()[-3000:]
        raise ApplicationError(f"migrating the target database failed:\n{output}")


def target_disconnect(alias: str) -> None:
    connections[alias].close()
    del connections[alias]
    del connections.settings[alias]
