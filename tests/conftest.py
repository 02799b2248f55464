"""Shared fixtures: media in a temp folder, users with roles, a real Celery worker process, headless Chromium."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from config.celery import worker_argv
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent

# pytest-timeout: a hung test fails with a traceback instead of stalling CI. pyproject's default (120 s,
# ~9x the slowest fast test on a loaded machine) is for tests without a worker or a browser; end-to-end tests
# (marked slow: a worker process, Chromium, the science check's training) get this much unless they say.
SLOW_TEST_TIMEOUT_S = 900


@pytest.hookimpl(trylast=True)  # after pytest-randomly has shuffled
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))
    # Tests that restart PostgreSQL or Redis run last, whatever the shuffle: a connection opened before the
    # restart in a context the test cannot reach (the browser tests' Playwright greenlet) would fail later.
    items.sort(key=lambda item: item.get_closest_marker("restarts_servers") is not None)


@pytest.fixture(autouse=True)
def media_root(tmp_path_factory: pytest.TempPathFactory, settings) -> Path:
    """Every test writes media into its own folder, never into var/media."""
    root = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture(autouse=True)
def _lexicon_for_transactional_tests(request: pytest.FixtureRequest) -> None:
    """Transactional tests flush every table afterwards, the migration-seeded BI-RADS lexicon and
    groups included; put them back so each such test sees the database a migrated install has."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        return
    request.getfixturevalue("transactional_db")
    from django.apps import apps

    importlib.import_module("annotator.migrations.0002_seed_lexicon_and_groups").seed(apps, None)


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Each test starts with an empty cache: DRF's throttle counters are keyed by user id, and the test
    database hands the same ids out again, so one test's requests would count against the next one's user."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """PBKDF2 costs ~0.3 s per login; tests check roles, not hash strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_user(db):
    return UserFactory(username="alice-admin", groups=["admin"], is_staff=True)


@pytest.fixture
def expert_user(db):
    return UserFactory(username="eve-expert", groups=["expert"])


@pytest.fixture
def researcher_user(db):
    return UserFactory(username="rita-researcher", groups=["researcher"])


def _database_url_for_subprocess() -> str:
    """The URL of the database the tests are using right now (the test database, not the dev one)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _purge_broker() -> None:
    """Drop messages a previous run left behind, so the new worker only sees this run's jobs."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for folder in settings.CELERY_BROKER_TRANSPORT_OPTIONS.values():
            if isinstance(folder, str):
                for item in Path(folder).glob("*"):
                    item.unlink(missing_ok=True)
    else:
        from config.celery import app

        app.control.purge()


def worker_environment(media_root: Path) -> dict[str, str]:
    """The environment of a worker process on the tests' database, broker and `media_root`."""
    return {
        **os.environ,
        "DATABASE_URL": _database_url_for_subprocess(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(media_root),
        "DEEPMINER_VAR_DIR": str(settings.VAR_DIR),
        "JOB_HEARTBEAT_TIMEOUT": str(settings.JOB_HEARTBEAT_TIMEOUT),
        "PYTHONUNBUFFERED": "1",
    }


class WorkerProcess:
    """A real `celery worker` subprocess on the tests' database, broker and media folder."""

    def __init__(self, media_root: Path, log_path: Path, name: str = "w1") -> None:
        env = worker_environment(media_root)
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            worker_argv(name),
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log()}")
            if "ready." in self.log():
                return
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as the OOM killer would: no chance to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def celery_worker_process(transactional_db, media_root: Path, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A real worker process. Needs committed data, hence the transactional database."""
    _purge_broker()
    worker = WorkerProcess(media_root, tmp_path / "worker.log")
    try:
        yield worker
    finally:
        worker.stop()
        print(f"--- worker log ---\n{worker.log()[-4000:]}")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    """A Playwright page in Debian's headless Chromium (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y --no-install-recommends chromium chromium-driver")
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test are still sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        finally:
            browser.close()
