"""The deployment files agree with the settings: compose parses, runs the four services, and every
variable it sets is one the settings read (and the ones the settings need are set)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def test_compose_runs_web_worker_postgres_and_redis(compose):
    assert set(compose["services"]) == {"web", "worker", "worker-gpu", "postgres", "redis"}
    assert "gunicorn config.wsgi" in compose["services"]["web"]["command"]
    assert compose["services"]["worker"]["command"].startswith("celery -A config worker")


def test_the_gpu_worker_serves_the_gpu_queue_on_a_gpu_only_when_asked(compose):
    gpu = compose["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["command"].endswith("--queues=gpu")
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["environment"]["DEEPMINER_DEVICE"] == gpu["environment"]["DEEPMINER_PRECISION"] == "auto"
    assert compose["services"]["worker"]["command"].endswith("--queues=celery")
    assert "CELERY_GPU_QUEUE" in compose["services"]["web"]["environment"]


@pytest.mark.parametrize("service", ["web", "worker", "worker-gpu"])
def test_app_services_set_only_variables_the_settings_read(compose, service):
    environment = compose["services"][service]["environment"]
    assert set(environment) <= set(settings.ENV_VARS), set(environment) - set(settings.ENV_VARS)
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"} <= set(environment)
    assert environment["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in environment["DATABASE_URL"]
    assert environment["CELERY_BROKER_URL"].startswith("redis://redis:6379")
    # Web and every worker reach the same bucket when one is set (unset: the shared media volume).
    bucket = {"DEEPMINER_S3_BUCKET", "AWS_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert bucket <= set(environment), bucket - set(environment)
    assert environment["DEEPMINER_S3_BUCKET"] == "${DEEPMINER_S3_BUCKET:-}"


def test_every_variable_the_settings_module_reads_is_documented():
    """ENV_VARS is the list the compose test relies on: it must name every env.* call in settings."""
    source = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', source))
    assert read, "no env reads found"
    assert read <= set(settings.ENV_VARS), read - set(settings.ENV_VARS)


def test_dockerfile_copies_every_runtime_package():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for folder in ("config", "annotator", "mining", "templates", "static"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile


def _compose_value(value: str) -> str:
    """A compose value as it runs with nothing else set: ${NAME:-default} is the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def _check_deploy(env: dict[str, str], tmp_path: Path) -> str:
    # Only what a deployment sets: not the settings' variables of this run, nor the browser tests' async switch.
    clean = {k: v for k, v in os.environ.items() if k not in settings.ENV_VARS and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean.update(env)
    clean.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEEPMINER_VAR_DIR": str(tmp_path / "var"),
            "MEDIA_ROOT": str(tmp_path / "media"),
        }
    )
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    done = subprocess.run(command, cwd=ROOT, env=clean, capture_output=True, text=True)
    return f"rc={done.returncode}\n{done.stdout}{done.stderr}"


def test_check_deploy_is_clean_with_the_compose_settings(compose, tmp_path):
    """The deployment's own environment (HTTPS on, DEBUG off) passes Django's deployment checklist."""
    environment = {name: _compose_value(value) for name, value in compose["services"]["web"]["environment"].items()}
    assert environment["HTTPS"] == "true" and environment["DEBUG"] == "false"
    report = _check_deploy(environment, tmp_path)
    assert report.startswith("rc=0") and "no issues" in report, report


def test_check_deploy_names_the_https_settings_when_https_is_off(tmp_path):
    report = _check_deploy({"HTTPS": "false", "ALLOWED_HOSTS": "deepminer.example"}, tmp_path)
    assert not report.startswith("rc=0")
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in report, report
