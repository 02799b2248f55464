"""The deployment files agree with the settings: compose parses, runs the four services, and every
variable it sets is one the settings read (and the ones the settings need are set)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def test_compose_runs_web_worker_postgres_and_redis(compose):
    assert set(compose["services"]) == {"web", "worker", "postgres", "redis"}
    assert "gunicorn config.wsgi" in compose["services"]["web"]["command"]
    assert compose["services"]["worker"]["command"].startswith("celery -A config worker")


@pytest.mark.parametrize("service", ["web", "worker"])
def test_app_services_set_only_variables_the_settings_read(compose, service):
    environment = compose["services"][service]["environment"]
    assert set(environment) <= set(settings.ENV_VARS), set(environment) - set(settings.ENV_VARS)
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"} <= set(environment)
    assert environment["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in environment["DATABASE_URL"]
    assert environment["CELERY_BROKER_URL"].startswith("redis://redis:6379")


def test_every_variable_the_settings_module_reads_is_documented():
    """ENV_VARS is the list the compose test relies on: it must name every env.* call in settings."""
    import re

    source = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', source))
    assert read, "no env reads found"
    assert read <= set(settings.ENV_VARS), read - set(settings.ENV_VARS)


def test_dockerfile_copies_every_runtime_package():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for folder in ("config", "annotator", "mining", "templates", "static"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
