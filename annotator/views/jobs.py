"""The job page (parameters, timings, worker, device, log tail, error, live training curves) and its
Resume button: a few lines over selectors and services; the page's live parts are static/annotator/job.js."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ..errors import ApplicationError
from ..models import Job
from ..permissions import user_is_admin
from ..selectors.jobs import job_get
from ..serializers.core import JobSerializer
from ..services.training_resume import training_job_resume


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_get(pk=pk)
    # The page starts from what the API gives this user (the same hiding of truth and tracebacks), and
    # job.js polls the API for the rest.
    data = JobSerializer(job, context={"request": request}).data
    return render(
        request,
        "annotator/job_detail.html",
        {"job": job, "data": data, "is_admin": user_is_admin(request.user), "is_training": job.kind == Job.Kind.TRAIN},
    )


@require_POST
def job_resume_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not user_is_admin(request.user):
        return HttpResponseForbidden("Only admins can resume jobs.")
    job = get_object_or_404(Job, pk=pk)
    try:
        resumed = training_job_resume(job=job, created_by=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("job-detail", pk=job.pk)
    messages.success(request, f"Job #{job.pk} resumed as job #{resumed.pk}.")
    return redirect("job-detail", pk=resumed.pk)
