"""Pages through Django's test client: login required, roles, media served only to signed-in users."""

from __future__ import annotations

import pytest

from annotator.models import Job
from tests.factories import PASSWORD, DatasetFactory, ImageFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/", "/datasets/1/", "/media/images/x.png"])
def test_everything_requires_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_then_dashboard_lists_datasets(client, expert_user):
    DatasetFactory(name="Screening 2026")
    response = client.post("/accounts/login/", {"username": expert_user.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/").content.decode()
    assert "Screening 2026" in page
    assert "Extract patches" not in page  # experts do not start jobs


def test_dataset_page_and_its_media(client, admin_user):
    image = ImageFactory(dataset=DatasetFactory(name="Cohort A"), label="benign")
    client.force_login(admin_user)
    page = client.get(f"/datasets/{image.dataset.pk}/").content.decode()
    assert "Cohort A" in page and image.patient_id in page
    media = client.get(f"/media/{image.file.name}")
    assert media.status_code == 200 and media["Content-Type"] == "image/png"
    assert media["Cache-Control"] == "private, max-age=3600"  # a patient's image: never in a shared cache
    assert client.get("/media/../config/settings.py").status_code == 404


def test_only_admins_start_jobs_from_pages(client, expert_user, admin_user, django_capture_on_commit_callbacks):
    dataset = DatasetFactory()
    client.force_login(expert_user)
    assert client.post(f"/datasets/{dataset.pk}/extract-patches/").status_code == 403
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/datasets/{dataset.pk}/extract-patches/")
    assert response.status_code == 302
    assert Job.objects.get().kind == Job.Kind.EXTRACT_PATCHES


def test_new_job_page_is_for_admins_and_starts_a_training_job(
    client, expert_user, admin_user, django_capture_on_commit_callbacks
):
    from annotator.models import Patch

    image = ImageFactory()
    Patch.objects.create(image=image, x0=0, y0=0, x1=16, y1=16, label="normal", tissue_fraction=1.0)
    client.force_login(expert_user)
    assert client.get("/jobs/new/").status_code == 403
    client.force_login(admin_user)
    page = client.get("/jobs/new/").content.decode()
    assert "random weights" in page and "No pretrained weights are downloaded" in page
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/jobs/new/", {"kind": "train", "dataset": image.dataset.pk, "architecture": "resnet34", "epochs": 3}
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get(kind="train")
    assert job.params["architecture"] == "resnet34" and job.params["epochs"] == 3 and job.params["weights_file"] == ""
    assert job.params["validation_fraction"] == 0.1  # the default carve-out of training patients


def test_new_job_page_shows_service_errors(client, admin_user):
    dataset = DatasetFactory()  # no patches yet
    client.force_login(admin_user)
    page = client.post("/jobs/new/", {"kind": "train", "dataset": dataset.pk}).content.decode()
    assert "has no patches yet: run patch extraction first" in page
    assert not Job.objects.exists()


def test_model_page_shows_curves_report_and_units(client, expert_user):
    from tests.factories import TrainedModelFactory, UnitFactory

    trained = TrainedModelFactory(
        mining={
            "units": 2,
            "patches": 100,
            "splits": ["test"],
            "top_n": 64,
            "quantile": 0.005,
            "coverage": {"normal": 0.5, "benign": 0.6, "malignant": 0.7},
        }
    )
    UnitFactory(model=trained, channel=7, selected_for="malignant", selection_rank=1, suggested_iou=0.21)
    client.force_login(expert_user)
    page = client.get(f"/models/{trained.pk}/").content.decode()
    assert page.count("<svg") == 3  # loss, validation AUC, ROC
    assert "random weights" in page
    malignant = trained.metrics["per_class"]["malignant"]
    assert f"{malignant['auc']:.3f}" in page
    assert "layer4:7" in page and "70%" in page


def test_model_page_names_the_split_of_each_figure(client, expert_user):
    from tests.factories import TrainedModelFactory

    trained = TrainedModelFactory(mining={"units": 512, "patches": 40, "splits": ["test"], "top_n": 64})
    trained.metrics["splits"] = {
        "best_epoch": "validation (10% of training patients)",
        "metrics": "test",
        "validation_fraction": 0.1,
        "validation_seed": 0,
        "sizes": {
            split: {"patients": patients, "patches": patches}
            for split, patients, patches in (("train", 36, 900), ("validation", 4, 101), ("test", 5, 123))
        },
    }
    trained.save()
    client.force_login(expert_user)
    page = client.get(f"/models/{trained.pk}/").content.decode()
    assert "the train split less the validation carve-out (36 patients, 900 patches)" in page
    assert "best epoch (3) from the validation (10% of training patients): 4 patients, 101 patches" in page
    assert "metrics table from the test split (5 patients, 123 patches)" in page
    assert "Mined on the test split(s):" in page and "including hold-out" not in page

    # A model trained before splits were recorded says so; mining over hold-out is flagged.
    del trained.metrics["splits"]
    trained.mining["splits"] = ["test", "holdout"]
    trained.save()
    page = client.get(f"/models/{trained.pk}/").content.decode()
    assert "a split this model did not record" in page
    assert "Mined on the test + holdout split(s) (including hold-out" in page


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("/datasets/1/", "/datasets/1/"),  # a page of this site: followed
        ("http://testserver/jobs/new/", "http://testserver/jobs/new/"),  # this host spelled out: followed too
        ("https://evil.example/", "/"),  # another host: never (open redirect)
        ("//evil.example/path", "/"),  # scheme-relative: another host too
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
def test_job_cancel_is_admin_only_and_follows_only_same_site_next(client, expert_user, admin_user, next_url, lands_on):
    job = Job.objects.create(kind=Job.Kind.EXTRACT_PATCHES, dataset=DatasetFactory())
    client.force_login(expert_user)
    assert client.post(f"/jobs/{job.pk}/cancel/", {"next": next_url}).status_code == 403
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED  # the refused request changed nothing
    client.force_login(admin_user)
    response = client.post(f"/jobs/{job.pk}/cancel/", {"next": next_url})
    assert response.status_code == 302 and response["Location"] == lands_on
    job.refresh_from_db()
    assert (job.status, job.message) == (Job.Status.CANCELLED, "Cancelled before it started")


def test_media_never_serves_a_file_outside_the_media_root(client, expert_user, media_root):
    """A real file sits beside the media root, where `..` or a symlink inside the root would reach it."""
    secret = media_root.parent / "secret.txt"
    secret.write_text("patient list")
    (media_root / "inside.txt").write_text("fine")
    (media_root / "link.txt").symlink_to(secret)
    client.force_login(expert_user)
    assert client.get("/media/inside.txt").status_code == 200
    for path in ("/media/../secret.txt", "/media/%2e%2e/secret.txt", "/media/link.txt", f"/media/{secret}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"patient list" not in b"".join(getattr(response, "streaming_content", [response.content]))


def _outlined_mammogram():
    """A mammogram (its dataset blind, the default) with a finding: outlines on disk and a mask."""
    import numpy as np

    from annotator.files import write_png_atomic
    from tests.factories import FindingFactory

    image = ImageFactory(dataset=DatasetFactory(name="Blind cohort"), label="malignant")
    image.overlay = write_png_atomic("overlays/outlines-p1.png", np.zeros((image.height, image.width, 4), np.uint8))
    image.save()
    return image, FindingFactory(image=image)


def test_a_blind_expert_sees_mammograms_without_labels_or_outlines_until_an_admin_opens_them(
    client, expert_user, researcher_user
):
    image, finding = _outlined_mammogram()
    page_url, overlay = f"/datasets/{image.dataset.pk}/", f"/media/{image.overlay.name}"
    client.force_login(researcher_user)  # researchers always see the truth
    page = client.get(page_url).content.decode()
    assert overlay in page and 'class="badge label-malignant"' in page and "toggle-outlines" in page
    assert client.get(overlay).status_code == 200 and client.get(f"/media/{finding.mask.name}").status_code == 200
    client.force_login(expert_user)
    page = client.get(page_url).content.decode()
    assert image.patient_id in page  # the thumbnail itself is no truth
    assert overlay not in page and 'class="badge label-malignant"' not in page and "toggle-outlines" not in page
    assert "hidden from experts while the dataset is blind" in page
    # The files are no key: their names, however spelled, are refused as if they did not exist.
    for name in (image.overlay.name, image.overlay.name.replace("/", "/./"), finding.mask.name):
        assert client.get(f"/media/{name}").status_code == 404, name
    assert client.get(f"/media/{image.file.name}").status_code == 200  # the pixels are no truth
    image.dataset.annotation_blind = False
    image.dataset.save()
    page = client.get(page_url).content.decode()
    assert overlay in page and 'class="badge label-malignant"' in page
    assert client.get(overlay).status_code == 200 and client.get(f"/media/{finding.mask.name}").status_code == 200


def test_the_model_page_shows_the_sentence_examples_truth_only_to_who_sees_it(client, expert_user, admin_user):
    from annotator.models import Dataset, SentenceModel
    from tests.factories import JobFactory, TrainedModelFactory

    hips = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"], annotation_blind=False)
    hip = ImageFactory(dataset=hips, split="test")
    trained = TrainedModelFactory(dataset=hips, patch_params={"whole_image": True})
    example = {"image": hip.pk, "generated": "zz generated sentence", "truth": "zz truth sentence"}
    SentenceModel.objects.create(
        job=JobFactory(kind=Job.Kind.CAPTION, dataset=hips),
        classifier=trained,
        dataset=hips,
        checkpoint="checkpoints/none.pt",
        metrics={"examples": [example]},
    )
    client.force_login(admin_user)
    assert "zz truth sentence" in client.get(f"/models/{trained.pk}/").content.decode()
    client.force_login(expert_user)  # hip truth stays hidden from experts, open dataset or not
    page = client.get(f"/models/{trained.pk}/").content.decode()
    assert "zz generated sentence" in page and "zz truth sentence" not in page
