"""The Content-Security-Policy holds: every response carries it (and Permissions-Policy), it allows no inline
script or style, and no template or rendered page has an inline script, event handler or style attribute that
it would block. The browser side (zero violations in Chromium) is test_browser_csp.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from annotator.models import Dataset, Job
from tests.factories import DatasetFactory, ImageFactory, JobFactory, client_for, mined_unit

ROOT = Path(__file__).resolve().parents[2]
# Script types a browser does not run (json_script's data blocks), so the CSP does not govern them.
DATA_SCRIPT_TYPES = {"application/json", "application/ld+json"}


class InlineCode(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' blocks: inline scripts, on* handlers, style attributes and
    <style> elements, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...> (event handler)")
            if name == "style":
                self.found.append(f"<{tag} style=...>")
            url = (value or "").strip().lower()
            if name in ("href", "src", "action", "formaction") and url.startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")
        if tag == "style":
            self.found.append("<style> element")
        self._inline_script = tag == "script" and "src" not in named and named.get("type") not in DATA_SCRIPT_TYPES

    def handle_data(self, data: str) -> None:
        if self._inline_script and data.strip():
            self.found.append(f"inline <script>: {data.strip()[:60]!r}")

    def handle_endtag(self, tag: str) -> None:
        self._inline_script = False


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def test_the_checker_finds_what_the_policy_blocks():
    """The checker bites: each kind of inline code is reported, json_script and external scripts are not."""
    html = (
        '<script>alert(1)</script><button onclick="go()">x</button><div style="width: 3%"></div>'
        '<style>b{}</style><a href="javascript:go()">x</a>'
        '<script src="/static/a.js"></script><script id="d" type="application/json">{"a": 1}</script>'
    )
    assert len(inline_code(html)) == 5, inline_code(html)


@pytest.mark.parametrize("template", sorted((ROOT / "templates").rglob("*.html")), ids=lambda p: p.name)
def test_no_template_has_inline_script_handler_or_style(template: Path):
    # Template tags would confuse the HTML parser inside attributes; blank them (the markup around them stays).
    source = re.sub(r"{% comment %}.*?{% endcomment %}", "", template.read_text(), flags=re.S)
    source = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", "x", source, flags=re.S)
    assert inline_code(source) == []


def test_the_policy_forbids_inline_script_and_style(settings):
    directives = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    for directive in ("script-src", "style-src", "default-src"):
        assert directives[directive] == ["'self'"], directive
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]


def _sample_path(pattern: str) -> str:
    """A concrete path for a route: ids 1, formats csv, paths x.png (a 404 is fine: headers come anyway)."""
    path = re.sub(r"<int:\w+>", "1", pattern)
    path = re.sub(r"<str:fmt>", "csv", path)
    path = re.sub(r"<path:\w+>", "x.png", path)
    return re.sub(r"<(?:\w+:)?\w+>", "1", path)


def _every_route(patterns: list[URLPattern | URLResolver], prefix: str = "") -> list[str]:
    paths = []
    for entry in patterns:
        route = str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route == "admin/":  # the admin's own routes are regexes; its index and a change list stand in
                paths += ["/admin/", "/admin/annotator/dataset/"]
                continue
            paths += _every_route(entry.url_patterns, prefix + route)
        else:
            paths.append("/" + _sample_path(prefix + route))
    return paths


@pytest.mark.django_db
@pytest.mark.parametrize("role", [None, "admin_user", "expert_user"])
def test_every_route_answers_with_the_policy_headers(request, role):
    """Whatever the route and the answer (page, JSON, redirect to login, 403, 404), the headers are there."""
    user = request.getfixturevalue(role) if role else None
    client = client_for(user)
    paths = sorted(set(_every_route(get_resolver().url_patterns)))
    assert len(paths) > 30
    for path in paths:
        response = client.get(path)
        policy = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, (path, response.status_code)
        assert "camera=()" in response.headers.get("Permissions-Policy", ""), path


@pytest.fixture
def pages(db) -> list[str]:
    """Every kind of page with real objects behind it, for an admin (who sees every control)."""
    unit = mined_unit(n_top=8, n_images=2)
    JobFactory(dataset=unit.model.dataset, kind=Job.Kind.EXTRACT_PATCHES, status=Job.Status.RUNNING, progress=0.4)
    hips = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    hip = ImageFactory(dataset=hips, label="fracture")
    model = unit.model
    return [
        "/",
        "/accounts/login/",
        f"/datasets/{model.dataset.pk}/",
        "/jobs/new/",
        f"/models/{model.pk}/",
        f"/models/{model.pk}/units/",
        f"/units/{unit.pk}/",
        f"/datasets/{hips.pk}/fractures/{hip.pk}/",
        "/api/docs/",
        "/admin/",
        "/admin/annotator/job/",
    ]


def test_pages_render_without_inline_code_and_with_the_policy(pages, admin_user):
    admin_user.is_superuser = True  # the Django admin's change lists too
    admin_user.save()
    client = client_for(admin_user)
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response["Content-Security-Policy"], path
        assert inline_code(response.content.decode()) == [], path
    # Swagger UI's start-up script comes from the app as a file of its own (the split view), not inline.
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
