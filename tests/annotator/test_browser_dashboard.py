"""A real headless Chromium signs in, opens the dashboard, starts a job and watches its progress bar reach 100%."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from annotator.demo import demo_dataset_create
from annotator.models import Job
from tests.factories import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "var" / "test-artifacts"))


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/")
    assert "/accounts/login/" in page.url  # everything requires login
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def test_dashboard_progress_bar_reaches_100(live_server, celery_worker_process, browser_page, admin_user, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Imported through the real import path, so thumbnails and finding outlines exist.
    demo_dataset_create(folder=tmp_path / "phantoms", n_images=40, seed=1, name="Browser demo")

    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    assert page.locator("table.datasets").get_by_text("Browser demo").is_visible()

    page.get_by_role("button", name="Extract patches").first.click()
    page.wait_for_url(f"{live_server.url}/")
    row = page.locator("tr[data-job-id]").first
    row.wait_for()
    bar = row.locator(".bar")
    # Live updates come from polling, not reloads: the bar's value climbs to 100 in place.
    page.wait_for_function(
        "() => document.querySelector('tr[data-job-id] .bar').getAttribute('aria-valuenow') === '100'",
        timeout=60_000,
    )
    assert bar.get_attribute("aria-valuenow") == "100"
    assert row.locator('[data-field="status"]').inner_text() == "Succeeded"
    assert row.locator('[data-field="percent"]').inner_text() == "100%"
    page.wait_for_timeout(600)  # let the bar's CSS transition finish before the picture
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert Job.objects.get().status == Job.Status.SUCCEEDED

    page.get_by_role("link", name="Browser demo").first.click()
    page.wait_for_selector(".thumbs figure img.overlay")
    assert page.locator(".thumbs figure").count() == 40
    # Thumbnails really load (naturalWidth > 0), through the login-protected media view.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.thumbs img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(ARTIFACTS / "dataset.png"), full_page=True)


def test_anonymous_visitors_are_sent_to_login(live_server, browser_page):
    browser_page.goto(f"{live_server.url}/datasets/1/")
    assert "/accounts/login/?next=/datasets/1/" in browser_page.url
    assert browser_page.locator("h1").inner_text() == "Sign in"
