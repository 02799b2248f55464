"""manage.py demo_users: admin, expert and researcher accounts, credentials printed and kept across runs."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory

from annotator.permissions import user_can_annotate, user_is_admin, user_roles

pytestmark = pytest.mark.django_db


def test_demo_accounts_have_their_roles_and_keep_their_passwords(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = io.StringIO()
    call_command("demo_users", stdout=out)
    printed = out.getvalue()
    passwords = {}
    for line in printed.splitlines():
        if "password:" in line:
            words = line.strip("| ").split()
            passwords[words[2]] = words[4]
    assert set(passwords) == {"admin", "expert", "researcher"}
    sign_in = RequestFactory().post("/accounts/login/")  # django-axes checks every sign-in's request
    users = {name: authenticate(sign_in, username=name, password=password) for name, password in passwords.items()}
    assert all(users.values())
    assert user_is_admin(users["admin"]) and not user_is_admin(users["expert"])
    assert user_can_annotate(users["expert"]) and not user_can_annotate(users["researcher"])
    assert user_roles(users["researcher"]) == ["researcher"]

    again = io.StringIO()
    call_command("demo_users", stdout=again)
    assert again.getvalue() == printed  # same passwords: the README's credentials stay valid
