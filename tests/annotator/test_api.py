"""The JSON API and the schema: what each role may do, and what the endpoints return."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from annotator.models import Job
from tests.factories import DatasetFactory, FindingFactory, ImageFactory, JobFactory, client_for

pytestmark = pytest.mark.django_db

READ_ENDPOINTS = [
    "/api/datasets/",
    "/api/datasets/{ds}/",
    "/api/images/",
    "/api/images/{img}/",
    "/api/jobs/",
    "/api/jobs/{job}/",
]


@pytest.fixture
def rows():
    dataset = DatasetFactory(name="api-ds")
    image = ImageFactory(dataset=dataset, split="test", label="malignant", patient_id="P9")
    mask = np.zeros((image.height, image.width), dtype=bool)
    mask[10:20, 10:30] = True
    FindingFactory(image=image, mask_array=mask, bbox=[10, 10, 30, 20])
    ImageFactory(dataset=dataset, split="train", label="normal")
    job = JobFactory(dataset=dataset)
    return {"ds": dataset.pk, "img": image.pk, "job": job.pk}


@pytest.mark.parametrize("endpoint", READ_ENDPOINTS)
def test_anonymous_gets_nothing(rows, endpoint):
    response = client_for(None).get(endpoint.format(**rows))
    assert response.status_code in (401, 403)
    assert "message" in response.json()


@pytest.mark.parametrize("endpoint", READ_ENDPOINTS)
@pytest.mark.parametrize("role", ["researcher_user", "expert_user", "admin_user"])
def test_every_role_reads(rows, endpoint, role, request):
    assert client_for(request.getfixturevalue(role)).get(endpoint.format(**rows)).status_code == 200


@pytest.mark.parametrize("role", ["researcher_user", "expert_user"])
def test_only_admins_start_or_cancel_jobs(rows, role, request):
    client = client_for(request.getfixturevalue(role))
    response = client.post("/api/jobs/create/", {"kind": "extract_patches", "dataset": rows["ds"]}, format="json")
    assert response.status_code == 403
    assert response.json()["message"] == "Only admins can do this."
    assert client.post(f"/api/jobs/{rows['job']}/cancel/").status_code == 403
    assert Job.objects.count() == 1


def test_admin_starts_and_cancels_a_job(rows, admin_user):
    client = client_for(admin_user)
    response = client.post("/api/jobs/create/", {"kind": "extract_patches", "dataset": rows["ds"]}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["kind"], body["dataset_name"], body["created_by"]) == (
        "queued",
        "extract_patches",
        "api-ds",
        admin_user.username,
    )
    cancelled = client.post(f"/api/jobs/{body['id']}/cancel/").json()
    assert cancelled["status"] == "cancelled"
    again = client.post(f"/api/jobs/{body['id']}/cancel/")
    assert again.status_code == 409 and "already finished" in again.json()["message"]


def test_bad_job_requests_get_clear_messages(rows, admin_user):
    client = client_for(admin_user)
    response = client.post("/api/jobs/create/", {"kind": "teleport"}, format="json")
    assert response.status_code == 400
    assert "kind" in response.json()["extra"]
    response = client.post("/api/jobs/create/", {"kind": "extract_patches", "dataset": 999999}, format="json")
    assert response.status_code == 400 and "dataset" in response.json()["extra"]


def test_dataset_detail_has_a_summary(rows, expert_user):
    body = client_for(expert_user).get(f"/api/datasets/{rows['ds']}/").json()
    assert (body["name"], body["image_count"], body["patient_count"]) == ("api-ds", 2, 2)
    assert body["summary"]["splits"] == {"test": {"images": 1, "patients": 1}, "train": {"images": 1, "patients": 1}}
    assert body["summary"]["findings"] == {"malignant": 1}


def test_images_filter_by_dataset_and_split_and_carry_findings(rows, expert_user):
    body = client_for(expert_user).get(f"/api/images/?dataset={rows['ds']}&split=test").json()
    assert body["count"] == 1
    image = body["results"][0]
    assert (image["patient_id"], image["label"]) == ("P9", "malignant")
    assert image["findings"][0]["area"] == 200 and image["findings"][0]["bbox"] == [10, 10, 30, 20]
    assert image["file_url"].startswith("/media/images/")


def test_openapi_schema_lists_every_endpoint(admin_user):
    response = client_for(admin_user).get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["info"]["title"] == "DeepMiner Studio API"
    assert {
        "/api/datasets/",
        "/api/datasets/{id}/",
        "/api/images/",
        "/api/images/{id}/",
        "/api/jobs/",
        "/api/jobs/create/",
        "/api/jobs/{id}/",
        "/api/jobs/{id}/cancel/",
    } <= set(schema["paths"])
