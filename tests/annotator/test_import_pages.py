"""The browser import's pages (issue 13 item 4): the form (zip or server folder), its refusals as clear
page errors with nothing kept, and an import's page with its bad rows, then the imported dataset."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotator.models import Dataset, Job
from annotator.services.job_runs import job_run
from tests.annotator.import_zips import dataset_folder, folder_zip, zip_bytes
from tests.factories import client_for

pytestmark = pytest.mark.django_db

FORM = {"name": "Browser import", "kind": "mammogram", "layout": "manifest", "seed": 0}


@pytest.fixture(autouse=True)
def staging(settings, tmp_path: Path) -> Path:
    settings.IMPORT_STAGING_DIR = tmp_path / "staging"
    return settings.IMPORT_STAGING_DIR


def staged(staging: Path) -> list[Path]:
    return [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []


def post_zip(client, data: bytes, name: str = "cases.zip", **fields):
    archive = SimpleUploadedFile(name, data, content_type="application/zip")
    return client.post("/datasets/import/", {**FORM, "source": "upload", **fields, "archive": archive})


def test_a_zip_with_a_bad_row_lists_it_and_a_fixed_zip_imports(admin_user, tmp_path, staging):
    client = client_for(admin_user)
    page = client.get("/datasets/import/").content.decode()
    assert 'name="archive"' in page and "Importing a server folder is off" in page

    response = post_zip(client, folder_zip(dataset_folder(tmp_path / "bad", bad_label_line=3)))
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/datasets/import/{job.pk}/"
    assert job.kind == Job.Kind.IMPORT and job.created_by == admin_user and job.status == Job.Status.QUEUED
    assert 'data-status="queued"' in client.get(response["Location"]).content.decode()

    job_run(job_id=job.pk)
    page = client.get(response["Location"]).content.decode()
    assert "1 bad row: nothing was imported" in page
    assert '<td data-field="line">3</td>' in page
    assert "unknown label &#x27;malignent&#x27; (use normal / benign / malignant)" in page
    assert f'href="/datasets/import/?retry={job.pk}"' in page
    retry = client.get(f"/datasets/import/?retry={job.pk}").content.decode()
    assert 'value="Browser import"' in retry  # the settings of the failed import, to upload the fixed zip with

    response = post_zip(client, folder_zip(dataset_folder(tmp_path / "good")), name="good.zip")
    fixed = Job.objects.exclude(pk=job.pk).get()
    job_run(job_id=fixed.pk)
    page = client.get(response["Location"]).content.decode()
    dataset = Dataset.objects.get(name="Browser import")
    assert f'<a href="/datasets/{dataset.pk}/">Browser import</a>: 6 images' in page
    assert "Patients per split: train 3, test 0, holdout 0\n    · images per label: malignant 2, normal 4" in page
    assert staged(staging) == []


def test_an_oversized_zip_is_dropped_while_uploading_and_the_form_says_so(settings, admin_user, staging):
    settings.IMPORT_UPLOAD_MAX_BYTES = 1000
    response = post_zip(client_for(admin_user), bytes(range(256)) * 20)
    assert response.status_code == 413
    page = response.content.decode()
    assert "the zip is over 1,000 bytes, the largest upload this server accepts" in page
    assert 'value="Browser import"' in page  # the fields sent with it are kept
    assert not Job.objects.exists() and staged(staging) == []


def test_a_zip_bomb_and_a_traversing_member_are_page_errors(admin_user, staging):
    client = client_for(admin_user)
    response = post_zip(client, zip_bytes(("img/zeros.png", bytes(8 << 20))))
    assert response.status_code == 400 and "it looks like a zip bomb" in response.content.decode()
    response = post_zip(client, zip_bytes(("../x.png", b"x")))
    assert response.status_code == 400
    assert "zip member &#x27;../x.png&#x27; leads out of the archive with &#x27;..&#x27;" in response.content.decode()
    assert not Job.objects.exists() and staged(staging) == []


def test_a_folder_under_the_root_is_imported_and_one_outside_is_refused(settings, admin_user, tmp_path):
    root = tmp_path / "root"
    dataset_folder(root / "cases")
    settings.IMPORT_ROOTS = [str(root)]
    client = client_for(admin_user)
    (root / "escape").symlink_to(tmp_path)  # a link out of the root is not suggested
    (root / ".hidden").mkdir()
    (root / "notes.txt").write_text("not a folder")
    page = client.get("/datasets/import/").content.decode()
    assert f"Server folders: under {root}." in page
    assert f'<datalist id="import-folders"><option value="{root / "cases"}"></datalist>' in page
    assert 'list="import-folders"' in page
    response = client.post("/datasets/import/", {**FORM, "source": "folder", "folder": "../cases"})
    assert response.status_code == 400 and "may not contain &#x27;..&#x27;" in response.content.decode()
    response = client.post("/datasets/import/", {**FORM, "source": "folder", "folder": "cases"})
    job = Job.objects.get()
    assert job.params == {**FORM, "folder": "cases"}
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    assert "6 images" in client.get(response["Location"]).content.decode()


def test_the_form_asks_for_what_its_source_needs(admin_user):
    client = client_for(admin_user)
    response = client.post("/datasets/import/", {**FORM, "source": "upload"})
    assert response.status_code == 400 and "choose a zip file to upload" in response.content.decode()
    response = client.post("/datasets/import/", {**FORM, "source": "folder"})
    assert "name a folder under the import root" in response.content.decode()
    response = post_zip(client, io.BytesIO(b"not a zip").getvalue())
    assert "cases.zip is not a readable zip file" in response.content.decode()


def test_the_new_job_form_offers_no_import(admin_user):
    page = client_for(admin_user).get("/jobs/new/").content.decode()
    assert 'value="train"' in page and 'value="import_dataset"' not in page


def test_an_import_page_is_only_for_import_jobs(admin_user):
    from tests.factories import JobFactory

    assert client_for(admin_user).get(f"/datasets/import/{JobFactory().pk}/").status_code == 404
