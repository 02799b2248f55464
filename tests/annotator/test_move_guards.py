"""The installation move's guards and parts, without a second database server: row checksums across
backends, the media copy between two real FileSystemStorages, the refusals before anything is written, and a
whole move of the tests' database into a new SQLite file. The move to PostgreSQL is
tests/annotator/test_move_installation.py."""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError, call_command

from annotator.errors import ApplicationError
from annotator.models import AnnotationChange, Job, UnitAnnotation
from annotator.moving.digests import row_checksum
from annotator.moving.media import media_copy, target_storage
from annotator.services.annotations import unit_annotation_save
from tests.conftest import worker_environment
from tests.factories import JobFactory, UnitFactory, UserFactory
from tests.s3_media import bucket_create, moto_endpoint_fixture  # noqa: F401  (fixture)

UTC = datetime.UTC
ROOT = Path(__file__).resolve().parents[2]


def test_a_row_checksum_depends_on_the_values_not_on_how_a_backend_returns_them():
    row = [7, datetime.datetime(2026, 1, 1, 12, 0, 0, 250, tzinfo=UTC), {"b": 1, "a": [1.5, None]}, "naïve", True]
    # PostgreSQL returns jsonb keys in its own order and may hand back times in another zone.
    plus_one = datetime.timezone(datetime.timedelta(hours=1))
    same = [7, datetime.datetime(2026, 1, 1, 13, 0, 0, 250, tzinfo=plus_one), {"a": [1.5, None], "b": 1}, "naïve", True]
    assert row_checksum(row) == row_checksum(same)
    for changed in (
        [8, *row[1:]],
        [row[0], row[1] + datetime.timedelta(microseconds=1), *row[2:]],
        [*row[:2], {"b": 1, "a": [1.5000000000000002, None]}, *row[3:]],
        [*row[:3], "naive", row[4]],
        [*row[:4], 1],  # a boolean is not the number 1
    ):
        assert row_checksum(changed) != row_checksum(row)


def _storages(tmp_path: Path) -> tuple[FileSystemStorage, FileSystemStorage]:
    return FileSystemStorage(location=tmp_path / "from"), FileSystemStorage(location=tmp_path / "to")


def test_the_media_copy_moves_every_file_once_each_verified_and_leaves_staging_leftovers(tmp_path):
    source, target = _storages(tmp_path)
    files = {"images/a.png": b"\x89PNG image", "deepzoom/1/0/0_0.jpg": b"tile", "checkpoints/m.pt": bytes(range(256))}
    for name, data in {**files, ".tmp-x1/half.png": b"half", "images/.tmp-9.png": b"partial"}.items():
        source.save(name, ContentFile(data))
    report = media_copy(source=source, target=target, referenced={"images/a.png", "masks/gone.png"})
    assert (report.files, report.copied, report.already_there, report.bytes) == (3, 3, 0, 10 + 4 + 256)
    assert report.missing_in_source == ["masks/gone.png"]
    assert {p.relative_to(tmp_path / "to").as_posix() for p in (tmp_path / "to").rglob("*") if p.is_file()} == set(
        files
    )
    assert all((tmp_path / "to" / name).read_bytes() == data for name, data in files.items())
    again = media_copy(source=source, target=target, referenced=set())
    assert (again.copied, again.already_there) == (0, 3)


def test_the_media_copy_overwrites_nothing_that_differs_in_the_target(tmp_path):
    source, target = _storages(tmp_path)
    source.save("images/a.png", ContentFile(b"the source's bytes"))
    target.save("images/a.png", ContentFile(b"someone else's"))
    with pytest.raises(ApplicationError, match=r"images/a\.png is already in the target storage with other contents"):
        media_copy(source=source, target=target, referenced=set())
    assert (tmp_path / "to" / "images" / "a.png").read_bytes() == b"someone else's"


