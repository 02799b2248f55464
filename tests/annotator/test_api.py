"""The JSON API and the schema: what each role may do, and what the endpoints return."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from annotator.models import Dataset, Job, Patch
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
    for label in ("malignant", "malignant", "normal"):
        Patch.objects.create(image=image, x0=0, y0=0, x1=16, y1=16, label=label, tissue_fraction=1.0)
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


def test_dataset_detail_has_a_summary(rows, researcher_user, expert_user):
    body = client_for(researcher_user).get(f"/api/datasets/{rows['ds']}/").json()
    assert (body["name"], body["image_count"], body["patient_count"]) == ("api-ds", 2, 2)
    splits = {"test": {"images": 1, "patients": 1}, "train": {"images": 1, "patients": 1}}
    assert body["summary"]["splits"] == splits
    assert body["summary"]["findings"] == {"malignant": 1}
    assert body["summary"]["labels"] == {"malignant": 1, "normal": 1}
    assert body["summary"]["patches"] == {"test": {"malignant": 2, "normal": 1}}
    # A blind expert gets the splits but no label, finding or per-label patch count (the truth rule).
    blind = client_for(expert_user).get(f"/api/datasets/{rows['ds']}/").json()["summary"]
    assert blind["splits"] == splits and blind["patches"] == {"test": {"all": 3}}
    assert (blind["labels"], blind["findings"]) == ({}, {})
    # Once an admin opens the mammogram dataset, its experts see the counts.
    Dataset.objects.filter(pk=rows["ds"]).update(annotation_blind=False)
    assert client_for(expert_user).get(f"/api/datasets/{rows['ds']}/").json()["summary"] == body["summary"]


def test_images_filter_by_dataset_and_split_and_carry_findings(rows, researcher_user):
    body = client_for(researcher_user).get(f"/api/images/?dataset={rows['ds']}&split=test").json()
    assert body["count"] == 1
    image = body["results"][0]
    assert (image["patient_id"], image["label"]) == ("P9", "malignant")
    assert image["findings"][0]["area"] == 200 and image["findings"][0]["bbox"] == [10, 10, 30, 20]
    assert image["file_url"].startswith("/media/images/")


def test_a_blind_expert_gets_mammograms_without_their_truth_until_the_dataset_is_opened(rows, expert_user):
    client = client_for(expert_user)
    image = client.get(f"/api/images/{rows['img']}/").json()
    assert (image["patient_id"], image["label"], image["metadata"], image["findings"]) == ("P9", "", {}, [])
    assert client.get(f"/api/images/?dataset={rows['ds']}&label=malignant").json()["count"] == 0  # no label filter
    Dataset.objects.filter(pk=rows["ds"]).update(annotation_blind=False)
    image = client.get(f"/api/images/{rows['img']}/").json()
    assert image["label"] == "malignant" and image["findings"][0]["pathology"] == "malignant"
    assert client.get(f"/api/images/?dataset={rows['ds']}&label=malignant").json()["count"] == 1


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


def test_a_patch_extractions_counts_per_label_are_truth_for_a_blind_expert(rows, expert_user, researcher_user):
    per_label = {"test": {"malignant": 2, "normal": 1}, "train": {"normal": 4}}
    Job.objects.filter(pk=rows["job"]).update(result={"patches": 7, "by_split": per_label})
    url = f"/api/jobs/{rows['job']}/"
    assert client_for(researcher_user).get(url).json()["result"]["by_split"] == per_label
    blind = client_for(expert_user).get(url).json()["result"]
    assert blind == {"patches": 7, "by_split": {"test": {"all": 3}, "train": {"all": 4}}}
    listed = client_for(expert_user).get("/api/jobs/").json()["results"]
    assert [job["result"] for job in listed if job["id"] == rows["job"]] == [blind]
