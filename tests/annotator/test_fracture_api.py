"""The fracture API: the permission matrix on every endpoint, the 409 body, validation errors, the
queue, history, the streamed CSV/JSON exports and the OpenAPI schema."""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml

from annotator.models import AnnotationChange, Dataset, FractureDescriptor, Image
from annotator.services.fractures import fracture_descriptor_save
from mining.sentences import NO_FRACTURE_SENTENCE
from tests.annotator.test_fracture_services import SUBCAPITAL, SUBCAPITAL_SENTENCE
from tests.factories import DatasetFactory, ImageFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(expert_user):
    dataset = DatasetFactory(name="hips", kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    labelled = ImageFactory(dataset=dataset, source_name="a.png", patient_id="P1", metadata={"report": "truth"})
    free = ImageFactory(dataset=dataset, source_name="b.png", patient_id="P2")
    label = fracture_descriptor_save(image=labelled, expert=expert_user, version=0, **SUBCAPITAL)
    return {"ds": dataset.pk, "img": labelled.pk, "free": free.pk, "label": label.pk}


# Every fracture endpoint and the status each role gets. Researchers read and export only.
ENDPOINTS = {
    "list": ("get", "/api/images/{img}/fractures/"),
    "detail": ("get", "/api/fractures/{label}/"),
    "save": ("put", "/api/images/{free}/fractures/save/"),
    "history": ("get", "/api/images/{img}/fractures/history/"),
    "queue": ("get", "/api/datasets/{ds}/fractures/queue/"),
    "export_csv": ("get", "/api/datasets/{ds}/fractures/export.csv"),
    "export_json": ("get", "/api/datasets/{ds}/fractures/export.json"),
}
MATRIX = {
    #              list detail save history queue csv  json
    "anonymous": (403, 403, 403, 403, 403, 403, 403),
    "researcher": (200, 200, 403, 200, 200, 200, 200),
    "expert": (200, 200, 200, 200, 200, 200, 200),
    "admin": (200, 200, 200, 200, 200, 200, 200),
}
USERS = {"anonymous": None, "researcher": "researcher_user", "expert": "expert_user", "admin": "admin_user"}


@pytest.mark.parametrize("role", list(MATRIX))
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_permission_matrix(rows, request, role, endpoint):
    user = request.getfixturevalue(USERS[role]) if USERS[role] else None
    method, url = ENDPOINTS[endpoint]
    body = {"version": 0, "fracture": False} if method == "put" else None
    response = getattr(client_for(user), method)(url.format(**rows), body, format="json")
    expected = MATRIX[role][list(ENDPOINTS).index(endpoint)]
    assert response.status_code == expected, (role, endpoint, getattr(response, "content", b"")[:300])
    if expected == 403:
        assert "message" in response.json()
    saved = FractureDescriptor.objects.filter(image_id=rows["free"]).exists()
    assert saved == (endpoint == "save" and expected == 200)


def test_anonymous_save_via_session_is_refused_too(rows, client):
    # Django's test client (session, no login) takes the same path as a browser without a session.
    response = client.put(
        f"/api/images/{rows['free']}/fractures/save/",
        {"version": 0, "fracture": False},
        content_type="application/json",
    )
    assert response.status_code == 403


def test_save_returns_the_label_and_a_stale_version_gets_409_with_the_current_values(rows, expert_user):
    tab_a, tab_b = client_for(expert_user), client_for(expert_user)
    url = f"/api/images/{rows['free']}/fractures/save/"
    first = tab_a.put(url, {"version": 0, **SUBCAPITAL}, format="json")
    assert first.status_code == 200
    body = first.json()
    assert (body["version"], body["sentence"], body["expert"], body["image"]) == (
        1,
        SUBCAPITAL_SENTENCE,
        "eve-expert",
        rows["free"],
    )

    conflict = tab_b.put(url, {"version": 0, "fracture": False}, format="json")
    assert conflict.status_code == 409
    answer = conflict.json()
    assert set(answer) == {"message", "extra"}
    assert answer["message"].startswith("This fracture label was changed in another tab or window since you opened it")
    assert "Your changes were not saved" in answer["message"]
    assert answer["extra"] == {"version": 1, "current": {**SUBCAPITAL, "sentence": SUBCAPITAL_SENTENCE}}
    assert FractureDescriptor.objects.get(image_id=rows["free"]).sentence == SUBCAPITAL_SENTENCE

    second = tab_b.put(url, {"version": 1, "fracture": False}, format="json")
    assert second.status_code == 200 and second.json()["version"] == 2
    assert second.json()["sentence"] == NO_FRACTURE_SENTENCE


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"version": 0, "fracture": True, "location": "subcapital"}, 400, "A fracture needs a displacement."),
        ({"version": 0, "fracture": True, "displacement": "a bit", "location": "subcapital"}, 400, "Invalid input."),
        ({"fracture": False}, 400, "Invalid input."),
        ({"version": 0}, 400, "Invalid input."),
    ],
)
def test_bad_bodies_get_400_with_a_message(rows, expert_user, body, status, message):
    response = client_for(expert_user).put(f"/api/images/{rows['free']}/fractures/save/", body, format="json")
    assert response.status_code == status
    assert response.json()["message"] == message
    assert not FractureDescriptor.objects.filter(image_id=rows["free"]).exists()