def test_the_media_copy_fills_an_s3_bucket_the_new_installation_reads(tmp_path, moto_endpoint, monkeypatch):
    bucket = bucket_create(moto_endpoint)
    for name, value in bucket.environment().items():
        monkeypatch.setenv(name, value)
    source = FileSystemStorage(location=tmp_path / "from")
    files = {
        "images/a.png": b"\x89PNG image",
        "deepzoom/1/image_files/0/0_0.jpg": b"tile",
        "checkpoints/m.pt": b"w" * 5000,
    }
    for name, data in files.items():
        source.save(name, ContentFile(data))
    target = target_storage(f"s3://{bucket.bucket}")
    report = media_copy(source=source, target=target, referenced={"images/a.png"})
    assert (report.copied, report.missing_in_source) == (3, [])
    assert bucket.keys() == sorted(files) and all(bucket.read(name) == data for name, data in files.items())
    assert media_copy(source=source, target=target, referenced=set()).already_there == 3
    bucket.client.put_object(Bucket=bucket.bucket, Key="images/a.png", Body=b"changed in the bucket")
    with pytest.raises(ApplicationError, match="other contents"):
        media_copy(source=source, target=target, referenced=set())
    with pytest.raises(ApplicationError, match="names one bucket"):
        target_storage("s3://")


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return sorted(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def test_the_move_refuses_its_own_database_and_media_folder(db, media_root):
    own = worker_environment(media_root)["DATABASE_URL"]
    with pytest.raises(CommandError, match="this installation's own database"):
        call_command("move_installation", "--to", own)
    with pytest.raises(ApplicationError, match="own media folder"):
        target_storage(str(settings.MEDIA_ROOT))
    with pytest.raises(CommandError, match=r"not a database URL|names no database"):
        call_command("move_installation", "--to", "postgres://")


def _move(media_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """manage.py move_installation as an admin runs it, on the tests' database (committed rows: the target is
    a connection the test case does not own, so the command runs in its own process)."""
    return subprocess.run(
        [sys.executable, "manage.py", "move_installation", *args],
        cwd=ROOT,
        env=worker_environment(media_root),
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
def test_the_move_refuses_while_a_job_is_queued_or_running_and_writes_nothing(media_root, tmp_path):
    JobFactory(status=Job.Status.QUEUED)
    JobFactory(status=Job.Status.RUNNING)
    JobFactory(status=Job.Status.SUCCEEDED)
    refused = _move(media_root, "--to", f"sqlite:///{tmp_path / 'target.sqlite3'}")
    assert refused.returncode == 1 and "2 jobs are queued or running" in refused.stderr
    assert _tables(tmp_path / "target.sqlite3") == []


@pytest.mark.django_db(transaction=True)
def test_the_move_refuses_a_database_holding_something_else(media_root, tmp_path):
    path = tmp_path / "accounts.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    refused = _move(media_root, "--to", f"sqlite:///{path}")
    assert refused.returncode == 1 and "holds 1 tables of something else (invoices)" in refused.stderr
    assert _tables(path) == ["invoices"]


@pytest.mark.django_db(transaction=True)
def test_a_move_into_a_new_sqlite_database_keeps_ids_versions_and_history(media_root, tmp_path):
    expert = UserFactory(username="moving-expert", groups=["expert"])
    unit = UnitFactory()
    for version, notes in enumerate(["first", "second", "third"]):
        label = unit_annotation_save(unit=unit, expert=expert, version=version, recognizable="yes", notes=notes)
    path = tmp_path / "target.sqlite3"
    moved = _move(media_root, "--to", f"sqlite:///{path}", "--media-to", str(tmp_path / "media"))
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert "Installation moved; counts and checksums match." in moved.stdout and " NO" not in moved.stdout
    with sqlite3.connect(path) as connection:
        [(pk, version, notes, created_at)] = connection.execute(
            "SELECT id, version, notes, created_at FROM annotator_unitannotation"
        ).fetchall()
        assert (pk, version, notes) == (label.pk, 3, "third")
        assert (
            datetime.datetime.fromisoformat(created_at).replace(tzinfo=UTC) == label.created_at
        )  # not the move's time
        history = connection.execute(
            "SELECT version, after FROM annotator_annotationchange WHERE target_id = ? ORDER BY version", [label.pk]
        ).fetchall()
        assert [(version, json.loads(after)["notes"]) for version, after in history] == [
            (1, "first"),
            (2, "second"),
            (3, "third"),
        ]
        users = connection.execute("SELECT username FROM auth_user ORDER BY id").fetchall()
        assert ("moving-expert",) in users
    assert UnitAnnotation.objects.count() == 1 and AnnotationChange.objects.count() == 3  # the source as it was
