"""The hip-fracture classifier (issue "Sentences", item 1): a training job on a hip dataset trains a
whole-image classifier (fracture / no fracture) with the same carve-out, checkpoint, report and model
page as the mammogram models, and the image page explains a radiograph with it as the classifier decides."""

from __future__ import annotations

import os

import numpy as np
import pytest

from annotator.demo import demo_fracture_dataset_create
from annotator.models import Image, Job, TrainedModel
from annotator.services.explanations import explanation_get
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from mining.networks import checkpoint_load

pytestmark = pytest.mark.django_db
slow = pytest.mark.slow
HIPS = int(os.environ.get("FRACTURE_CHECK_IMAGES", "40"))
# The target, test AUC >= 0.95 on the hip phantoms, is not reached yet (0.36 after 8 epochs on 200
# phantoms at 256 px from random weights): this test checks the job, not the science.


@pytest.fixture
def hips(tmp_path):
    dataset, _ = demo_fracture_dataset_create(folder=tmp_path / "hips", n_images=HIPS, seed=0, name="hips")
    return dataset


@slow
def test_a_hip_training_job_trains_a_whole_image_fracture_classifier(hips, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.TRAIN, dataset=hips, params={"epochs": 1, "patch_size": 128})
    assert job.params["input"] == "whole_image"  # the default for a hip dataset: no patches needed
    assert job.params["symmetries"] == "flip"  # a radiograph keeps its orientation: mirrored at most
    assert job.params["shift_fraction"] == 0.0625  # and shifted a little
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    trained = TrainedModel.objects.get(job=job)
    assert trained.classes == ["no_fracture", "fracture"]
    assert trained.patch_params == {"input_size": 128, "side_fraction": 1.0, "whole_image": True, "window": "dicom-voi"}
    splits = trained.metrics["splits"]
    assert splits["items"] == "images" and splits["metrics"] == "test"
    n_test = Image.objects.filter(dataset=hips, split="test").count()
    assert trained.metrics["n"] == splits["sizes"]["test"]["patches"] == n_test
    assert set(trained.metrics["per_class"]) == {"no_fracture", "fracture"}
    _info, checkpoint = checkpoint_load(trained.checkpoint.path)
    assert checkpoint["classes"] == trained.classes

    # Explained as the classifier decides: its own (globally pooled) probabilities.
    image = Image.objects.filter(dataset=hips, split="test").first()
    explanation = explanation_get(trained=trained, image=image)
    assert explanation.decided in trained.classes and len(explanation.units) == 8
    assert sum(explanation.scores.values()) == pytest.approx(1.0, abs=1e-4)


def test_a_mammogram_training_job_still_needs_patches(tmp_path):
    from annotator.demo import demo_dataset_create
    from annotator.errors import ApplicationError

    dataset, _ = demo_dataset_create(folder=tmp_path / "m", n_images=6, seed=1, name="no patches")
    with pytest.raises(ApplicationError, match="no patches yet"):
        job_create(kind=Job.Kind.TRAIN, dataset=dataset)
    with pytest.raises(ApplicationError, match="input must be"):
        job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"input": "pixels"})
    job = job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"input": "whole_image"})
    assert job.params["input"] == "whole_image" and np.isfinite(job.params["validation_fraction"])


@slow
def test_densenet121_is_selectable_for_the_whole_image_classifier(tmp_path, django_capture_on_commit_callbacks):
    """The paper's DenseNet: trained, explained (SmoothGrad, as its figure 3) and captioned like the ResNet;
    a patch model stays a ResNet (mining reads layer4 and fc)."""
    from annotator.errors import ApplicationError
    from annotator.models import SentenceModel
    from annotator.services.captioning import image_sentence

    dataset, _ = demo_fracture_dataset_create(folder=tmp_path / "d", n_images=20, seed=1, name="densenet hips")
    params = {"epochs": 1, "patch_size": 64, "architecture": "densenet121"}
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.TRAIN, dataset=dataset, params=params)
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    trained = TrainedModel.objects.get(job=job)
    info, checkpoint = checkpoint_load(trained.checkpoint.path)
    assert trained.architecture == checkpoint["architecture"] == "densenet121"
    assert info.model.classifier.out_features == 2 and info.feature_layer == "features"
    image = Image.objects.filter(dataset=dataset, split="test").first()
    explanation = explanation_get(trained=trained, image=image, method="smoothgrad")
    assert sum(explanation.scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert all(0 <= unit["channel"] < 1024 for unit in explanation.units)
    with django_capture_on_commit_callbacks(execute=False):
        caption = job_create(kind=Job.Kind.CAPTION, dataset=dataset, params={"model": trained.pk, "epochs": 1})
    assert job_run(job_id=caption.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=caption.pk).error
    generator = SentenceModel.objects.get(job=caption)
    assert generator.config["feature_dim"] == 1024  # DenseNet-121's map
    assert image_sentence(model=generator, image=image).attention.shape[1] == 4  # 2 x 2 regions at 64 px
    with pytest.raises(ApplicationError, match="whole-image classifier"):
        job_create(kind=Job.Kind.MINE, dataset=dataset, params={"model": trained.pk})


def test_a_patch_model_must_be_a_resnet(tmp_path):
    from annotator.demo import demo_dataset_create
    from annotator.errors import ApplicationError
    from annotator.services.patches import patches_extract
    from mining.patches import PatchParams
    from mining.progress import never_cancelled, no_progress

    dataset, _ = demo_dataset_create(folder=tmp_path / "m", n_images=4, seed=1, name="patches")
    patches_extract(dataset=dataset, params=PatchParams(), progress=no_progress, cancelled=never_cancelled)
    with pytest.raises(ApplicationError, match="densenet121 classifies whole images only"):
        job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"architecture": "densenet121"})
