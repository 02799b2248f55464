"""Fracture-labelling pages: the queue entry and the per-image labelling page (a few lines each).

The page itself saves through the JSON API (``annotator.api.fractures``) with the version it loaded.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from ..models import Dataset, FractureDescriptor, Image
from ..permissions import user_can_annotate, user_sees_others_labels
from ..selectors import fractures as selectors
from ..selectors import image_get
from ..services.versioned import label_snapshot
from .deepzoom import deepzoom_urls

__all__ = ["fracture_label", "fracture_queue"]

# The keyboard map, shown in the form and in the `?` overlay; fracture.js holds the same keys.
SHORTCUTS: list[tuple[list[str], str]] = [
    (["n"], "No fracture: save and go to the next unlabelled image"),
    (["f"], "Fracture present"),
    (["1", "2", "3", "4"], "Displacement: undisplaced, mildly, moderately, severely displaced"),
    (["c"], "Comminuted (toggle)"),
    (["i"], "Impacted (toggle)"),
    (["a"], "Avulsed fragment (toggle)"),
    (
        ["s", "t", "b", "r", "u"],
        "Location: subcapital, transcervical, basicervical, intertrochanteric, subtrochanteric",
    ),
    (["Enter"], "Save and go to the next unlabelled image"),
    (["Ctrl", "S"], "Save and stay on this image"),
    (["←", "→"], "Previous / next image (a finished label is saved first)"),
    (["Esc"], "Discard unsaved changes"),
    (["+", "-", "0"], "Zoom in / out (or the wheel; drag pans), reset zoom and window"),
    (["[", "]"], "More / less contrast: window narrower / wider (or Shift + drag)"),
    (["{", "}"], "Level down / up"),
    (["\\"], "Invert"),
    (["?"], "Show or hide these shortcuts"),
]
DISPLACEMENTS = [
    (value, text, key) for (value, text), key in zip(FractureDescriptor.Displacement.choices, "1234", strict=True)
]
LOCATION_KEYS = {
    "subcapital": "s",
    "transcervical": "t",
    "basicervical": "b",
    "intertrochanteric": "r",
    "subtrochanteric": "u",
}


def fracture_queue(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a labeller to their next unlabelled image; a reader to the first image; or say all is done."""
    dataset = selectors.fracture_dataset_get(pk=pk)
    can_label = user_can_annotate(request.user)
    if can_label:
        next_image = selectors.fracture_next_image(dataset=dataset, user=request.user)
    else:
        next_image = selectors.fracture_first_image(dataset=dataset)
    if next_image is not None:
        return redirect("fracture-label", pk=dataset.pk, image_pk=next_image)
    first = selectors.fracture_first_image(dataset=dataset)
    return render(
        request,
        "annotator/fracture_done.html",
        {
            "dataset": dataset,
            "progress": selectors.fracture_progress(dataset=dataset, user=request.user),
            "first_image": first,
            "can_label": can_label,
        },
    )


def fracture_label(request: HttpRequest, pk: int, image_pk: int) -> HttpResponse:
    dataset = selectors.fracture_dataset_get(pk=pk)
    image = image_get(pk=image_pk, dataset=dataset)
    labels = list(selectors.fracture_labels_visible(image=image, user=request.user))
    mine = next((label for label in labels if label.expert_id == request.user.pk), None)
    can_label = user_can_annotate(request.user)
    neighbours = selectors.fracture_image_neighbours(image=image)
    next_unlabelled = (
        selectors.fracture_next_image(dataset=dataset, user=request.user, after=image.pk) if can_label else None
    )
    # The next images' descriptors: tiny, and asking for one has the server make its pyramid ahead.
    prefetch = [
        deepzoom_urls(other, outlines=False)["dzi"]
        for other in selectors.fracture_images([next_unlabelled, neighbours["next"]])
    ]
    # What fracture.js needs, handed over as one JSON blob (json_script).
    page_data = {
        "image": image.pk,
        "dataset": dataset.pk,
        "canLabel": can_label,
        "label": label_snapshot(mine),
        "version": mine.version if mine else 0,
        "progress": selectors.fracture_progress(dataset=dataset, user=request.user),
        "urls": _page_urls(dataset, image, neighbours, next_unlabelled),
        "prefetch": prefetch,
        "zoom": deepzoom_urls(image, outlines=False),
    }
    return render(
        request,
        "annotator/fracture_label.html",
        {
            "dataset": dataset,
            "image": image,
            "mine": mine,
            "others": [label for label in labels if label.expert_id != request.user.pk],
            "blind": not user_sees_others_labels(request.user, dataset),
            "can_label": can_label,
            "progress": page_data["progress"],
            "neighbours": neighbours,
            "prefetch": prefetch,
            "page_data": page_data,
            "shortcuts": SHORTCUTS,
            "displacements": DISPLACEMENTS,
            "locations": [(value, text, LOCATION_KEYS[value]) for value, text in FractureDescriptor.Location.choices],
        },
    )


def _page_urls(
    dataset: Dataset, image: Image, neighbours: dict[str, int | None], next_unlabelled: int | None
) -> dict[str, str]:
    """The API and page URLs fracture.js calls or goes to; "" for a neighbour that does not exist."""

    def page(image_id: int | None) -> str:
        return reverse("fracture-label", args=[dataset.pk, image_id]) if image_id else ""

    return {
        "save": reverse("api:fracture-label-save", args=[image.pk]),
        "queue": reverse("api:fracture-queue", args=[dataset.pk]),
        "queuePage": reverse("fracture-queue", args=[dataset.pk]),
        "previous": page(neighbours["previous"]),
        "next": page(neighbours["next"]),
        "nextUnlabelled": page(next_unlabelled) or reverse("fracture-queue", args=[dataset.pk]),
    }
