"""A real headless Chromium watches a training job run in a real worker on its job page: the loss and
validation-AUC curves gain epochs while the job is still running (polling, no reload), and the page shows
where it ran and what it logged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from annotator.models import Job
from annotator.services.jobs import job_create
from tests.annotator.test_browser_dashboard import sign_in
from tests.annotator.test_training_job import split_dataset  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "var" / "test-artifacts"))
EPOCHS = 8

# Before the page's own scripts: every redraw of the loss chart with the status shown beside it then.
RECORD_DRAWS = """
window.__drawn = [];
document.addEventListener("DOMContentLoaded", () => {
  const loss = document.getElementById("curve-loss");
  const badge = document.querySelector('#job [data-field="status"]');
  new MutationObserver(() => window.__drawn.push([Number(loss.dataset.epochs), badge.textContent]))
    .observe(loss, { attributes: true, attributeFilter: ["data-epochs"] });
});
"""


def test_the_curves_grow_while_the_training_job_runs(
    live_server,
    celery_worker_process,
    browser_page,
    admin_user,
    split_dataset,  # noqa: F811
):
    # Big inputs for tiny patches: each epoch takes long enough for the page's polls to see it.
    params = {"epochs": EPOCHS, "batch_size": 8, "patch_size": 128, "validation_fraction": 0.2, "seed": 1}
    job = job_create(kind=Job.Kind.TRAIN, dataset=split_dataset, params=params, created_by=admin_user)
    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    page.add_init_script(RECORD_DRAWS)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.wait_for_function("() => Number(document.getElementById('curve-loss').dataset.epochs) >= 3", timeout=300_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job.png"), full_page=True)
    page.wait_for_function(
        "() => document.querySelector('#job [data-field=\"status\"]').textContent === 'Succeeded'", timeout=300_000
    )

    drawn = page.evaluate("window.__drawn")
    while_running = sorted({epochs for epochs, status in drawn if status == "Running" and epochs >= 1})
    assert len(while_running) >= 2, drawn  # drawn, then drawn again with more epochs, before the job ended
    assert drawn[-1][0] == EPOCHS
    assert page.locator("#curve-loss polyline").count() == 2  # train and validation loss
    assert page.locator("#curve-auc polyline").count() == 3  # one line per class
    assert page.locator("#curve-loss circle").count() == 2 * EPOCHS
    assert page.locator('#job [data-field="device"]').inner_text() == "cpu"
    assert page.locator('#job [data-field="worker"]').inner_text() == Job.objects.get(pk=job.pk).worker
    assert "succeeded: Done" in page.locator('#job [data-field="log"]').inner_text()
    assert page.locator('#job [data-field="resume"]').is_hidden()
