"""The browser import pages (admins): the form that uploads a zip or names a server folder, and one
import's page (live progress, cancel, its bad rows with their lines and reasons, the form again to retry)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from .. import selectors
from ..errors import ApplicationError
from ..forms import DatasetImportForm
from ..models import Job
from ..permissions import user_is_admin
from ..selectors.imports import import_folder_choices, import_summary
from ..services.import_jobs import dataset_import_job_create
from .upload_limits import SizeCappedUploadHandler

ONLY_ADMINS = "Only admins can import datasets."


@csrf_exempt  # only until the cap is in place: the CSRF check reads the body, so it runs in the inner view
def dataset_import_new(request: HttpRequest) -> HttpResponse:
    if not user_is_admin(request.user):
        return HttpResponseForbidden(ONLY_ADMINS)
    cap = SizeCappedUploadHandler(request, settings.IMPORT_UPLOAD_MAX_BYTES)
    request.upload_handlers = [cap, *request.upload_handlers]
    return _dataset_import_form(request, cap)


@csrf_protect
def _dataset_import_form(request: HttpRequest, cap: SizeCappedUploadHandler) -> HttpResponse:
    form = DatasetImportForm(request.POST or None, request.FILES or None, initial=_retry_initial(request))
    status = 200
    if request.method == "POST":
        if cap.refused:
            limit = settings.IMPORT_UPLOAD_MAX_BYTES
            form.add_error(None, f"the zip is over {limit:,} bytes, the largest upload this server accepts")
            status = 413
        elif form.is_valid():
            uploaded = form.cleaned_data["archive"] if form.cleaned_data["source"] == "upload" else None
            try:
                job = dataset_import_job_create(params=form.import_params(), uploaded=uploaded, created_by=request.user)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = exc.status
            else:
                return redirect("dataset-import-detail", pk=job.pk)
        else:
            status = 400
    return render(request, "annotator/dataset_import.html", _form_context(form), status=status)


def _retry_initial(request: HttpRequest) -> dict[str, Any]:
    """A retry keeps the failed import's settings (``?retry=<job id>``)."""
    job = Job.objects.filter(pk=request.GET.get("retry", "") or 0, kind=Job.Kind.IMPORT).first()
    if job is None:
        return {}
    keys = ("name", "kind", "layout", "seed", "folder")
    initial = {key: job.params[key] for key in keys if key in job.params}
    return {**initial, "source": "folder" if "folder" in job.params else "upload"}


def _form_context(form: DatasetImportForm) -> dict[str, Any]:
    return {
        "form": form,
        "roots": settings.IMPORT_ROOTS,
        "folders": import_folder_choices(settings.IMPORT_ROOTS),
        "max_bytes": settings.IMPORT_UPLOAD_MAX_BYTES,
    }


def dataset_import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    if not user_is_admin(request.user):
        return HttpResponseForbidden(ONLY_ADMINS)
    job = get_object_or_404(selectors.job_list(), pk=pk, kind=Job.Kind.IMPORT)
    dataset = job.dataset if job.status == Job.Status.SUCCEEDED else None
    context = {
        "job": job,
        "jobs": [job],
        "is_admin": True,
        "errors": job.result.get("errors", []) if job.status == Job.Status.FAILED else [],
        "dataset": dataset,
        "summary": import_summary(dataset) if dataset is not None else None,
    }
    return render(request, "annotator/dataset_import_detail.html", context)
