"""A real headless Chromium imports a dataset zip through the page, run by a real Celery worker: the zip with
one bad row comes back with that row listed (line and reason) and nothing imported; the fixed zip imports."""

from __future__ import annotations

import pytest

from annotator.models import Dataset, Image, Job
from tests.annotator.import_zips import dataset_folder, folder_zip
from tests.annotator.test_browser_dashboard import sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_bad_row_is_listed_then_the_fixed_zip_imports(
    live_server, celery_worker_process, browser_page, admin_user, tmp_path
):
    bad, good = tmp_path / "bad.zip", tmp_path / "cases.zip"
    bad.write_bytes(folder_zip(dataset_folder(tmp_path / "bad", bad_label_line=7)))
    good.write_bytes(folder_zip(dataset_folder(tmp_path / "cases"), top="cases"))
    page = browser_page
    sign_in(page, live_server.url, admin_user.username)

    page.get_by_role("link", name="Import a dataset").click()
    page.fill("#id_name", "Clinic 2026")
    page.set_input_files("#id_archive", str(bad))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#bad-rows", timeout=60_000)  # the page reloads itself when the worker is done
    assert page.locator("#bad-rows h2").inner_text() == "1 bad row: nothing was imported"
    assert page.locator('#bad-rows [data-field="line"]').all_inner_texts() == ["7"]
    assert page.locator('#bad-rows [data-field="reason"]').all_inner_texts() == [
        "unknown label 'malignent' (use normal / benign / malignant)"
    ]
    assert not Dataset.objects.exists() and not Image.objects.exists()

    page.get_by_role("link", name="import again").click()
    assert page.input_value("#id_name") == "Clinic 2026"
    page.set_input_files("#id_archive", str(good))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#imported", timeout=60_000)
    assert page.locator("#imported h2").inner_text() == "Imported Clinic 2026: 6 images"
    assert page.locator('#import-job [data-field="status"]').inner_text() == "Succeeded"
    dataset = Dataset.objects.get(name="Clinic 2026")
    assert dataset.images.count() == 6
    assert [job.status for job in Job.objects.order_by("pk")] == [Job.Status.FAILED, Job.Status.SUCCEEDED]

    page.locator("#imported h2 a").click()
    page.wait_for_selector(".thumbs figure img")
    assert page.locator(".thumbs figure").count() == 6
