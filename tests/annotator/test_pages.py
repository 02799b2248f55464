"""Pages through Django's test client: login required, roles, media served only to signed-in users."""

from __future__ import annotations

import pytest

from annotator.models import Job
from tests.factories import PASSWORD, DatasetFactory, ImageFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/", "/datasets/1/", "/media/images/x.png"])
def test_everything_requires_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_then_dashboard_lists_datasets(client, expert_user):
    DatasetFactory(name="Screening 2026")
    response = client.post("/accounts/login/", {"username": expert_user.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/").content.decode()
    assert "Screening 2026" in page
    assert "Extract patches" not in page  # experts do not start jobs


def test_dataset_page_and_its_media(client, admin_user):
    image = ImageFactory(dataset=DatasetFactory(name="Cohort A"), label="benign")
    client.force_login(admin_user)
    page = client.get(f"/datasets/{image.dataset.pk}/").content.decode()
    assert "Cohort A" in page and image.patient_id in page
    media = client.get(f"/media/{image.file.name}")
    assert media.status_code == 200 and media["Content-Type"] == "image/png"
    assert client.get("/media/../config/settings.py").status_code == 404


def test_only_admins_start_jobs_from_pages(client, expert_user, admin_user, django_capture_on_commit_callbacks):
    dataset = DatasetFactory()
    client.force_login(expert_user)
    assert client.post(f"/datasets/{dataset.pk}/extract-patches/").status_code == 403
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/datasets/{dataset.pk}/extract-patches/")
    assert response.status_code == 302
    assert Job.objects.get().kind == Job.Kind.EXTRACT_PATCHES
