"""Explanations through Django: computed once and cached per (image, model, method), named by the experts'
labels as each viewer may see them, the batch job and its summary, exports, and who sees what.

The model is a real (randomly initialised, seeded) resnet18 checkpoint on disk; the images are phantoms.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse

from annotator.models import Concept, Dataset, Explanation, Job, TrainedModel, Unit, UnitConsensus, UploadedImage
from annotator.selectors.explanations import unit_names
from annotator.services.explanations import explanation_get
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from annotator.services.renditions import display_size
from mining.phantoms import generate_mammogram_phantoms
from tests.factories import (
    DatasetFactory,
    FindingFactory,
    ImageFactory,
    TrainedModelFactory,
    UnitAnnotationFactory,
    UserFactory,
    client_for,
    random_model,
)

pytestmark = pytest.mark.django_db
CLASSES = ["normal", "benign", "malignant"]


@pytest.fixture
def explained(media_root: Path) -> dict:
    """A dataset of 6 hold-out phantoms (findings with concepts), a model with all 512 units stored."""
    dataset = DatasetFactory(classes=CLASSES)
    trained = random_model(dataset=dataset)
    Unit.objects.bulk_create(Unit(model=trained, layer="layer4", channel=c) for c in range(512))
    spiculated = Concept.objects.get(code="mass_margin.spiculated")
    images = []
    for phantom in generate_mammogram_phantoms(6, seed=4):
        image = ImageFactory(dataset=dataset, pixels=phantom.pixels, label=phantom.label, split="holdout")
        image.metadata = {"report": phantom.metadata["report"]}
        image.save(update_fields=["metadata"])
        if phantom.label != "normal":
            finding = FindingFactory(image=image, pathology=phantom.label)
            finding.concepts.add(spiculated)
        images.append(image)
    return {"dataset": dataset, "model": trained, "images": images, "concept": spiculated}


def _media_exists(media_root: Path, name: str) -> bool:
    return bool(name) and (media_root / name).is_file()


def test_an_explanation_is_computed_once_then_cached_with_its_maps_on_disk(explained, media_root):
    image, trained = explained["images"][0], explained["model"]
    first = explanation_get(trained=trained, image=image)
    again = explanation_get(trained=trained, image=image)
    assert again.pk == first.pk and Explanation.objects.count() == 1
    assert set(first.scores) == set(CLASSES) and first.decided in CLASSES
    assert first.decided == max(first.scores, key=first.scores.get)
    assert len(first.units) == 8 and first.map_size == list(display_size(image.height, image.width))
    influences = [u["influence"] for u in first.units]
    assert influences == sorted(influences, reverse=True)
    assert all(u["unit"] == Unit.objects.get(model=trained, channel=u["channel"]).pk for u in first.units)
    assert _media_exists(media_root, first.class_map.name)
    assert all(_media_exists(media_root, u["map"]) for u in first.units)
    assert first.text.startswith(f"{first.decided.capitalize()} (")
    # Another method is another explanation of the same image.
    gradcam = explanation_get(trained=trained, image=image, method="gradcam")
    assert gradcam.pk != first.pk and gradcam.decided == first.decided
    assert [u["channel"] for u in gradcam.units] == [u["channel"] for u in first.units]


def test_unit_names_are_consensus_then_majority_then_suggestion(explained):
    trained = explained["model"]
    units = {u.channel: u for u in Unit.objects.filter(model=trained, channel__in=[1, 2, 3, 4, 5])}
    oval = Concept.objects.get(code="mass_shape.oval")
    spiculated = explained["concept"]
    for channel in (1, 2, 3, 4):
        Unit.objects.filter(pk=units[channel].pk).update(suggested_concept=oval, suggested_iou=0.1)
    UnitConsensus.objects.create(unit=units[1], recognizable="yes", concept=spiculated)
    experts = [UserFactory(groups=["expert"]) for _ in range(3)]
    for expert in experts[:2]:  # unit 2: two of three experts agree on spiculated
        UnitAnnotationFactory(unit=units[2], expert=expert)
    UnitAnnotationFactory(unit=units[2], expert=experts[2], recognizable="no", phenomena=[])
    UnitAnnotationFactory(unit=units[3], expert=experts[0])  # unit 3: one for, one against: no majority
    UnitAnnotationFactory(unit=units[3], expert=experts[1], recognizable="no", phenomena=[])
    UnitConsensus.objects.create(unit=units[4], recognizable="no")  # unit 4: experts said not recognisable

    names = unit_names(trained=trained)
    assert (names[1].label, names[1].source) == ("spiculated (mass margin)", "consensus")
    assert (names[2].label, names[2].source) == ("spiculated (mass margin)", "experts")
    assert (names[3].label, names[3].source) == ("oval (mass shape)", "suggested")
    assert 4 not in names and 5 not in names

    # A blind expert never learns the other experts' majority: unit 2 goes by its suggestion for them.
    blind = unit_names(trained=trained, user=UserFactory(groups=["expert"]))
    assert (blind[2].label, blind[2].source) == ("oval (mass shape)", "suggested")
    assert blind[1].source == "consensus"
    admin_view = unit_names(trained=trained, user=UserFactory(groups=["admin"]))
    assert admin_view[2].source == "experts"


def test_the_image_page_shows_the_decision_text_maps_and_unit_row(explained, admin_user):
    image = explained["images"][1]
    client = client_for(admin_user)
    page = client.get(reverse("image-detail", args=[image.pk]))
    assert page.status_code == 200
    explanation = Explanation.objects.get(image=image, method="cam")
    html = page.content.decode()
    assert explanation.text.split(" Most")[0] in html
    assert reverse("media", args=[explanation.class_map.name]) in html
    assert html.count('class="unit-card"') == 8
    assert reverse("unit-survey", args=[explanation.units[0]["unit"]]) in html
    assert client.get(reverse("image-detail", args=[image.pk]), {"method": "smoothgrad"}).status_code == 200
    assert Explanation.objects.filter(image=image, method="smoothgrad").count() == 1
    assert client.get(reverse("image-detail", args=[image.pk]), {"method": "nonsense"}).status_code == 200
    assert Explanation.objects.filter(image=image).count() == 2  # an unknown method falls back to CAM


def test_the_image_page_without_a_model_says_so(admin_user, media_root):
    image = ImageFactory(dataset=DatasetFactory(classes=CLASSES))
    page = client_for(admin_user).get(reverse("image-detail", args=[image.pk]))
    assert page.status_code == 200 and b"No model has been trained" in page.content


def test_the_api_returns_the_explanation_with_names_the_viewer_may_see(explained, expert_user):
    image, trained = explained["images"][2], explained["model"]
    channel = explanation_get(trained=trained, image=image).units[0]["channel"]
    unit = Unit.objects.get(model=trained, channel=channel)
    other = UserFactory(groups=["expert"])
    UnitAnnotationFactory(unit=unit, expert=other)  # another expert's name: hidden from a blind expert
    url = reverse("api:image-explanation", args=[image.pk])
    as_expert = client_for(expert_user).get(url).json()
    as_admin = client_for(UserFactory(groups=["admin"])).get(url).json()
    assert as_expert["units"][0]["label"] is None and "spiculated" not in as_expert["text"]
    assert as_admin["units"][0]["label"] == "spiculated (mass margin)"
    assert as_admin["units"][0]["source"] == "experts" and "spiculated (mass margin)" in as_admin["text"]
    assert as_admin["class_map_url"].startswith("/media/")
    assert client_for(None).get(url).status_code in (401, 403)
    assert client_for(expert_user).get(url, {"method": "bogus"}).status_code == 400


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_uploaded_image_is_explained_and_private_to_its_uploader(explained, expert_user, media_root):
    from django.core.files.uploadedfile import SimpleUploadedFile

    pixels = next(iter(generate_mammogram_phantoms(1, seed=9))).pixels
    upload_file = SimpleUploadedFile("scan.png", _png_bytes(pixels), content_type="image/png")
    client = client_for(expert_user)
    response = client.post(reverse("api:upload-explain"), {"file": upload_file}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["upload"] and body["image"] is None and len(body["units"]) == 8
    url = reverse("api:upload-explanation", args=[body["upload"]])
    assert client.get(url).json()["id"] == body["id"]  # cached
    assert client_for(UserFactory(groups=["expert"])).get(url).status_code == 404
    assert client_for(UserFactory(groups=["researcher"])).get(url).status_code == 404
    assert client_for(UserFactory(groups=["admin"])).get(url).status_code == 200
    page = reverse("upload-detail", args=[body["upload"]])
    assert client.get(page).status_code == 200
    assert client_for(UserFactory(groups=["expert"])).get(page).status_code == 404


def _bad_uploads(tmp_path: Path) -> dict[str, bytes]:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    good = _png_bytes(np.full((64, 64), 120, np.uint8))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 64, 64, 16, 12, 11
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.PixelData = np.full((64, 64), 900, np.uint16).tobytes()
    path = tmp_path / "scan.dcm"
    ds.save_as(path, enforce_file_format=True)
    dicom = path.read_bytes()
    bomb = _png_bytes(np.zeros((12000, 12000), np.uint8))  # 144 MP of zeros: a few hundred KB on disk
    return {
        "corrupt.png": good[:60],
        "truncated.dcm": dicom[: len(dicom) - 4000],
        "bomb.png": bomb,
        "empty.png": b"",
        "notes.png": b"these are my notes, not an image\n" * 10,
    }


def test_bad_uploads_get_a_clear_error_and_leave_nothing(explained, expert_user, media_root, tmp_path, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_for(expert_user)
    expected = {
        "corrupt.png": "not an image this product can read",
        "truncated.dcm": "not an image this product can read",
        "bomb.png": "too large",
        "empty.png": "is empty",
        "notes.png": "not an image this product can read",
    }
    settings.MAX_IMAGE_PIXELS = 50_000_000
    for name, data in _bad_uploads(tmp_path).items():
        upload = SimpleUploadedFile(name, data)
        api = client.post(reverse("api:upload-explain"), {"file": upload}, format="multipart")
        assert api.status_code in (400, 413), (name, api.status_code)
        assert expected[name] in api.json()["message"], (name, api.json())
        page = client.post(reverse("explain-upload"), {"file": SimpleUploadedFile(name, data)})
        assert page.status_code == 400 and expected[name] in page.content.decode(), name
    settings.UPLOAD_MAX_BYTES = 1000
    big = client.post(
        reverse("api:upload-explain"), {"file": SimpleUploadedFile("big.png", b"x" * 1001)}, format="multipart"
    )
    assert big.status_code == 413 and "limited to 1,000" in big.json()["message"]
    assert UploadedImage.objects.count() == 0
    assert not list(media_root.glob("uploads/*")) and not list(media_root.glob("display/upload*"))


def test_the_batch_job_explains_a_split_and_summarises_it(explained, django_capture_on_commit_callbacks):
    trained = explained["model"]
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.EXPLAIN, dataset=explained["dataset"], params={"model": trained.pk})
    assert job.params == {"model": trained.pk, "split": "holdout", "method": "cam"}
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    rows = Explanation.objects.filter(model=trained, job=job)
    assert rows.count() == len(explained["images"])
    trained.refresh_from_db()
    summary = trained.explanations["holdout"]
    assert summary["images"] == 6 and summary["job"] == job.pk
    assert sum(summary["decided"].values()) == 6
    assert set(summary["image_auc"]) <= set(CLASSES)
    evaluation = summary["evaluation"]
    assert evaluation["images"] == 6
    correct = [r for r in rows if r.decided == r.image.label]
    assert evaluation["correct"] == len(correct)
    assert evaluation["greedy"]["description"] == "report"  # the phantoms carry report text
    scored = [r.evaluation["greedy_top8"] for r in rows if r.evaluation["greedy_top8"] is not None]
    assert evaluation["greedy"]["top8"]["images"] == len(scored)
    if scored:
        assert evaluation["greedy"]["top8"]["mean"] == pytest.approx(np.mean(scored), abs=1e-4)
    drops = [r.evaluation["deletion_drop"] for r in rows]
    assert evaluation["deletion"]["images"] == 6 and evaluation["deletion"]["draws"] >= 1
    assert evaluation["deletion"]["top"]["mean"] == pytest.approx(np.mean(drops), abs=1e-5)
    low, high = evaluation["deletion"]["top"]["ci"]
    assert low <= evaluation["deletion"]["top"]["mean"] <= high
    page = client_for(UserFactory(groups=["admin"])).get(reverse("model-detail", args=[trained.pk])).content.decode()
    assert "holdout split" in page and "image-level AUC" in page and "names a finding's concept" in page
    assert reverse("explanation-report", args=[trained.pk]) in page
    expert_page = client_for(UserFactory(groups=["expert"])).get(reverse("model-detail", args=[trained.pk]))
    assert reverse("explanation-report", args=[trained.pk]) not in expert_page.content.decode()
    # Re-running replaces the explanations instead of adding more.
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    assert Explanation.objects.filter(model=trained).count() == 6


def test_bad_batch_requests_are_refused_up_front(explained):
    from annotator.errors import ApplicationError

    other = TrainedModelFactory()
    for params, message in (
        ({}, "needs a trained model"),
        ({"model": other.pk}, "another dataset"),
        ({"model": explained["model"].pk, "split": "nope"}, "split must be"),
        ({"model": explained["model"].pk, "method": "nope"}, "method must be"),
    ):
        with pytest.raises(ApplicationError, match=message):
            job_create(kind=Job.Kind.EXPLAIN, dataset=explained["dataset"], params=params)


def test_exports_and_report_are_for_admins_and_researchers(explained, expert_user, researcher_user):
    trained: TrainedModel = explained["model"]
    for image in explained["images"][:3]:
        explanation_get(trained=trained, image=image)
    csv_url = reverse("explanation-export", args=[trained.pk, "csv"])
    json_url = reverse("explanation-export", args=[trained.pk, "json"])
    report_url = reverse("explanation-report", args=[trained.pk])
    assert client_for(expert_user).get(csv_url).status_code == 403
    assert client_for(expert_user).get(report_url).status_code == 403
    response = client_for(researcher_user).get(csv_url)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3 and {r["decided"] for r in rows} <= set(CLASSES)
    assert all(rows[0][f"p_{name}"] for name in CLASSES) and rows[0]["unit1_channel"]
    records = json.loads(b"".join(client_for(researcher_user).get(json_url).streaming_content))
    assert [r["image_id"] for r in records] == sorted(r["image_id"] for r in records)
    assert client_for(researcher_user).get(reverse("explanation-export", args=[trained.pk, "xml"])).status_code == 400
    report = client_for(researcher_user).get(report_url)
    assert report.status_code == 200 and report.content.decode().count('class="report-page"') == 3
    # They carry the truth and every expert's names: an expert exports once an admin opens the dataset, when
    # both rules show them both.
    Dataset.objects.filter(pk=trained.dataset_id).update(annotation_blind=False)
    assert client_for(expert_user).get(csv_url).status_code == 200
    assert client_for(expert_user).get(report_url).status_code == 200
