"""Unit survey API and pages: permission matrix, 409 conflicts, survey query count, exports, schema."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotator.models import UnitAnnotation
from tests.factories import UnitAnnotationFactory, UnitFactory, UserFactory, client_for, mined_unit

pytestmark = pytest.mark.django_db

ANSWER = {
    "version": 0,
    "recognizable": "yes",
    "confidence": 4,
    "notes": "",
    "phenomena": [{"description": "spiculated edge", "concept": "mass_margin.spiculated", "association": "malignant"}],
}


@pytest.fixture
def users(admin_user, expert_user, researcher_user):
    return {"anonymous": None, "researcher": researcher_user, "expert": expert_user, "admin": admin_user}


def _endpoints(unit) -> list[tuple[str, str, str, dict | None, dict[str, int]]]:
    """(name, method, url, body, expected status per role)."""
    model = unit.model_id
    read = {"anonymous": 403, "researcher": 200, "expert": 200, "admin": 200}
    not_experts = {**read, "expert": 403}  # what the blind survey hides from experts
    labellers = {**read, "researcher": 403}
    admins = {**read, "researcher": 403, "expert": 403}
    consensus = reverse("api:unit-consensus", args=[unit.pk])
    return [
        ("concepts", "get", reverse("api:concept-list"), None, read),
        ("unit list", "get", reverse("api:unit-list", args=[model]), None, read),
        ("unit detail", "get", reverse("api:unit-detail", args=[unit.pk]), None, read),
        ("annotations", "get", reverse("api:unit-annotation-list", args=[unit.pk]), None, read),
        ("history", "get", reverse("api:unit-history", args=[unit.pk]), None, read),
        ("agreement", "get", reverse("api:model-agreement", args=[model]), None, not_experts),
        ("export csv", "get", reverse("api:unit-export", args=[model, "csv"]), None, not_experts),
        ("export json", "get", reverse("api:unit-export", args=[model, "json"]), None, not_experts),
        ("save annotation", "put", reverse("api:unit-annotation-save", args=[unit.pk]), ANSWER, labellers),
        ("set consensus", "put", consensus, {"version": 0, "recognizable": "yes"}, admins),
        ("clear consensus", "delete", consensus, None, {**admins, "admin": 204}),
    ]


@pytest.mark.parametrize("role", ["anonymous", "researcher", "expert", "admin"])
def test_permission_matrix_on_every_unit_endpoint(users, role):
    unit = UnitFactory(selected_for="malignant", selection_rank=1)
    client = client_for(users[role])
    for name, method, url, body, expected in _endpoints(unit):
        kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}
        response = getattr(client, method)(url, **kwargs)
        assert response.status_code == expected[role], f"{role} {name}: {response.status_code}"


def test_pages_follow_the_same_roles(users):
    unit = UnitFactory(selected_for="malignant", selection_rank=1)
    pages = [reverse("unit-list", args=[unit.model_id]), reverse("unit-survey", args=[unit.pk])]
    for role, user in users.items():
        for url in pages:
            response = client_for(user).get(url)
            assert response.status_code == (302 if user is None else 200), (role, url)
    export = reverse("unit-export", args=[unit.model_id, "csv"])
    assert client_for(users["expert"]).get(export).status_code == 403
    assert client_for(users["researcher"]).get(export).status_code == 200


def test_stale_save_answers_409_with_the_current_answers(expert_user):
    unit = UnitFactory()
    client = client_for(expert_user)
    url = reverse("api:unit-annotation-save", args=[unit.pk])
    first = client.put(url, json.dumps(ANSWER), content_type="application/json")
    assert first.status_code == 200 and first.json()["version"] == 1
    second_tab = client.put(url, json.dumps({**ANSWER, "recognizable": "no"}), content_type="application/json")
    assert second_tab.status_code == 409
    body = second_tab.json()
    assert "changed" in body["message"] and "reload" in body["message"]
    assert body["extra"]["version"] == 1 and body["extra"]["current"]["recognizable"] == "yes"
    assert UnitAnnotation.objects.get().recognizable == "yes"


def test_experts_are_blind_to_each_other_unless_the_dataset_is_open(expert_user, admin_user):
    unit = UnitFactory()
    UnitAnnotationFactory(unit=unit, expert=UserFactory(username="oscar", groups=["expert"]))
    url = reverse("api:unit-annotation-list", args=[unit.pk])
    assert client_for(expert_user).get(url).json() == []
    assert [a["expert"] for a in client_for(admin_user).get(url).json()] == ["oscar"]
    unit.model.dataset.annotation_blind = False
    unit.model.dataset.save()
    assert [a["expert"] for a in client_for(expert_user).get(url).json()] == ["oscar"]


def _survey_queries(client, unit) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("unit-survey", args=[unit.pk]))
    assert response.status_code == 200
    return len(queries)


def test_survey_page_query_count_does_not_grow_with_patches(expert_user):
    small, large = mined_unit(n_top=8, n_images=2), mined_unit(n_top=64, n_images=6, seed=1)
    client = client_for(expert_user)
    _survey_queries(client, small)  # warm the session and lexicon caches alike
    count = _survey_queries(client, small)
    assert 5 <= count == _survey_queries(client, large)
    html = client.get(reverse("unit-survey", args=[large.pk])).content.decode()
    assert html.count('class="tile"') == 64


def test_unit_list_filters_and_progress(expert_user):
    model_unit = UnitFactory(selected_for="malignant", selection_rank=1, channel=7)
    other = UnitFactory(model=model_unit.model, selected_for="benign", selection_rank=1, channel=8)
    UnitFactory(model=model_unit.model, channel=9)  # not selected
    UnitAnnotationFactory(unit=model_unit, expert=expert_user)
    client = client_for(expert_user)
    url = reverse("api:unit-list", args=[model_unit.model_id])
    ids = lambda query: [u["id"] for u in client.get(url, query).json()["results"]]  # noqa: E731
    assert ids({}) == [other.pk, model_unit.pk]  # benign before malignant, unselected left out
    assert ids({"class": "malignant"}) == [model_unit.pk]
    assert ids({"status": "todo"}) == [other.pk]
    assert ids({"status": "mine"}) == [model_unit.pk]
    assert ids({"concept": "mass_margin.spiculated"}) == [model_unit.pk]
    assert ids({"q": "9"}) != [] and ids({"q": "layer4:8"}) == [other.pk]
    assert ids({"all": "true"})[:2] == [other.pk, model_unit.pk] and len(ids({"all": "true"})) == 3
    page = client.get(reverse("unit-list", args=[model_unit.model_id])).content.decode()
    assert "1 / 2" in page  # answered by me, of the selected units


def _export_setup():
    unit = mined_unit(n_top=4, n_images=2)
    experts = [UserFactory(username=name, groups=["expert"]) for name in ("ann", "bob", "cat")]
    for expert, answer in zip(experts, ["yes", "yes", "no"], strict=True):
        UnitAnnotationFactory(
            unit=unit,
            expert=expert,
            recognizable=answer,
            phenomena=[] if answer == "no" else UnitAnnotationFactory.phenomena.function(),
        )
    return unit


def test_csv_export_has_one_row_per_unit_and_expert(researcher_user):
    unit = _export_setup()
    response = client_for(researcher_user).get(reverse("api:unit-export", args=[unit.model_id, "csv"]))
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["expert"] for r in rows] == ["ann", "bob", "cat"]
    first = rows[0]
    assert (first["unit_id"], first["layer"], first["selected_for"], first["frequency_malignant"]) == (
        str(unit.pk),
        "layer4",
        "malignant",
        "30",
    )
    assert first["birads_term"] == "Spiculated" and first["birads_category"] == "Mass — margin"
    assert first["suggested_concept"] == "mass_margin.spiculated" and first["suggested_iou"] == "0.21"
    assert len(first["top_patch_ids"].split()) == 4
    assert first["coverage"] == "1.0"  # the only unit of its model: it fills every malignant slot
    assert rows[2]["recognizable"] == "no" and rows[2]["birads_term"] == ""


def test_json_export_nests_each_experts_answers(admin_user):
    unit = _export_setup()
    response = client_for(admin_user).get(reverse("api:unit-export", args=[unit.model_id, "json"]))
    records = json.loads(b"".join(response.streaming_content))
    assert len(records) == 1
    record = records[0]
    assert record["checkpoint"] == unit.model.checkpoint.name
    assert [e["expert"] for e in record["experts"]] == ["ann", "bob", "cat"]
    assert record["experts"][0]["phenomena"][0]["birads_term"] == "Spiculated"


def test_agreement_is_reported_for_units_several_experts_answered(admin_user):
    unit = _export_setup()
    body = client_for(admin_user).get(reverse("api:model-agreement", args=[unit.model_id])).json()
    assert body["units_with_two_or_more"] == 1
    # One unit, 3 raters, yes/yes/no: P = (2*1 + 0) / (3*2) = 1/3 of ordered pairs agree.
    assert body["recognizable"]["percent_agreement"] == pytest.approx(1 / 3, abs=1e-4)
    assert body["progress"]["all"] == {"total": 1, "mine": 0, "anyone": 1}


def test_openapi_schema_lists_the_survey_endpoints(admin_user):
    schema = client_for(admin_user).get("/api/schema/?format=json").json()
    for path in (
        "/api/units/{id}/annotations/save/",
        "/api/units/{id}/consensus/",
        "/api/models/{id}/units/export.{fmt}",
        "/api/models/{id}/agreement/",
        "/api/concepts/",
    ):
        assert path in schema["paths"], path


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_export_neutralises_formula_cells(researcher_user, start):
    """OWASP's CSV-injection rule: a text cell starting like a formula gets a leading quote."""
    unit = mined_unit(n_top=2, n_images=1)
    evil = f'{start}HYPERLINK("http://evil.example/","click")'
    UnitAnnotationFactory(
        unit=unit, expert=UserFactory(username="ann", groups=["expert"]), recognizable="yes", notes=evil
    )
    response = client_for(researcher_user).get(reverse("api:unit-export", args=[unit.model_id, "csv"]))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    assert rows[0]["notes"] == "'" + evil
    assert rows[0]["frequency_malignant"] == "30"  # numbers are left alone
