"""Headless Chromium under the real Content-Security-Policy: the key pages (dashboard, dataset, new job, model,
unit list, survey, fracture labelling, the API docs) load, run their scripts, and report zero CSP violations,
neither as a securitypolicyviolation event nor in the console log."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from annotator.models import Dataset, Job
from tests.annotator.test_browser_dashboard import sign_in
from tests.factories import DatasetFactory, ImageFactory, JobFactory, mined_unit

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before any page script, so it sees violations from the first byte on.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


def test_key_pages_load_with_zero_csp_violations(live_server, browser_page, admin_user):
    unit = mined_unit(n_top=16, n_images=2)
    model = unit.model
    JobFactory(dataset=model.dataset, kind=Job.Kind.EXTRACT_PATCHES, status=Job.Status.RUNNING, progress=0.4)
    hips = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    hip = ImageFactory(dataset=hips, label="fracture")

    page = browser_page
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.add_init_script(RECORD_VIOLATIONS)
    sign_in(page, live_server.url, admin_user.username)

    # Each page with an element that only its own (static) script or the CSSOM sizing makes true.
    checks = {
        "/": "() => document.querySelector('tr[data-job-id] .bar .fill').style.width === '40%'",
        f"/datasets/{model.dataset.pk}/": "() => document.querySelectorAll('.thumbs figure').length > 0",
        "/jobs/new/": "() => document.querySelector('[data-for=shards]').hidden === true",
        f"/models/{model.pk}/": "() => document.querySelector('table.confusion td').style.backgroundColor !== ''",
        f"/models/{model.pk}/units/": "() => document.querySelectorAll('#unit-table tbody tr').length === 1",
        f"/units/{unit.pk}/": "() => [...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth)",
        f"/datasets/{hips.pk}/fractures/{hip.pk}/": "() => document.getElementById('fx-sentence').textContent !== ''",
        "/api/docs/": "() => document.querySelectorAll('.opblock').length > 10",
    }
    for path, ready in checks.items():
        page.goto(f"{live_server.url}{path}")
        try:
            page.wait_for_function(ready, timeout=20_000)
        except PlaywrightTimeoutError:
            pytest.fail(f"{path} never got ready ({ready}); console: {console}")
        page.wait_for_timeout(200)  # late violations (images, fetches) still land before the count
        violations = page.evaluate("window.__cspViolations")
        assert violations == [], (path, violations)
    # Chromium logs every blocked inline script, style, handler or source as an error naming the policy.
    assert [line for line in console if "Content Security Policy" in line] == [], console
    # The survey's keyboard-driven form still works under the policy (its script is a file of its own).
    page.goto(f"{live_server.url}/units/{unit.pk}/")
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()  # waits for the key to be handled
