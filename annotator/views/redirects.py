"""Where a POSTed form goes next: its `next` only when that is a page of this site (no open redirect)."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


def next_page(request: HttpRequest) -> str:
    """The form's `next` if it is a page of this site (never another host: no open redirect), else the dashboard."""
    wanted = request.POST.get("next") or ""
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if wanted and safe else reverse("dashboard")
