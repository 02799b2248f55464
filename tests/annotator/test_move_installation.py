"""From the embedded default to PostgreSQL without losing a label (issue 13 item 7): a demo-sized SQLite
installation with a row in every table is moved by ``manage.py move_installation`` to a PostgreSQL database
this test creates (and drops) on the CI server, and its media into an S3 bucket (a real moto S3 server); both installations are
then read by the app itself, each in its own process, and compared.

The PostgreSQL server is the tests' own when they run on one, else MOVE_TEST_POSTGRES_URL's (default
postgres://postgres@127.0.0.1:5432, which CI runs in both passes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.conf import settings

from tests.s3_media import bucket_create, moto_endpoint_fixture  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
TARGET_DB = "deepminer_move_test"

# Tables added after this test was written; the build step does not fill them yet.
NEWER_TABLES = {"annotator.ReaderStudy", "annotator.StudyAssignment", "annotator.StudyItem", "annotator.StudyRating"}

pytestmark = pytest.mark.slow  # five Django processes, a demo import and explanations: about a minute


def _server_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        auth = f"{db.get('USER') or 'postgres'}{':' + db['PASSWORD'] if db.get('PASSWORD') else ''}@"
        return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return os.environ.get("MOVE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def _admin(sql: str) -> None:
    try:
        connection = psycopg2.connect(f"{_server_url()}/postgres")
    except psycopg2.OperationalError as exc:
        pytest.fail(f"the move test needs a PostgreSQL server at {_server_url()} (MOVE_TEST_POSTGRES_URL): {exc}")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = os.environ.get("MOVE_TEST_DATABASE", TARGET_DB)
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{_server_url()}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _environment(tmp_path: Path, database_url: str, media: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(media),
        "DEEPMINER_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }


def _run(args: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, check=False
    )


def _step(environment: dict[str, str], *args: str) -> Any:
    completed = _run(["-m", "tests.installation_steps", *args], environment)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _table(output: str) -> dict[str, tuple[int, int, str]]:
    """The command's verification table: table -> (source rows, target rows, match)."""
    lines = output[output.index("table ") :].splitlines()[1:]
    rows = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 5:
            break
        rows[parts[0]] = (int(parts[1]), int(parts[2]), parts[4])
    return rows


