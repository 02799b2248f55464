"""Hostile request bodies and unknown routes: every API error is JSON with a clear message, never a 500
or an HTML page (pages keep their HTML error pages)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.urls import reverse

from annotator.api.parsers import MAX_DEPTH, nesting_depth
from annotator.models import Dataset, FractureDescriptor, UnitAnnotation
from tests.factories import DatasetFactory, ImageFactory, UnitFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db


def _saves(expert) -> list[str]:
    unit = UnitFactory(selected_for="malignant", selection_rank=1)
    hip = ImageFactory(dataset=DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"]))
    return [
        reverse("api:unit-annotation-save", args=[unit.pk]),
        reverse("api:unit-consensus", args=[unit.pk]),
        f"/api/images/{hip.pk}/fractures/save/",
    ]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deeply_nested_json_is_a_400_with_a_message(expert_user, depth):
    admin = UserFactory(groups=["admin"])
    body = '{"version": 0, "phenomena": ' + "[" * depth + "]" * depth + "}"
    for url in _saves(expert_user):
        user = admin if "consensus" in url else expert_user
        response = client_for(user).put(url, data=body, content_type="application/json")
        assert response.status_code == 400, (url, response.content[:200])
        assert response["Content-Type"] == "application/json"
        assert f"nested more than {MAX_DEPTH} levels" in response.json()["message"]
    assert not UnitAnnotation.objects.exists() and not FractureDescriptor.objects.exists()


def test_nesting_within_the_bound_still_parses(expert_user):
    body = '{"version": 0, "recognizable": "yes", "phenomena": [], "notes": "fine"}'
    url = _saves(expert_user)[0]
    assert client_for(expert_user).put(url, data=body, content_type="application/json").status_code == 200


def test_nesting_depth() -> None:
    assert nesting_depth(3) == 0
    assert nesting_depth([]) == 1
    assert nesting_depth({"a": [1, {"b": []}]}) == 4
    deep: list = []
    for _ in range(5000):  # deeper than Python's recursion limit: counted without recursion
        deep = [deep]
    assert nesting_depth(deep) == 5001


def test_a_body_over_the_upload_limit_is_a_413_json_error(expert_user):
    url = _saves(expert_user)[0]
    body = urlencode({"version": 0, "notes": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = client_for(expert_user).put(url, data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413 and response["Content-Type"] == "application/json"
    assert "larger than" in response.json()["message"]
    assert not UnitAnnotation.objects.exists()


def test_unknown_api_routes_answer_json_and_pages_stay_html(expert_user):
    client = client_for(expert_user)
    api = client.get("/api/no-such-thing/")
    assert api.status_code == 404 and api.json()["message"]
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
