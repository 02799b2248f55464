"""The train job in-process on a small phantom dataset: a TrainedModel with checkpoint, curves and report;
and on a few factory images, that it keeps to its splits (never reading hold-out)."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.demo import demo_dataset_create
from annotator.errors import ApplicationError
from annotator.models import Image, Job, Patch, TrainedModel
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from annotator.services.patch_data import patch_split_load
from mining.networks import checkpoint_load
from mining.splits import carve_validation
from tests.factories import DatasetFactory, ImageFactory

pytestmark = pytest.mark.django_db
slow = pytest.mark.slow


@pytest.fixture
def phantom_dataset(tmp_path, django_capture_on_commit_callbacks):
    dataset, _ = demo_dataset_create(folder=tmp_path / "phantoms", n_images=40, seed=3, name="train-test")
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    return dataset


@slow
def test_train_job_stores_a_model_with_checkpoint_history_and_report(
    phantom_dataset, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(
            kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"epochs": 2, "batch_size": 32, "patch_size": 64}
        )
    assert job.params["architecture"] == "resnet18" and job.params["preset"] == "from_scratch"
    assert job.params["symmetries"] == "dihedral" and "shift_fraction" not in job.params  # patches: no orientation
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    trained = TrainedModel.objects.get(job=job)
    assert trained.initialisation == "random"
    assert [row["epoch"] for row in trained.history] == [1, 2]
    assert set(trained.metrics["per_class"]) == {"normal", "benign", "malignant"}
    assert trained.metrics["n"] == sum(trained.metrics["class_counts"].values())
    _info, checkpoint = checkpoint_load(trained.checkpoint.path)
    assert checkpoint["classes"] == ["normal", "benign", "malignant"] and checkpoint["epoch"] == trained.best_epoch
    assert checkpoint["patch_params"]["input_size"] == 64
    assert checkpoint["patch_params"]["window"] == trained.patch_params["window"] == "dicom-voi"  # what it saw
    splits = trained.metrics["splits"]
    assert splits["best_epoch"] == "validation (10% of training patients)" and splits["metrics"] == "test"
    assert splits["sizes"]["test"]["patches"] == trained.metrics["n"]
    assert all(part["patients"] >= 1 and part["patches"] >= 1 for part in splits["sizes"].values())

    # Re-running the same job replaces its model instead of adding a second one.
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)
    job_run(job_id=job.pk)
    assert TrainedModel.objects.filter(job=job).count() == 1


@slow
def test_bad_training_requests_are_refused_up_front(phantom_dataset, tmp_path):
    with pytest.raises(ApplicationError, match="architecture must be one of"):
        job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"architecture": "vgg16"})
    with pytest.raises(ApplicationError, match="weights file not found"):
        job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"weights_file": str(tmp_path / "none.pt")})
    with pytest.raises(ApplicationError, match="epochs must be at least 1"):
        job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"epochs": 0})
    with pytest.raises(ApplicationError, match="validation_fraction must lie strictly between 0 and 1"):
        job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"validation_fraction": 1})


@slow
def test_mine_job_stores_units_top_patches_masks_and_concepts(phantom_dataset, django_capture_on_commit_callbacks):
    from annotator.models import TopActivation, Unit

    with django_capture_on_commit_callbacks(execute=False):
        train_job = job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"epochs": 1, "patch_size": 64})
    assert job_run(job_id=train_job.pk) == Job.Status.SUCCEEDED
    trained = TrainedModel.objects.get(job=train_job)
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.MINE, dataset=phantom_dataset, params={"model": trained.pk, "top_n": 12})
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    units = Unit.objects.filter(model=trained)
    assert units.count() == 512  # every channel of resnet18's layer4
    assert job.params["splits"] == ["test"]  # mining defaults to test: hold-out is for evaluating explanations
    n_patches = Patch.objects.filter(image__dataset=phantom_dataset, image__split="test").count()
    assert TopActivation.objects.filter(unit__model=trained).count() == 512 * min(12, n_patches)
    selected = units.exclude(selected_for="")
    assert 0 < selected.count() <= 60
    for unit in selected:
        assert unit.selection_rank >= 1 and sum(unit.frequency.values()) > 0
    trained.refresh_from_db()
    assert set(trained.mining["coverage"]) <= {"normal", "benign", "malignant"}
    assert all(0 <= v <= 1 for v in trained.mining["coverage"].values())
    top = TopActivation.objects.filter(unit=selected.first()).select_related("patch", "image").order_by("rank")
    scores = [t.score for t in top]
    assert scores == sorted(scores, reverse=True)
    for activation in top:
        x0, y0, x1, y1 = activation.box
        assert (
            activation.patch.x0 <= x0 < x1 <= activation.patch.x1
            and activation.patch.y0 <= y0 < y1 <= activation.patch.y1
        )
        assert activation.patch.crop and activation.image_id == activation.patch.image_id
    assert any(unit.suggested_concept_id for unit in units)
    # Heat maps for the surveyed (selected) units: tiles at 255 where the unit peaks, same layout as the masks.
    from annotator.files import read_png

    unit = selected.order_by("selection_rank").first()
    heat, mask = read_png(unit.heat_sprite.name), read_png(unit.mask_sprite.name)
    assert heat.shape == mask.shape and heat.dtype == np.uint8 and heat.max() == 255
    assert heat[mask > 0].mean() > heat[mask == 0].mean()  # the mask is where the response is strong
    assert not units.filter(selected_for="").exclude(heat_sprite="").exists()

    # A re-run replaces the units.
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    assert Unit.objects.filter(model=trained).count() == 512


@pytest.fixture
def split_dataset():
    """Ten training patients (two images each), three test and three hold-out patients, two patches an image."""
    dataset = DatasetFactory(name="splits")
    labels = ["normal", "benign", "malignant"]
    plan = [("train", f"TR{i}") for i in range(10) for _ in range(2)]
    plan += [("test", f"TE{i}") for i in range(3)] + [("holdout", f"HO{i}") for i in range(3)]
    for n, (split, patient) in enumerate(plan):
        pixels = np.full((64, 48), 60 + 60 * (n % 3), dtype=np.uint8)
        image = ImageFactory(dataset=dataset, split=split, patient_id=patient, pixels=pixels)
        for k, (x0, y0) in enumerate([(0, 0), (16, 16)]):
            Patch.objects.create(
                image=image, x0=x0, y0=y0, x1=x0 + 16, y1=y0 + 16, label=labels[(n + k) % 3], tissue_fraction=1.0
            )
    return dataset


def test_train_job_fits_on_train_less_a_patient_carve_out_and_never_reads_holdout(
    split_dataset, monkeypatch, django_capture_on_commit_callbacks
):
    from annotator.services import training

    loaded = []

    def spy(**kwargs):
        part = patch_split_load(**kwargs)
        loaded.append((kwargs, part))
        return part

    monkeypatch.setattr(training, "patch_split_load", spy)
    params = {"epochs": 1, "batch_size": 8, "patch_size": 32, "validation_fraction": 0.2, "seed": 4}
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.TRAIN, dataset=split_dataset, params=params)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error

    images = Image.objects.filter(dataset=split_dataset)
    holdout_ids = set(images.filter(split="holdout").values_list("id", flat=True))
    train_patients = set(images.filter(split="train").values_list("patient_id", flat=True))
    patients_of = dict(images.values_list("id", "patient_id"))
    assert all("holdout" not in kwargs["splits"] for kwargs, _ in loaded)
    used = [set(part.image_ids) for _, part in loaded]
    assert not set().union(*used) & holdout_ids
    fit, validation, test = ({patients_of[i] for i in ids} for ids in used)
    assert validation == carve_validation(train_patients, 0.2, seed=4) and len(validation) == 2
    assert fit == train_patients - validation and not fit & validation
    assert test == set(images.filter(split="test").values_list("patient_id", flat=True))

    trained = TrainedModel.objects.get(job=job)
    assert trained.metrics["split"] == "test"
    assert trained.metrics["splits"] == {
        "items": "patches",
        "best_epoch": "validation (20% of training patients)",
        "metrics": "test",
        "validation_fraction": 0.2,
        "validation_seed": 4,
        "sizes": {
            "train": {"patients": 8, "patches": 32},
            "validation": {"patients": 2, "patches": 8},
            "test": {"patients": 3, "patches": 6},
        },
    }
    assert trained.metrics["n"] == 6
    result = Job.objects.get(pk=job.pk).result
    assert result["patients"] == {"train": 8, "validation": 2, "test": 3}


def test_train_job_needs_two_training_patients_for_the_carve_out(django_capture_on_commit_callbacks):
    dataset = DatasetFactory()
    for split in ("train", "test"):
        image = ImageFactory(dataset=dataset, split=split)
        Patch.objects.create(image=image, x0=0, y0=0, x1=16, y1=16, label="normal", tissue_fraction=1.0)
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"epochs": 1})
    assert job_run(job_id=job.pk) == Job.Status.FAILED
    assert "at least 2 are needed to carve out a validation set" in Job.objects.get(pk=job.pk).error
