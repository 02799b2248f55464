"""annotator.permissions' role rules and DRF permission classes, asked directly for every kind of user.

The permission matrix (test_permission_matrix.py) checks what each route answers; these check the rules
themselves, so a rule that another check happens to mask on today's routes (a view's own test, an
authentication class) still cannot loosen unseen.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from rest_framework.test import APIRequestFactory

from annotator.permissions import CanAnnotate, IsAdminRole, user_can_annotate, user_is_admin, user_roles
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def users(expert_user, admin_user, researcher_user):
    return {
        "anonymous": AnonymousUser(),
        "no role": UserFactory(),
        "researcher": researcher_user,
        "expert": expert_user,
        "admin": admin_user,
        "superuser": UserFactory(is_superuser=True),
        "staff": UserFactory(is_staff=True),
    }


def _request(method: str, user):
    request = getattr(APIRequestFactory(), method.lower())("/api/anything/")
    request.user = user
    return request


def test_roles_of_every_kind_of_user(users):
    assert {name: user_roles(user) for name, user in users.items()} == {
        "anonymous": [],
        "no role": [],
        "researcher": ["researcher"],
        "expert": ["expert"],
        "admin": ["admin"],  # in the admin group: listed once
        "superuser": ["admin"],  # superusers and staff count as admins without the group
        "staff": ["admin"],
    }
    assert [name for name, user in users.items() if user_is_admin(user)] == ["admin", "superuser", "staff"]
    assert [name for name, user in users.items() if user_can_annotate(user)] == [
        "expert",
        "admin",
        "superuser",
        "staff",
    ]
    assert not user_is_admin(None) and not user_can_annotate(None)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "POST", "DELETE"])
def test_who_may_annotate_and_who_may_only_read(users, method):
    reads = method in ("GET", "HEAD", "OPTIONS")
    allowed = {name for name, user in users.items() if CanAnnotate().has_permission(_request(method, user), None)}
    signed_in = set(users) - {"anonymous"}
    assert allowed == (signed_in if reads else {"expert", "admin", "superuser", "staff"})
    no_user = _request(method, None)
    assert not CanAnnotate().has_permission(no_user, None)


def test_only_admins_pass_the_admin_permission(users):
    allowed = {name for name, user in users.items() if IsAdminRole().has_permission(_request("POST", user), None)}
    assert allowed == {"admin", "superuser", "staff"}


def test_a_page_s_role_questions_about_one_user_cost_one_query(django_assert_num_queries, expert_user):
    user = type(expert_user).objects.get(pk=expert_user.pk)  # fresh: nothing read about its groups yet
    with django_assert_num_queries(1):
        assert not user_is_admin(user)
        assert user_can_annotate(user)
        assert user_roles(user) == ["expert"]