def test_saving_on_a_mammogram_is_refused(expert_user):
    image = ImageFactory()
    response = client_for(expert_user).put(
        f"/api/images/{image.pk}/fractures/save/", {"version": 0, "fracture": False}, format="json"
    )
    assert response.status_code == 400
    assert "not in a hip-fracture dataset" in response.json()["message"]


def test_queue_and_export_are_404_for_other_dataset_kinds(admin_user):
    dataset = DatasetFactory()
    client = client_for(admin_user)
    for url in ("queue/", "export.csv", "export.json"):
        assert client.get(f"/api/datasets/{dataset.pk}/fractures/{url}").status_code == 404


def test_list_shows_mine_and_hides_others_while_blind(rows, expert_user, admin_user):
    other = UserFactory(username="olga-expert", groups=["expert"])
    fracture_descriptor_save(image=FractureDescriptor.objects.get().image, expert=other, version=0, fracture=False)
    olga = client_for(other).get(f"/api/images/{rows['img']}/fractures/").json()
    assert olga["blind"] is True
    assert olga["mine"]["sentence"] == NO_FRACTURE_SENTENCE
    assert [label["expert"] for label in olga["labels"]] == ["olga-expert"]
    # eve's label is hidden from olga: answered as missing, not as forbidden.
    assert client_for(other).get(f"/api/fractures/{rows['label']}/").status_code == 404

    admin = client_for(admin_user).get(f"/api/images/{rows['img']}/fractures/").json()
    assert admin["blind"] is False and admin["mine"] is None
    assert [label["expert"] for label in admin["labels"]] == ["eve-expert", "olga-expert"]
    assert client_for(admin_user).get(f"/api/fractures/{rows['label']}/").json()["sentence"] == SUBCAPITAL_SENTENCE


def test_history_lists_before_and_after_newest_first(rows, expert_user):
    image_id = rows["img"]
    client = client_for(expert_user)
    client.put(f"/api/images/{image_id}/fractures/save/", {"version": 1, "fracture": False}, format="json")
    history = client.get(f"/api/images/{image_id}/fractures/history/").json()
    assert [(change["version"], change["user"]) for change in history] == [(2, "eve-expert"), (1, "eve-expert")]
    assert history[0]["before"]["sentence"] == SUBCAPITAL_SENTENCE
    assert history[0]["after"]["sentence"] == NO_FRACTURE_SENTENCE
    assert history[1]["before"] is None
    assert AnnotationChange.objects.count() == 2


def test_queue_gives_the_next_unlabelled_image_and_counts(rows, expert_user, admin_user):
    body = client_for(expert_user).get(f"/api/datasets/{rows['ds']}/fractures/queue/").json()
    assert body == {
        "dataset": rows["ds"],
        "next_image": rows["free"],
        "next_url": f"/datasets/{rows['ds']}/fractures/{rows['free']}/",
        "progress": {"total": 2, "mine": 1, "everyone": 1},
    }
    after = client_for(expert_user).get(f"/api/datasets/{rows['ds']}/fractures/queue/?after={rows['free']}").json()
    assert after["next_image"] is None and after["next_url"] == ""
    admin = client_for(admin_user).get(f"/api/datasets/{rows['ds']}/fractures/queue/").json()
    assert admin["next_image"] == rows["img"] and admin["progress"] == {"total": 2, "mine": 0, "everyone": 1}
    bad = client_for(admin_user).get(f"/api/datasets/{rows['ds']}/fractures/queue/?after=x")
    assert bad.status_code == 400


