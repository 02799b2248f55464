"""Unit pages: the unit list per class, the survey page, the agreement page and export downloads."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from ..api.units import unit_export_response
from ..errors import ApplicationError
from ..permissions import user_can_annotate, user_is_admin, user_sees_others_labels, user_sees_truth
from ..selectors import trained_model_get
from ..selectors import units as unit_selectors
from ..selectors.core import unit_previews
from ..serializers.units import UnitAnnotationSerializer, UnitConsensusSerializer
from .deepzoom import deepzoom_urls

STATUSES = [
    ("", "any"),
    ("todo", "not answered by me"),
    ("mine", "answered by me"),
    ("annotated", "answered by anyone"),
    ("unannotated", "answered by nobody"),
]


def unit_list(request: HttpRequest, pk: int) -> HttpResponse:
    trained = trained_model_get(pk=pk)
    filters = {key: request.GET.get(key, "") for key in ("class", "status", "concept", "suggested", "q")}
    units = unit_selectors.unit_list(
        trained=trained,
        user=request.user,
        selected_for=filters["class"],
        status=filters["status"],
        concept=filters["concept"],
        suggested=filters["suggested"],
        search=filters["q"],
        selected_only=request.GET.get("all") != "1",
    )
    sees_all = user_sees_others_labels(request.user, trained.dataset)
    shown = list(units[:600])
    previews = unit_previews([u.pk for u in shown])
    return render(
        request,
        "annotator/unit_list.html",
        {
            "model": trained,
            "rows": [{"unit": u, "previews": previews.get(u.pk, [])} for u in shown],
            "filters": filters,
            "statuses": STATUSES,
            "progress": unit_selectors.unit_progress(trained=trained, user=request.user),
            "agreement": unit_selectors.model_agreement(trained=trained) if sees_all else None,
            "lexicon": unit_selectors.concept_lexicon(),
            "sees_all": sees_all,
            "can_annotate": user_can_annotate(request.user),
            "show_all": request.GET.get("all") == "1",
        },
    )


def unit_survey(request: HttpRequest, pk: int) -> HttpResponse:
    unit = unit_selectors.unit_get(pk=pk)
    survey = unit_selectors.unit_survey(unit=unit, user=request.user)
    sees_truth = user_sees_truth(request.user, unit.model.dataset)
    for top in survey["activations"]:  # the context image is the image's deep zoom pyramid, outlined if allowed
        top.zoom = deepzoom_urls(top.image, outlines=sees_truth)
    mine = survey["mine"]
    boot = {
        "unitId": unit.pk,
        "saveUrl": reverse("api:unit-annotation-save", args=[unit.pk]),
        "consensusUrl": reverse("api:unit-consensus", args=[unit.pk]),
        "mine": UnitAnnotationSerializer(mine).data if mine else None,
        "consensus": UnitConsensusSerializer(survey["consensus"]).data if survey["consensus"] else None,
        "suggested": unit.suggested_concept.code if unit.suggested_concept else "",
        "lexicon": unit_selectors.concept_lexicon(),
        "neighbours": {
            k: (reverse("unit-survey", args=[v]) if v and k in ("previous", "next", "next_unannotated") else v)
            for k, v in survey["neighbours"].items()
        },
        "listUrl": reverse("unit-list", args=[unit.model_id]),
        "canAnnotate": user_can_annotate(request.user),
        "isAdmin": user_is_admin(request.user),
    }
    return render(
        request,
        "annotator/unit_survey.html",
        {
            **survey,
            "boot": json.loads(json.dumps(boot, default=str)),
            "classes": list(unit.model.classes),
            "can_annotate": boot["canAnnotate"],
            "is_admin": boot["isAdmin"],
            "sees_truth": sees_truth,  # the context images' labels and the patches' (finding) labels
        },
    )


def unit_next_unannotated(request: HttpRequest, pk: int) -> HttpResponse:
    """The first selected unit of the model I have not answered (or the list when all are done)."""
    trained = trained_model_get(pk=pk)
    todo = unit_selectors.unit_list(
        trained=trained, user=request.user, status="todo", selected_for=request.GET.get("class", "")
    ).first()
    return redirect("unit-survey", todo.pk) if todo else redirect(f"{reverse('unit-list', args=[pk])}?status=mine")


def unit_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse | StreamingHttpResponse:
    trained = trained_model_get(pk=pk)
    try:
        return unit_export_response(
            trained=trained, user=request.user, fmt=fmt, everything=request.GET.get("all") == "1"
        )
    except ApplicationError as exc:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain")
