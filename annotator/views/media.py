"""The media view: stored files (images, crops, masks, plots) to signed-in users only, never outside the
media root (no `..`, no symlink out of it), and never the deep-zoom pyramids, which their own views guard."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest


def media(request: HttpRequest, path: str) -> FileResponse:
    """Serve a stored file to signed-in users only (patient images never leave without a session)."""
    root = Path(settings.MEDIA_ROOT).resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file():
        raise Http404("no such file")
    if target.relative_to(root).parts[0] == "deepzoom":
        raise Http404("no such file")  # pyramids and outlines go through their own views' permission checks
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    response = FileResponse(target.open("rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response
