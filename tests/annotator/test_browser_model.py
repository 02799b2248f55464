"""A real headless Chromium opens a mined model's page: which split each figure comes from, DeepMiner's
coverage and pAUC, Network Dissection IoU over the whole split, the causal check, and every class's list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from annotator.demo import demo_dataset_create
from annotator.models import Job, TrainedModel, Unit
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from tests.annotator.test_browser_dashboard import sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "var" / "test-artifacts"))


def test_model_page_shows_splits_coverage_iou_and_the_causal_check(live_server, browser_page, admin_user, tmp_path):
    dataset, _ = demo_dataset_create(folder=tmp_path / "phantoms", n_images=30, seed=2, name="Model page")
    assert job_run(job_id=job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset).pk) == Job.Status.SUCCEEDED
    train = job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"epochs": 1, "patch_size": 64})
    assert job_run(job_id=train.pk) == Job.Status.SUCCEEDED
    trained = TrainedModel.objects.get(job=train)
    mine = job_create(kind=Job.Kind.MINE, dataset=dataset, params={"model": trained.pk, "top_n": 8, "per_class": 5})
    assert job_run(job_id=mine.pk) == Job.Status.SUCCEEDED
    trained.refresh_from_db()

    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    page.goto(f"{live_server.url}/models/{trained.pk}/")
    page.wait_for_selector("table.causal")
    causal = trained.mining["causal"]["per_class"]
    rows = page.locator("table.causal tbody tr")
    assert rows.count() == len(causal) > 0
    measured = [(index, entry) for index, entry in enumerate(causal.values()) if entry["selected_drop"] is not None]
    assert measured, causal  # some class has test patches
    index, entry = measured[0]
    assert f"{entry['selected_drop']:.3f}" in rows.nth(index).inner_text()
    assert page.locator("table.coverage th[title^='DeepMiner']").is_visible()
    assert "Mined on the test split" in page.locator("section.card", has_text="Units").inner_text()
    # A unit in two classes' lists is listed under both, with its rank in each.
    listed = sum(len(unit.selections) for unit in Unit.objects.filter(model=trained))
    assert page.locator("table.units tbody tr:not(.empty)").count() == listed
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "model.png"), full_page=True)
