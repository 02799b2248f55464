"""A reader study is created by a job (issue 11 item 7): the New-study form checks the design and queues
it, a worker computes the items' content with progress and cancel, and the study and the job's success
commit together; a failed or cancelled job keeps no study and no picture."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotator.files import media_storage, storage_file_names
from annotator.models import Image, Job, ReaderStudy, StudyItem
from annotator.services import reader_study_jobs
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from annotator.services.reader_studies import StudyDesign
from annotator.services.reader_study_jobs import reader_study_job_params
from tests.annotator.reader_study_world import planted_study
from tests.annotator.test_browser_dashboard import ARTIFACTS, sign_in
from tests.annotator.test_caption_job import classifier  # noqa: F401  (the fixture)
from tests.factories import client_for

pytestmark = pytest.mark.django_db


def _form(classifier, reader, **changes):  # noqa: F811
    return {
        "name": "saliency study",
        "dataset": classifier.dataset.pk,
        "classifier": classifier.pk,
        "arms": ["saliency"],
        "split": "test",
        "seed": 0,
        "readers": [reader.pk],
        **changes,
    }


def _pictures() -> list[str]:
    return [name for name in storage_file_names(media_storage(), "reader_studies") if name.endswith(".png")]


def test_the_form_queues_a_job_whose_worker_creates_the_study(
    classifier,  # noqa: F811
    admin_user,
    expert_user,
    django_capture_on_commit_callbacks,
):
    client = client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("study-new"), _form(classifier, expert_user))
    job = Job.objects.get(kind=Job.Kind.READER_STUDY)
    assert response.status_code == 302 and response["Location"] == reverse("job-detail", args=[job.pk])
    assert not ReaderStudy.objects.exists()  # nothing computed in the request
    test_images = list(Image.objects.filter(dataset=classifier.dataset, split="test").order_by("pk"))
    assert job.params["images"] == [image.pk for image in test_images] and job.params["readers"] == [expert_user.pk]
    assert job.params["selection"] == {"split": "test", "sample": None, "seed": 0}

    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    job.refresh_from_db()
    study = ReaderStudy.objects.get(pk=job.result["reader_study"])
    assert (study.name, study.arms, study.created_by) == ("saliency study", ["saliency"], admin_user)
    assert sorted(StudyItem.objects.filter(study=study).values_list("image_id", flat=True)) == [
        image.pk for image in test_images
    ]
    assert job.result["items"] == len(test_images) == len(_pictures())
    assert job.progress == 1.0
    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert reverse("study-results", args=[study.pk]) in page

    # The same name again is refused on the form, before any job.
    again = client.post(reverse("study-new"), _form(classifier, expert_user)).content.decode()
    assert "exists already" in again and Job.objects.filter(kind=Job.Kind.READER_STUDY).count() == 1


def test_a_cancelled_study_job_keeps_nothing(classifier, admin_user, expert_user, django_capture_on_commit_callbacks):  # noqa: F811
    design = StudyDesign("cancelled", classifier.dataset, classifier, None, ["saliency"], [expert_user], admin_user)
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(
            kind=Job.Kind.READER_STUDY,
            dataset=classifier.dataset,
            params=reader_study_job_params(design, split="train"),
        )
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert job_run(job_id=job.pk) == Job.Status.CANCELLED
    assert not ReaderStudy.objects.exists() and _pictures() == []


def test_a_study_job_that_fails_at_the_end_deletes_its_pictures(
    classifier,  # noqa: F811
    admin_user,
    expert_user,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    design = StudyDesign("late clash", classifier.dataset, classifier, None, ["saliency"], [expert_user], admin_user)
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(
            kind=Job.Kind.READER_STUDY, dataset=classifier.dataset, params=reader_study_job_params(design, split="test")
        )
    computed = reader_study_jobs.study_image_content
    images = list(Image.objects.filter(dataset=classifier.dataset, split="test"))

    def content_then_clash(image, *args, **kwargs):
        # While the worker computes, another admin takes the name: the store refuses it at the end.
        if not ReaderStudy.objects.filter(name="late clash").exists():
            planted_study(dataset=classifier.dataset, classifier=classifier, readers=[expert_user], images=images[:1])
            ReaderStudy.objects.filter(name="planted").update(name="late clash")
        return computed(image, *args, **kwargs)

    monkeypatch.setattr(reader_study_jobs, "study_image_content", content_then_clash)
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    assert "exists already" in Job.objects.get(pk=job.pk).error
    assert list(ReaderStudy.objects.values_list("name", flat=True)) == ["late clash"]  # only the other admin's
    assert _pictures() == []  # the failed job's item pictures are deleted


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_chromium_the_form_queues_the_study_and_the_job_page_links_it_when_a_worker_stored_it(
    classifier,  # noqa: F811
    live_server,
    celery_worker_process,
    browser_page,
    admin_user,
    expert_user,
):
    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    page.goto(f"{live_server.url}{reverse('study-new')}")
    page.fill("#id_name", "by a worker")
    page.select_option("#id_dataset", str(classifier.dataset.pk))
    page.select_option("#id_classifier", str(classifier.pk))
    for arm in ReaderStudy.Arm.values:  # the saliency arm alone: no sentence generator on this classifier
        page.set_checked(f'input[name="arms"][value="{arm}"]', arm == "saliency")
    page.select_option("#id_split", "test")
    page.check(f'input[name="readers"][value="{expert_user.pk}"]')
    page.click('button[type=submit]:has-text("Create study")')
    page.wait_for_url(f"{live_server.url}/jobs/*/")
    link = page.locator('[data-field="study-link"] a')
    link.wait_for(timeout=120_000)  # drawn by the page's poll once the worker stored the study
    job = Job.objects.get(kind=Job.Kind.READER_STUDY)
    assert job.status == Job.Status.SUCCEEDED, job.error
    study = ReaderStudy.objects.get(pk=job.result["reader_study"])
    assert study.name == "by a worker" and study.items.count() == job.result["items"] > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reader-study-job.png"), full_page=True)
    link.click()
    page.wait_for_url(f"{live_server.url}{reverse('study-results', args=[study.pk])}")
    assert "by a worker" in page.content()