def test_a_sqlite_installation_moves_to_postgresql_and_its_media_to_an_s3_bucket(tmp_path, postgres_url, moto_endpoint):
    bucket = bucket_create(moto_endpoint)
    source = {
        **_environment(tmp_path, f"sqlite:///{tmp_path / 'source.sqlite3'}", tmp_path / "media-source"),
        **{name: value for name, value in bucket.environment().items() if name != "DEEPMINER_S3_BUCKET"},
    }
    # The new installation: PostgreSQL, media in the bucket (streamed by the media view, to read them back).
    target = {
        **_environment(tmp_path, postgres_url, tmp_path / "media-unused"),
        **bucket.environment(),
        "DEEPMINER_MEDIA_REDIRECT": "false",
    }
    facts = _step(source, "build", str(tmp_path / "demo"))
    # Every table of every app holds rows (the reader study's, newer than this test, may still be empty).
    assert set(facts["empty"]) <= NEWER_TABLES, facts["empty"]
    before = _step(source, "inspect", str(facts["label"]))

    move = ["manage.py", "move_installation", "--to", postgres_url, "--media-to", f"s3://{bucket.bucket}"]
    moved = _run(move, source)
    assert moved.returncode == 0, moved.stdout[-3000:] + moved.stderr[-3000:]
    table = _table(moved.stdout)
    assert table["annotator_unitannotation"] == (2, 2, "yes")
    assert table["annotator_annotationchange"] == (before["counts"]["annotator.AnnotationChange"],) * 2 + ("yes",)
    assert table["auth_permission"][2] == "yes" and table["django_content_type"][2] == "yes"
    assert all(match == "yes" for *_, match in table.values()) and "django_session" not in table
    files = sorted(
        p.relative_to(tmp_path / "media-source").as_posix() for p in (tmp_path / "media-source").rglob("*.*")
    )
    assert f"Media files: {len(files)} (" in moved.stdout and f"{len(files)} copied" in moved.stdout
    assert bucket.keys() == files

    after = _step(target, "inspect", str(facts["label"]))
    assert after["counts"] == before["counts"] and before["counts"]["annotator.TopActivation"] == 16
    assert (
        after["label"]
        == before["label"]
        == {
            **before["label"],
            "version": 3,
            "confidence": 4,
            "notes": "spiculated? naïve — ünïcode ✓",
        }
    )
    assert after["history"] == before["history"] and [change[0] for change in after["history"]] == [1, 2, 3]
    assert after["history"][2][2] == {
        "recognizable": "yes",
        "phenomena": before["label"]["phenomena"],
        "confidence": None,
        "notes": "",
    }
    assert after["consensus"] == before["consensus"] == [[2, "mass_margin.spiculated", "spiculated margin"]]
    assert after["fractures"] == before["fractures"] and after["fractures"][0][0] == 2
    # Content types matched by natural key: another id on the target, the same permissions and admin log.
    assert after["dataset_content_type_id"] != before["dataset_content_type_id"]
    assert after["expert_permissions"] == before["expert_permissions"] == ["annotator.change_dataset"]
    assert after["admin_log"] == before["admin_log"] and after["admin_log"][:2] == ["annotator", "dataset"]
    assert after["files"] == before["files"] and len(after["files"]) > 40
    # The factory's hip classifier names a checkpoint never written: reported, not a failure of the move.
    assert [name for name, checksum in before["files"].items() if checksum is None] == ["checkpoints/missing.pt"]
    assert "1 files named by rows were already missing here: checkpoints/missing.pt" in moved.stderr
    assert after["sessions"] == 0 and before["sessions"] == 1

    again = _run(move, source)  # a finished move re-run: verified, nothing copied
    assert again.returncode == 0 and "already moved" in again.stdout and f"{len(files)} already there" in again.stdout

    used = _step(target, "use", json.dumps(facts))
    assert used["new_label_largest"] and used["version"] == 4 and used["history_versions"] == [1, 2, 3, 4]
    assert used["media_status"] == 200 and used["media_sha256"] == before["files"][used["media_name"]]

    refused = _run(move, source)  # the target has moved on: not this installation's copy any more
    assert refused.returncode != 0 and "not this installation's" in refused.stderr
    assert _table(refused.stdout)["annotator_unitannotation"] == (2, 3, "NO")


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"), reason="only SQLite stores what PostgreSQL refuses"
)
@pytest.mark.django_db(transaction=True)
def test_a_row_postgresql_cannot_hold_is_a_clear_error_and_the_target_keeps_nothing(media_root, postgres_url):
    from annotator.services.annotations import unit_annotation_save
    from tests.conftest import worker_environment
    from tests.factories import UnitFactory, UserFactory

    expert = UserFactory(username="nul-expert", groups=["expert"])
    unit_annotation_save(unit=UnitFactory(), expert=expert, version=0, recognizable="yes", notes="pasted \x00 binary")
    refused = _run(["manage.py", "move_installation", "--to", postgres_url], worker_environment(media_root))
    assert refused.returncode == 1 and "copying annotator_unitannotation failed" in refused.stderr, refused.stderr
    connection = psycopg2.connect(postgres_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT (SELECT count(*) FROM auth_user) + (SELECT count(*) FROM annotator_unit)")
            assert cursor.fetchone() == (0,)  # migrated, and not a row of the failed copy
            cursor.execute("SELECT count(*) FROM annotator_concept")
            assert cursor.fetchone()[0] > 40  # the target's own migrate seed, as before the move
    finally:
        connection.close()
