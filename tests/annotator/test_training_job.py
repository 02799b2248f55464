"""The train job in-process on a small phantom dataset: a TrainedModel with checkpoint, curves and report."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.demo import demo_dataset_create
from annotator.errors import ApplicationError
from annotator.models import Job, TrainedModel
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from mining.networks import checkpoint_load

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def phantom_dataset(tmp_path, django_capture_on_commit_callbacks):
    dataset, _ = demo_dataset_create(folder=tmp_path / "phantoms", n_images=40, seed=3, name="train-test")
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED
    return dataset


def test_train_job_stores_a_model_with_checkpoint_history_and_report(
    phantom_dataset, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(
            kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"epochs": 2, "batch_size": 32, "patch_size": 64}
        )
    assert job.params["architecture"] == "resnet18" and job.params["preset"] == "from_scratch"
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    trained = TrainedModel.objects.get(job=job)
    assert trained.initialisation == "random"
    assert [row["epoch"] for row in trained.history] == [1, 2]
    assert set(trained.metrics["per_class"]) == {"normal", "benign", "malignant"}
    assert trained.metrics["n"] == sum(trained.metrics["class_counts"].values())
    _info, checkpoint = checkpoint_load(trained.checkpoint.path)
    assert checkpoint["classes"] == ["normal", "benign", "malignant"] and checkpoint["epoch"] == trained.best_epoch
    assert checkpoint["patch_params"]["input_size"] == 64

    # Re-running the same job replaces its model instead of adding a second one.
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)
    job_run(job_id=job.pk)
    assert TrainedModel.objects.filter(job=job).count() == 1


def test_bad_training_requests_are_refused_up_front(phantom_dataset, tmp_path):
    with pytest.raises(ApplicationError, match="architecture must be one of"):
        job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"architecture": "vgg16"})
    with pytest.raises(ApplicationError, match="weights file not found"):
        job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"weights_file": str(tmp_path / "none.pt")})
    with pytest.raises(ApplicationError, match="epochs must be at least 1"):
        job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"epochs": 0})


def test_mine_job_stores_units_top_patches_masks_and_concepts(phantom_dataset, django_capture_on_commit_callbacks):
    from annotator.models import Patch, TopActivation, Unit

    with django_capture_on_commit_callbacks(execute=False):
        train_job = job_create(kind=Job.Kind.TRAIN, dataset=phantom_dataset, params={"epochs": 1, "patch_size": 64})
    assert job_run(job_id=train_job.pk) == Job.Status.SUCCEEDED
    trained = TrainedModel.objects.get(job=train_job)
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.MINE, dataset=phantom_dataset, params={"model": trained.pk, "top_n": 12})
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    units = Unit.objects.filter(model=trained)
    assert units.count() == 512  # every channel of resnet18's layer4
    n_patches = Patch.objects.filter(image__dataset=phantom_dataset, image__split__in=["test", "holdout"]).count()
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