def test_csv_export_streams_and_parses_back(rows, researcher_user, admin_user):
    fracture_descriptor_save(
        image=ImageFactory._meta.model.objects.get(pk=rows["free"]), expert=admin_user, version=0, fracture=False
    )
    response = client_for(researcher_user).get(f"/api/datasets/{rows['ds']}/fractures/export.csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="fracture-labels-{rows["ds"]}.csv"'
    text = b"".join(response.streaming_content).decode()
    records = list(csv.DictReader(io.StringIO(text)))
    assert [(r["source_name"], r["expert"]) for r in records] == [("a.png", "eve-expert"), ("b.png", "alice-admin")]
    eve = records[0]
    assert (eve["patient_id"], eve["fracture"], eve["displacement"], eve["comminuted"], eve["location"]) == (
        "P1",
        "True",
        "moderately displaced",
        "True",
        "subcapital",
    )
    assert (eve["sentence"], eve["version"], eve["truth_report"]) == (SUBCAPITAL_SENTENCE, "1", "truth")
    assert records[1]["sentence"] == NO_FRACTURE_SENTENCE and records[1]["truth_report"] == ""


def test_json_export_streams_and_parses_back(rows, expert_user, researcher_user):
    response = client_for(expert_user).get(f"/api/datasets/{rows['ds']}/fractures/export.json")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/json"
    records = json.loads(b"".join(response.streaming_content))
    assert len(records) == 1
    record = records[0]
    assert {key: record[key] for key in SUBCAPITAL} == SUBCAPITAL
    assert (record["image_id"], record["expert"], record["sentence"]) == (
        rows["img"],
        "eve-expert",
        SUBCAPITAL_SENTENCE,
    )
    assert not [key for key in record if key.startswith("truth_")]  # the expert labels these images: no truth
    researcher = client_for(researcher_user).get(f"/api/datasets/{rows['ds']}/fractures/export.json")
    (seen,) = json.loads(b"".join(researcher.streaming_content))
    assert (seen["truth_report"], seen["truth_fracture"]) == ("truth", None)


def test_every_fracture_endpoint_is_in_the_schema(admin_user):
    schema = yaml.safe_load(client_for(admin_user).get("/api/schema/").content)
    paths = schema["paths"]
    expected = {
        "/api/images/{id}/fractures/": "get",
        "/api/images/{id}/fractures/save/": "put",
        "/api/images/{id}/fractures/history/": "get",
        "/api/fractures/{id}/": "get",
        "/api/datasets/{id}/fractures/queue/": "get",
        "/api/datasets/{id}/fractures/export.{fmt}": "get",
    }
    for path, method in expected.items():
        assert method in paths[path], path
        assert paths[path][method]["tags"] == ["fractures"]
    save = paths["/api/images/{id}/fractures/save/"]["put"]
    assert {"200", "400", "403", "409"} <= set(save["responses"])
    body = save["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert {"version", "fracture"} <= set(schema["components"]["schemas"][body]["required"])


def test_blind_experts_get_no_ground_truth_from_images_filters_or_csv(rows, expert_user, researcher_user):
    """Truth rule: experts label these images, so neither the images API, its label filter nor the CSV
    export tells them an image's label, metadata (report, known descriptors) or findings."""
    Image.objects.filter(pk=rows["img"]).update(label="fracture")
    expert, researcher = client_for(expert_user), client_for(researcher_user)
    listed = expert.get(f"/api/images/?dataset={rows['ds']}").json()["results"]
    detail = expert.get(f"/api/images/{rows['img']}/").json()
    for image in [*listed, detail]:
        assert (image["label"], image["metadata"], image["findings"]) == ("", {}, [])
    assert "truth" not in json.dumps(listed) + json.dumps(detail)
    # A label filter would answer "which images are fractures": for the expert it matches nothing here.
    assert expert.get(f"/api/images/?dataset={rows['ds']}&label=fracture").json()["count"] == 0
    assert researcher.get(f"/api/images/?dataset={rows['ds']}&label=fracture").json()["count"] == 1
    assert researcher.get(f"/api/images/{rows['img']}/").json()["metadata"]
    csv_text = b"".join(expert.get(f"/api/datasets/{rows['ds']}/fractures/export.csv").streaming_content).decode()
    assert "truth_" not in csv_text.splitlines()[0]
    researcher_csv = b"".join(researcher.get(f"/api/datasets/{rows['ds']}/fractures/export.csv").streaming_content)
    assert "truth_report" in researcher_csv.decode().splitlines()[0]
