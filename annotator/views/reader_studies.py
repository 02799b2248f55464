"""Reader-study pages: the admin's New-study form, a reader's rating page (it saves through the JSON API,
``annotator.api.reader_studies``) and the results for admins and researchers."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse

from ..errors import ApplicationError
from ..models import Job
from ..permissions import user_is_admin
from ..selectors import reader_studies as selectors
from ..services.jobs import job_create
from ..services.reader_studies import StudyDesign
from ..services.reader_study_jobs import reader_study_job_params
from ..study_forms import ReaderStudyForm

__all__ = ["study_new", "study_rate", "study_results"]

# The keyboard map, shown on the page; reader_study.js holds the same keys.
SHORTCUTS: list[tuple[list[str], str]] = [
    (["1", "…", "9", "0"], "Score 1 to 9, 0 for 10 (saved at once; then the next item)"),
    (["Tab"], "A pair of sentences: switch between the left and the right one"),
    (["→", "n"], "Next item"),
    (["←", "p"], "Previous item"),
    (["u"], "First item not rated yet"),
]


def study_new(request: HttpRequest) -> HttpResponse:
    if not user_is_admin(request.user):
        return HttpResponseForbidden("Only admins can create reader studies.")
    form = ReaderStudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            design = StudyDesign(created_by=request.user, **form.design_arguments())
            params = reader_study_job_params(design, **form.selection_arguments())
            job = job_create(kind=Job.Kind.READER_STUDY, dataset=design.dataset, params=params, created_by=request.user)
        except ApplicationError as exc:
            field = exc.extra.get("field")
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            # A worker computes the items' content (a saliency map and a sentence per image): follow it there.
            messages.success(request, f"Reader study {design.name!r}: its {len(params['images'])} images are queued.")
            return redirect("job-detail", pk=job.pk)
    return render(request, "annotator/study_new.html", {"form": form})


def study_rate(request: HttpRequest, pk: int) -> HttpResponse:
    study = selectors.study_get(pk=pk)
    assignment = selectors.study_assignment(study=study, user=request.user)
    if assignment is None:
        return HttpResponseForbidden("You are not a reader of this study.")
    view = selectors.reader_view(study=study, assignment=assignment, media_url=settings.MEDIA_URL)
    # What reader_study.js needs, as one JSON blob; nothing in it names an arm's source.
    page_data = {
        **view,
        "urls": {
            "items": reverse("api:study-items", args=[study.pk]),
            "rating": reverse("api:study-rating-save", args=[study.pk, "KEY"]),
        },
    }
    return render(
        request, "annotator/study_rate.html", {"study": study, "page_data": page_data, "shortcuts": SHORTCUTS}
    )


def study_results(request: HttpRequest, pk: int) -> HttpResponse:
    if not selectors.study_results_visible(request.user):
        return HttpResponseForbidden("Only admins and researchers see a study's results.")
    study = selectors.study_get(pk=pk)
    return render(
        request, "annotator/study_results.html", {"study": study, "results": selectors.study_results(study=study)}
    )
