"""Settings come from the environment: the embedded default with nothing set, PostgreSQL + Redis when named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "db = settings.DATABASES['default'];"
    "print(json.dumps({'engine': db['ENGINE'], 'name': str(db['NAME']), 'host': db.get('HOST', ''),"
    " 'broker': settings.CELERY_BROKER_URL, 'results': settings.CELERY_RESULT_BACKEND,"
    " 'opts': getattr(settings, 'CELERY_BROKER_TRANSPORT_OPTIONS', {}), 'debug': settings.DEBUG,"
    " 'secret': settings.SECRET_KEY}))"
)


def settings_with(env: dict[str, str], var_dir: Path) -> dict:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG"}
    }
    clean.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DEEPMINER_VAR_DIR": str(var_dir), **env})
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_nothing_set_means_sqlite_filesystem_broker_and_a_generated_secret(tmp_path):
    first = settings_with({}, tmp_path)
    assert first["engine"] == "django.db.backends.sqlite3"
    assert first["name"] == str(tmp_path / "db.sqlite3")
    assert first["broker"] == "filesystem://"
    assert first["results"] == "django-db"
    for key in ("data_folder_in", "data_folder_out", "processed_folder"):
        assert Path(first["opts"][key]).is_dir() and str(tmp_path) in first["opts"][key]
    assert first["debug"] is False
    assert len(first["secret"]) >= 50 and (tmp_path / "secret_key").read_text() == first["secret"]
    assert settings_with({}, tmp_path)["secret"] == first["secret"]  # kept, not regenerated


def test_database_and_broker_urls_switch_to_postgres_and_redis(tmp_path):
    chosen = settings_with(
        {
            "DATABASE_URL": "postgres://postgres@db.example:5432/deepminer",
            "CELERY_BROKER_URL": "redis://cache:6379/0",
            "SECRET_KEY": "from-the-environment",
            "DEBUG": "true",
        },
        tmp_path,
    )
    assert chosen["engine"] == "django.db.backends.postgresql"
    assert (chosen["name"], chosen["host"]) == ("deepminer", "db.example")
    assert chosen["broker"] == "redis://cache:6379/0"
    assert chosen["opts"] == {}
    assert chosen["secret"] == "from-the-environment" and chosen["debug"] is True
    assert not (tmp_path / "secret_key").exists()
