"""The media view: stored files (images, crops, masks, plots) to signed-in users only, never outside the
media root (no `..`, no symlink out of it), never the deep-zoom pyramids, which their own views guard, and
never an image's finding outlines or a finding's mask to a user the truth rule hides that dataset's truth
from (their names are unguessable, but a name seen once, in an admin's page or a shared link, is no key),
and never a reader study's picture to anyone but admins and the study's own readers.

With media in a bucket the same checks run first; then the user is redirected to a presigned URL valid for
MEDIA_URL_SECONDS (MEDIA_REDIRECT) or the app streams the object. Masks are always streamed: the survey
page reads a mask sprite's pixels from a canvas, which a cross-origin image would taint."""

from __future__ import annotations

import mimetypes
import posixpath
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase

from ..files import media_is_local, media_storage
from ..models import Finding, Image, StudyItem
from ..permissions import truth_hidden_q, user_is_admin

_PRIVATE = "private, max-age=3600"
_STREAMED_FOLDERS = frozenset({"masks"})


def media(request: HttpRequest, path: str) -> HttpResponseBase:
    """Serve a stored file to signed-in users only (patient images never leave without a session)."""
    name = _stored_name(path)
    if name.split("/", 1)[0] == "deepzoom":
        raise Http404("no such file")  # pyramids and outlines go through their own views' permission checks
    if _hidden_truth(request, name) or _foreign_study_picture(request, name):
        raise Http404("no such file")  # as if it did not exist: a 403 would say the file is truth
    return media_response(name, cache_control=_PRIVATE)


def media_response(name: str, *, cache_control: str, redirect: bool = True) -> HttpResponseBase:
    """The stored file ``name`` (already checked: it exists and the user may see it): streamed, or on a
    bucket with MEDIA_REDIRECT a redirect to a presigned URL (unless ``redirect`` is False or it is a mask)."""
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    storage = media_storage()
    if media_is_local(storage):
        response: HttpResponseBase = FileResponse(
            (Path(settings.MEDIA_ROOT) / name).open("rb"), content_type=content_type
        )
    elif redirect and settings.MEDIA_REDIRECT and name.split("/", 1)[0] not in _STREAMED_FOLDERS:
        signed = cast(Any, storage).url(name, expire=settings.MEDIA_URL_SECONDS)  # S3Storage's url(expire=)
        response = HttpResponseRedirect(signed)
        cache_control = "private, no-store"  # the signed URL expires; the browser must ask again
    else:
        response = FileResponse(storage.open(name, "rb"), content_type=content_type)
    response["Cache-Control"] = cache_control
    return response


def _stored_name(path: str) -> str:
    """The stored name ``path`` spells (404 when it names nothing, or something outside the media root)."""
    if media_is_local():
        root = Path(settings.MEDIA_ROOT).resolve()
        target = (root / path).resolve()
        if root not in target.parents or not target.is_file():
            raise Http404("no such file")
        return target.relative_to(root).as_posix()  # the stored name, however the URL spelled it
    # A bucket has no symlinks; normalise the spelling as the filesystem would and refuse what leaves the root.
    name = posixpath.normpath("/" + path).lstrip("/")
    if not name or name == "." or ".." in path.split("/") or not media_storage().exists(name):
        raise Http404("no such file")
    return name


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


def _foreign_study_picture(request: HttpRequest, name: str) -> bool:
    """Whether ``name`` is a reader study's picture (under reader_studies/) that ``request``'s user neither
    administers nor reads: a study's pictures show its images under its arms' maps, for its readers only."""
    if name.split("/", 1)[0] != "reader_studies" or user_is_admin(request.user):
        return False
    return not StudyItem.objects.filter(content__picture=name, study__assignments__reader=request.user.pk).exists()
