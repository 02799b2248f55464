"""manage.py move_installation --to DATABASE_URL [--media-to FOLDER | STORAGE_ALIAS]: move this installation
(e.g. the embedded SQLite default) to PostgreSQL and its media to another storage, verified by counts and
checksums. Run it with the web server and the workers stopped."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotator.errors import ApplicationError
from annotator.moving.move import MoveMismatch, MoveReport, installation_move


class Command(BaseCommand):
    help = (
        "Copy every row of this installation's database to another (migrated first; it must be empty) keeping "
        "ids, and its media files to another storage, then compare per-table row counts and checksums and "
        "each file's SHA-256. A mismatch keeps nothing and exits non-zero; a finished move re-run only verifies."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--to", required=True, help="target database URL, e.g. postgres://user@host:5432/name")
        parser.add_argument(
            "--media-to",
            default=None,
            help="a storage alias of STORAGES (e.g. an S3 bucket's) or a folder; unset: media stay where they are",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = installation_move(target_url=options["to"], media_to=options["media_to"], say=self.stdout.write)
        except MoveMismatch as exc:
            self._print_tables(exc.report)
            raise CommandError(exc.message) from exc
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self._print_tables(report)
        self._print_media(report)
        verb = "was already moved: nothing copied, everything verified" if report.already_moved else "moved"
        self.stdout.write(self.style.SUCCESS(f"Installation {verb}; counts and checksums match."))

    def _print_tables(self, report: MoveReport) -> None:
        width = max(len(source.table) for source, _ in report.tables)
        self.stdout.write(f"{'table':<{width}}  {'source rows':>11}  {'target rows':>11}  {'checksum':<16}  match")
        for source, target in report.tables:
            checksum = source.checksum[:16] if source == target else f"{source.checksum[:7]}/{target.checksum[:7]}"
            self.stdout.write(
                f"{source.table:<{width}}  {source.rows:>11}  {target.rows:>11}  {checksum:<16}  "
                f"{'yes' if source == target else 'NO'}"
            )

    def _print_media(self, report: MoveReport) -> None:
        media = report.media
        if media is None:
            self.stdout.write("Media files: not moved (no --media-to); the new installation reads the same storage.")
            return
        self.stdout.write(
            f"Media files: {media.files} ({media.bytes:,} bytes), {media.copied} copied, {media.already_there} "
            "already there, every one's SHA-256 equal in the target."
        )
        if media.missing_in_source:
            shown = ", ".join(media.missing_in_source[:5])
            self.stderr.write(f"{len(media.missing_in_source)} files named by rows were already missing here: {shown}")
