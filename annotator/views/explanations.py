"""Explanation pages: an image explained (dataset image or upload), the upload form, and the printable
report of a split's batch explanations."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from mining.networks import network_layers
from mining.sentence_parse import sentence_from_tokens, sentence_words

from ..api.inputs import EXPORT_FORMATS
from ..errors import ApplicationError
from ..forms import UploadForm
from ..models import Explanation, FractureDescriptor, Image, TrainedModel
from ..permissions import user_sees_others_labels, user_sees_truth
from ..selectors import explanations as selectors
from ..selectors import trained_model_get, trained_model_list
from ..services.captioning import image_sentence_attention
from ..services.explanations import explanation_get
from ..services.renditions import rendition_name
from ..services.uploads import upload_create
from ..streaming import stream_export
from .deepzoom import deepzoom_urls

REPORT_LIMIT = 200  # images per printed report


def _chosen(request: HttpRequest, models: Any) -> tuple[TrainedModel | None, str]:
    wanted = request.GET.get("model", "")
    trained = models.filter(pk=wanted).first() if wanted.isdigit() else None
    method = request.GET.get("method", Explanation.Method.CAM)
    if method not in Explanation.Method.values:
        method = Explanation.Method.CAM
    return trained or models.first(), method


def _explained(request: HttpRequest, *, models: Any, **target: Any) -> dict[str, Any]:
    """What the explanation part of the page shows, for an image or an upload."""
    trained, method = _chosen(request, models)
    context: dict[str, Any] = {
        "models": models,
        "model": trained,
        "method": method,
        "methods": Explanation.Method.choices,
    }
    if trained is None:
        return context
    try:
        explanation = explanation_get(trained=trained, method=method, **target)
    except ApplicationError as exc:
        context["error"] = exc.message
        return context
    units = selectors.viewer_units(explanation=explanation, user=request.user)
    context.update(
        explanation=explanation,
        units=units,
        text=selectors.viewer_text(explanation=explanation, units=units),
        scores=[(name, explanation.scores[name]) for name in trained.classes],
        decided_score=explanation.scores[explanation.decided],
        whole_image=bool(trained.patch_params.get("whole_image")),
        feature_layer=network_layers(trained.architecture)[0],  # units are its channels
    )
    context.update(_generated(trained, **target))
    return context


def _generated(trained: TrainedModel, **target: Any) -> dict[str, Any]:
    """The newest sentence generator on ``trained``'s features, and its sentence for the image, if any."""
    sentence_model = trained.sentence_models.order_by("-created_at", "-id").first()
    if sentence_model is None:
        return {}
    item = target.get("image") or target["upload"]
    try:
        sentence = image_sentence_attention(model=sentence_model, image=item)
    except (OSError, ValueError) as exc:  # a checkpoint gone or unreadable: say so, keep the page
        return {"sentence_model": sentence_model, "sentence_error": f"no sentence: {exc}"}
    tokens = sentence.caption.tokens
    return {
        "sentence_model": sentence_model,
        "generated": sentence_from_tokens(tokens),
        # Each shown word with its token's index, and every token's attention heat for the hover.
        "generated_words": sentence_words(tokens),
        "attention": {"grid": list(sentence.grid), "heats": sentence.word_heats(), "tokens": list(tokens)},
    }


def image_detail(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(Image.objects.select_related("dataset"), pk=pk)
    sees_truth = user_sees_truth(request.user, image.dataset)
    context = _explained(request, models=selectors.models_for_image(image=image), image=image)
    own = FractureDescriptor.objects.filter(image=image, expert_id=request.user.pk).first()
    context.update(
        image=image,
        dataset=image.dataset,
        display=rendition_name(image),
        zoom=deepzoom_urls(image, outlines=sees_truth),
        sees_truth=sees_truth,
        findings=list(image.findings.prefetch_related("concepts")) if sees_truth else [],
        own_sentence=own.sentence if own else "",
        sees_others=user_sees_others_labels(request.user, image.dataset),
    )
    return render(request, "annotator/image_detail.html", context)


def upload_detail(request: HttpRequest, pk: int) -> HttpResponse:
    upload = get_object_or_404(selectors.upload_visible(user=request.user), pk=pk)
    context = _explained(request, models=trained_model_list(), upload=upload)
    context.update(upload=upload, display=rendition_name(upload))
    context.update(zoom=deepzoom_urls(upload, outlines=False))
    return render(request, "annotator/image_detail.html", context)


def explain_upload(request: HttpRequest) -> HttpResponse:
    """Upload an image that belongs to no dataset and see it explained."""
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            upload = upload_create(owner=request.user, uploaded=form.cleaned_data["file"])
        except ApplicationError as exc:
            form.add_error("file", exc.message)
        else:
            model = form.cleaned_data.get("model")
            target = f"?model={model.pk}" if model else ""
            return redirect(f"{reverse('upload-detail', args=[upload.pk])}{target}")
    status = 400 if form.errors else 200
    uploads = selectors.upload_visible(user=request.user).filter(owner_id=request.user.pk)[:20]
    return render(request, "annotator/explain_upload.html", {"form": form, "uploads": uploads}, status=status)


def explanations_exportable(user: Any, trained: TrainedModel) -> bool:
    """Whether ``user`` may export or print ``trained``'s explanations: they carry every image's truth and the
    units' names as all the experts gave them, so only where both rules show ``user`` both on the model's
    dataset (admins and researchers always; experts never on hip radiographs, on mammograms once opened)."""
    return user_sees_truth(user, trained.dataset) and user_sees_others_labels(user, trained.dataset)


def explanation_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse | StreamingHttpResponse:
    trained = trained_model_get(pk=pk)
    if not explanations_exportable(request.user, trained):
        return HttpResponseForbidden("Only admins and researchers can export explanations of a blind dataset.")
    if fmt not in EXPORT_FORMATS:
        return HttpResponse("the format must be csv or json", status=400, content_type="text/plain")
    rows = selectors.explanations_of(
        trained=trained, split=request.GET.get("split", ""), method=request.GET.get("method", "")
    )
    classes = list(trained.classes)
    return stream_export(
        fmt,
        selectors.explanation_export_rows(rows=rows),
        f"explanations-model{trained.pk}",
        selectors.explanation_csv_header(classes),
        lambda records: selectors.explanation_csv_rows(records, classes),
    )


def explanation_report(request: HttpRequest, pk: int) -> HttpResponse:
    """The printable report: one explained image per page (print stylesheet)."""
    trained = trained_model_get(pk=pk)
    if not explanations_exportable(request.user, trained):
        return HttpResponseForbidden("Only admins and researchers can print explanation reports of a blind dataset.")
    split = request.GET.get("split", Image.Split.HOLDOUT)
    method = request.GET.get("method", Explanation.Method.CAM)
    rows = list(selectors.explanations_of(trained=trained, split=split, method=method)[:REPORT_LIMIT])
    pages = []
    for explanation in rows:
        assert explanation.image is not None
        units = selectors.viewer_units(explanation=explanation, user=request.user)
        pages.append(
            {
                "explanation": explanation,
                "image": explanation.image,
                "display": rendition_name(explanation.image),
                "units": units,
                "text": selectors.viewer_text(explanation=explanation, units=units),
            }
        )
    return render(
        request,
        "annotator/explanation_report.html",
        {"model": trained, "split": split, "method": method, "pages": pages, "limit": REPORT_LIMIT},
    )
