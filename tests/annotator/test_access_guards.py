"""Sign-in and API guards: failed logins lock out (django-axes), basic auth is off unless enabled, the API is
throttled, and the schema and its browsable page are for signed-in users, served without any CDN."""

from __future__ import annotations

import base64

import pytest
from rest_framework.throttling import UserRateThrottle

from tests.factories import PASSWORD, client_for

pytestmark = pytest.mark.django_db


def _login(client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(client, expert_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, expert_user.username, "wrong").status_code == 200  # the form again, with an error
    assert _login(client, expert_user.username, "wrong").status_code == 429  # the limit-th failure locks
    locked = _login(client, expert_user.username, PASSWORD)
    assert locked.status_code == 429  # django-axes' lockout response
    assert "_auth_user_id" not in client.session


def test_a_right_password_before_the_limit_resets_the_count(client, expert_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, expert_user.username, "wrong")
    assert _login(client, expert_user.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, expert_user.username, "wrong")
    assert _login(client, expert_user.username, PASSWORD).status_code == 302  # not locked: the count restarted


def test_basic_auth_is_not_accepted_by_default(client, expert_user):
    token = base64.b64encode(f"{expert_user.username}:{PASSWORD}".encode()).decode()
    response = client.get("/api/datasets/", HTTP_AUTHORIZATION=f"Basic {token}")
    assert response.status_code in (401, 403)
    assert response.json()["message"]


def test_the_api_is_throttled_per_user(expert_user, monkeypatch):
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/minute", "anon": "3/minute"})
    client = client_for(expert_user)
    statuses = [client.get("/api/datasets/").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    assert "throttled" in client.get("/api/datasets/").json()["message"].lower()


def test_the_schema_and_its_docs_page_are_for_signed_in_users(client, expert_user):
    assert client.get("/api/schema/").status_code in (401, 403)
    assert client.get("/api/docs/").status_code in (401, 403)
    client.force_login(expert_user)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html  # served by the app
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
