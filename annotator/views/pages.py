"""HTML pages: each a few lines over selectors and services."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .. import selectors
from ..errors import ApplicationError
from ..forms import JobStartForm
from ..models import Dataset, Image, Job
from ..permissions import user_is_admin, user_sees_truth
from ..selectors.reader_studies import study_list_for
from ..services.job_state import job_cancel
from ..services.jobs import job_create
from .explanations import explanations_exportable
from .redirects import next_page

IMAGES_PER_PAGE = 48


def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "annotator/dashboard.html",
        {
            "datasets": selectors.dataset_list(),
            "models": selectors.trained_model_list()[:20],
            "jobs": selectors.job_list()[:25],
            "is_admin": user_is_admin(request.user),
            "reader_studies": study_list_for(user=request.user)[:20],
        },
    )


def job_new(request: HttpRequest) -> HttpResponse:
    """The New-job page: admins start patch extraction, training or mining."""
    if not user_is_admin(request.user):
        return HttpResponseForbidden("Only admins can start jobs.")
    initial = {key: request.GET[key] for key in ("kind", "dataset", "model") if key in request.GET}
    form = JobStartForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            job = job_create(
                kind=form.cleaned_data["kind"],
                dataset=form.cleaned_data["dataset"],
                params=form.job_params(),
                created_by=request.user,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{job.get_kind_display()} queued as job #{job.pk}.")
            return redirect("dashboard")
    return render(request, "annotator/job_new.html", {"form": form, "has_weights_note": True})


def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    trained = get_object_or_404(selectors.trained_model_list(), pk=pk)
    return render(
        request,
        "annotator/model_detail.html",
        {
            "model": trained,
            "report": selectors.model_report(trained=trained),
            "is_admin": user_is_admin(request.user),
            "can_export": explanations_exportable(request.user, trained),  # exports carry the truth
            "sees_truth": user_sees_truth(request.user, trained.dataset),  # the sentence examples' truth
        },
    )


def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(selectors.dataset_list(), pk=pk)
    sees_truth = user_sees_truth(request.user, dataset)
    # A label filter would tell a blind expert the labels: it is only offered where the truth is visible.
    split, label = request.GET.get("split", ""), request.GET.get("label", "") if sees_truth else ""
    page = Paginator(selectors.image_list(dataset=dataset, split=split, label=label), IMAGES_PER_PAGE)
    return render(
        request,
        "annotator/dataset_detail.html",
        {
            "dataset": dataset,
            "summary": selectors.dataset_summary(dataset=dataset, user=request.user),
            "page": page.get_page(request.GET.get("page")),
            "split": split,
            "label": label,
            "splits": Image.Split.choices,
            "jobs": selectors.job_list(dataset=dataset)[:10],
            "is_admin": user_is_admin(request.user),
            "sees_truth": sees_truth,
        },
    )


@require_POST
def dataset_extract_patches(request: HttpRequest, pk: int) -> HttpResponse:
    if not user_is_admin(request.user):
        return HttpResponseForbidden("Only admins can start jobs.")
    dataset = get_object_or_404(Dataset, pk=pk)
    job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset, created_by=request.user)
    messages.success(request, f"Patch extraction for {dataset.name} queued as job #{job.pk}.")
    return redirect(next_page(request))


@require_POST
def job_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not user_is_admin(request.user):
        return HttpResponseForbidden("Only admins can cancel jobs.")
    try:
        job_cancel(job=get_object_or_404(Job, pk=pk))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(next_page(request))


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")
