"""The media view: stored files (images, crops, masks, plots) to signed-in users only, never outside the
media root (no `..`, no symlink out of it), never the deep-zoom pyramids, which their own views guard, and
never an image's finding outlines or a finding's mask to a user the truth rule hides that dataset's truth
from (their names are unguessable, but a name seen once, in an admin's page or a shared link, is no key)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest

from ..models import Finding, Image
from ..permissions import truth_hidden_q


def media(request: HttpRequest, path: str) -> FileResponse:
    """Serve a stored file to signed-in users only (patient images never leave without a session)."""
    root = Path(settings.MEDIA_ROOT).resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file():
        raise Http404("no such file")
    name = target.relative_to(root).as_posix()  # the stored name, however the URL spelled it
    if name.split("/", 1)[0] == "deepzoom":
        raise Http404("no such file")  # pyramids and outlines go through their own views' permission checks
    if _hidden_truth(request, name):
        raise Http404("no such file")  # as if it did not exist: a 403 would say the file is truth
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    response = FileResponse(target.open("rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _hidden_truth(request: HttpRequest, name: str) -> bool:
    """Whether the stored file ``name`` is an image's outlines or a finding's mask on a dataset whose truth
    ``request``'s user may not see (only names under overlays/ and masks/ are looked up; unit mask sprites
    live there too)."""
    folder = name.split("/", 1)[0]
    if folder == "overlays":
        return Image.objects.filter(overlay=name).filter(truth_hidden_q(request.user)).exists()
    if folder == "masks":
        hidden = truth_hidden_q(request.user, dataset="image__dataset")
        return Finding.objects.filter(mask=name).filter(hidden).exists()
    return False
