"""Move an installation's rows to another database and its media to another storage, verified on arrival.

The whole copy is one transaction on the target, checked there (every table's count and checksum against
the source's) before it commits: a mismatch or any error leaves the target as migrate left it. The source
is only read, inside one transaction (on SQLite that holds the write lock: nothing changes meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.files.storage import default_storage
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.migrations.executor import MigrationExecutor

from annotator.errors import ApplicationError
from annotator.models import Job

from .digests import TableDigest, installation_digests
from .media import MediaReport, media_copy, referenced_media, target_storage
from .tables import (
    NATURAL_KEY_MODELS,
    copied_models,
    natural_key_ids_map,
    seeded_rows_delete,
    sequences_reset,
    table_copy,
    tables_with_rows,
)
from .target import target_connect, target_disconnect, target_foreign_tables, target_migrate

Say = Callable[[str], None]


@dataclass
class MoveReport:
    """Each moved table's digest on both sides, what happened to the media, and whether this run copied."""

    tables: list[tuple[TableDigest, TableDigest]] = field(default_factory=list)
    media: MediaReport | None = None
    already_moved: bool = False

    @property
    def mismatched(self) -> list[str]:
        return [source.table for source, target in self.tables if source != target]


class MoveMismatch(ApplicationError):
    """The target's rows differ from the source's; carries the report so the table can be printed."""

    def __init__(self, message: str, report: MoveReport) -> None:
        super().__init__(message, {"tables": report.mismatched})
        self.report = report


def _source_check(alias: str) -> None:
    executor = MigrationExecutor(connections[alias])
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        raise ApplicationError(
            f"this installation has {len(pending)} unapplied migrations: run manage.py migrate on it first"
        )
    busy = Job.objects.using(alias).filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count()
    if busy:
        raise ApplicationError(
            f"{busy} jobs are queued or running: let them finish (or cancel them) and stop the workers first; "
            "their broker messages would not follow the move"
        )


def _compare(source: str, target: str) -> MoveReport:
    pairs = list(zip(installation_digests(source), installation_digests(target), strict=True))
    return MoveReport(tables=pairs)


def _copy(source: str, target: str, say: Say) -> None:
    seeded_rows_delete(target)
    id_maps = natural_key_ids_map(source=source, target=target)
    models = copied_models()
    for model in models:
        count = table_copy(model, source=source, target=target, id_maps=id_maps)
        if count:
            say(f"  {model._meta.db_table}: {count} rows")
    sequences_reset(target, [*NATURAL_KEY_MODELS, *models])


def installation_move(*, target_url: str, media_to: str | None, say: Say) -> MoveReport:
    """Move this installation (the default database and storage) to ``target_url`` and ``media_to``.

    A target that already holds exactly this installation's rows is verified and left alone (a re-run);
    one holding anything else is refused. Raises ApplicationError (MoveMismatch when checksums differ).
    """
    source = DEFAULT_DB_ALIAS
    target = target_connect(target_url)
    try:
        foreign = target_foreign_tables(target)
        if foreign:
            raise ApplicationError(
                f"the target database holds {len(foreign)} tables of something else ({', '.join(foreign[:5])}): "
                "name a new, empty database"
            )
        _source_check(source)  # before the target is touched; again below, under the source's lock
        say("Migrating the target database")
        target_migrate(target_url)
        storage = target_storage(media_to) if media_to else None
        with transaction.atomic(using=source):
            _source_check(source)
            filled = tables_with_rows(target)
            if filled:
                report = _compare(source, target)
                if report.mismatched:
                    raise MoveMismatch(
                        f"the target database already holds rows ({', '.join(filled[:5])}) that are not this "
                        f"installation's: {len(report.mismatched)} tables differ. Name a new, empty database",
                        report,
                    )
                report.already_moved = True
            media = None
            if storage is not None:
                say("Copying media files")
                media = media_copy(source=default_storage, target=storage, referenced=referenced_media(source))
            if filled:
                report.media = media
                return report
            say("Copying tables")
            try:
                with transaction.atomic(using=target):
                    _copy(source, target, say)
                    say("Verifying counts and checksums")
                    report = _compare(source, target)
                    if report.mismatched:
                        raise MoveMismatch(
                            f"{len(report.mismatched)} tables differ after the copy: nothing kept", report
                        )
            except DatabaseError as exc:  # e.g. a deferred foreign key checked at the commit: nothing kept either
                raise ApplicationError(f"the target database refused the copy, nothing kept: {exc}") from exc
            report.media = media
            return report
    finally:
        target_disconnect(target)
