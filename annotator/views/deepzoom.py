"""Deep-zoom files of an image or an upload, to signed-in users who may see it: the .dzi descriptor (the
pyramid is made on its first request), its tiles, and the finding outlines (to users who may see the
truth). ``?v=<rendition stem>`` in the URL names the pyramid, so a matching request is cached for good."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import reverse

from ..files import media_exists
from ..models import Image, UploadedImage
from ..permissions import user_sees_truth
from ..selectors.explanations import upload_visible
from ..services.renditions import DEEPZOOM_DESCRIPTOR, DEEPZOOM_OUTLINES, deepzoom_ensure, deepzoom_folder
from .media import media_response

__all__ = ["deepzoom_urls", "image_deepzoom", "image_deepzoom_tile", "image_outlines", "upload_deepzoom"]

_CACHED = "private, max-age=31536000, immutable"
_UNVERSIONED = "private, no-cache"


def deepzoom_urls(item: Image | UploadedImage, *, outlines: bool) -> dict[str, Any]:
    """What a page hands to deepzoom.js for ``item``: descriptor URL, size, outlines URL (or "")."""
    version = item.display.name.rsplit("/", 1)[-1].removesuffix(".png") if item.display else ""
    query = f"?v={version}" if version else ""
    if isinstance(item, Image):
        dzi = reverse("image-deepzoom", args=[item.pk])
        lines = reverse("image-outlines", args=[item.pk]) + query if outlines and item.overlay else ""
    else:
        dzi, lines = reverse("upload-deepzoom", args=[item.pk]), ""
    return {"dzi": dzi + query, "outlines": lines, "width": item.width, "height": item.height}


def _serve(request: HttpRequest, item: Image | UploadedImage, name: str) -> HttpResponseBase:
    folder = deepzoom_ensure(item) if name == DEEPZOOM_DESCRIPTOR else deepzoom_folder(item)
    if not media_exists(f"{folder}/{name}"):
        # The pyramid went (media cleaned up) or was never asked for: make it, then look again.
        folder = deepzoom_ensure(item)
        if not media_exists(f"{folder}/{name}"):
            raise Http404("no such tile")
    current = folder.rsplit("/", 1)[-1]
    # Streamed, never redirected to a bucket: the viewer draws tiles on a canvas of this origin.
    response = media_response(
        f"{folder}/{name}", cache_control=_CACHED if request.GET.get("v") == current else _UNVERSIONED, redirect=False
    )
    if name.endswith(".dzi"):
        response["Content-Type"] = "application/xml"
    return response


def image_deepzoom(request: HttpRequest, pk: int) -> HttpResponseBase:
    return _serve(request, get_object_or_404(Image, pk=pk), DEEPZOOM_DESCRIPTOR)


def image_deepzoom_tile(request: HttpRequest, pk: int, level: int, column: int, row: int) -> HttpResponseBase:
    return _serve(request, get_object_or_404(Image, pk=pk), f"image_files/{level}/{column}_{row}.jpg")


def image_outlines(request: HttpRequest, pk: int) -> HttpResponseBase:
    image = get_object_or_404(Image.objects.select_related("dataset"), pk=pk)
    if not user_sees_truth(request.user, image.dataset):
        raise Http404("no such file")
    return _serve(request, image, DEEPZOOM_OUTLINES)


def upload_deepzoom(request: HttpRequest, pk: int) -> HttpResponseBase:
    return _serve(request, get_object_or_404(upload_visible(user=request.user), pk=pk), DEEPZOOM_DESCRIPTOR)


def upload_deepzoom_tile(request: HttpRequest, pk: int, level: int, column: int, row: int) -> HttpResponseBase:
    upload = get_object_or_404(upload_visible(user=request.user), pk=pk)
    return _serve(request, upload, f"image_files/{level}/{column}_{row}.jpg")
