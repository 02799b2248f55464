"""The demo's hip-fracture dataset: imported through the manifest path, truth in metadata as JSON values,
nothing pre-labelled, and make_demo_data idempotent with --fracture-images."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command

from annotator.demo import DEMO_FRACTURE_DATASET, DEMO_MAMMOGRAM_DATASET, demo_fracture_dataset_create
from annotator.models import AnnotationChange, Dataset, FractureDescriptor
from annotator.selectors.fractures import fracture_next_image, fracture_progress, fracture_truth
from mining.sentence_parse import parse_sentence
from mining.sentences import FractureDescriptors

pytestmark = pytest.mark.django_db


def test_demo_fracture_dataset_is_imported_with_its_truth_and_queued(tmp_path, expert_user):
    dataset, created = demo_fracture_dataset_create(folder=tmp_path / "hips", n_images=10, seed=2)

    assert created and dataset.name == DEMO_FRACTURE_DATASET
    assert (dataset.kind, dataset.classes, dataset.source) == ("hip_fracture", ["no_fracture", "fracture"], "demo")
    images = list(dataset.images.order_by("id"))
    assert len(images) == 10
    assert sum(image.label == "fracture" for image in images) == 6  # exactly 3 in every 5 patients
    for image in images:
        truth = FractureDescriptors.from_dict(image.metadata)  # JSON booleans, not the CSV's text
        assert image.label == ("fracture" if truth.fracture else "no_fracture")
        assert parse_sentence(image.metadata["report"]) == truth  # read back by the parser, not rewritten
        assert not truth.validate()
        assert (image.modality, image.view) == ("DX", "AP") and image.laterality in ("L", "R")
        assert image.thumbnail.name and image.width == image.height == 512
        assert fracture_truth(image.metadata)["report"] == image.metadata["report"]
        if truth.fracture:
            assert len(image.metadata["fracture_bbox"]) == 4
    # The folder is an ordinary manifest dataset: the truth columns are there as text too.
    with (tmp_path / "hips" / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"image", "patient_id", "label", "fracture", "displacement", "location", "report"} <= set(rows[0])
    # Nothing pre-labelled: every image is in the queue.
    assert not FractureDescriptor.objects.exists() and not AnnotationChange.objects.exists()
    assert fracture_progress(dataset=dataset, user=expert_user) == {"total": 10, "mine": 0, "everyone": 0}
    assert fracture_next_image(dataset=dataset, user=expert_user) == images[0].pk


def test_demo_fracture_dataset_is_kept_unless_replaced(tmp_path):
    first, _ = demo_fracture_dataset_create(folder=tmp_path / "hips", n_images=5, seed=0)
    again, created = demo_fracture_dataset_create(folder=tmp_path / "hips", n_images=7, seed=0)
    assert (again.pk, created, again.images.count()) == (first.pk, False, 5)
    rebuilt, created = demo_fracture_dataset_create(folder=tmp_path / "hips", n_images=7, seed=0, replace=True)
    assert created and rebuilt.pk != first.pk and rebuilt.images.count() == 7
    assert Dataset.objects.filter(kind="hip_fracture").count() == 1


def test_the_same_seed_gives_the_same_phantoms(tmp_path):
    a, _ = demo_fracture_dataset_create(folder=tmp_path / "a", n_images=5, seed=4, name="a")
    b, _ = demo_fracture_dataset_create(folder=tmp_path / "b", n_images=5, seed=4, name="b")
    assert list(a.images.order_by("id").values_list("sha256", "metadata")) == list(
        b.images.order_by("id").values_list("sha256", "metadata")
    )


def test_make_demo_data_builds_both_datasets_and_is_idempotent(tmp_path):
    options = {
        "images": 4,
        "fracture_images": 5,
        "seed": 1,
        "folder": tmp_path / "mammo",
        "fracture_folder": tmp_path / "hips",
    }
    out = io.StringIO()
    call_command("make_demo_data", stdout=out, **options)
    text = out.getvalue()
    hips = Dataset.objects.get(name=DEMO_FRACTURE_DATASET)
    assert f"Imported {DEMO_FRACTURE_DATASET!r}: 5 images" in text
    assert f"Label them at /datasets/{hips.pk}/fractures/" in text
    assert Dataset.objects.get(name=DEMO_MAMMOGRAM_DATASET).images.count() == 4
    assert hips.images.count() == 5 and not FractureDescriptor.objects.exists()

    again = io.StringIO()
    call_command("make_demo_data", stdout=again, **options)
    assert f"Dataset {DEMO_FRACTURE_DATASET!r} already exists" in again.getvalue()
    assert f"Dataset {DEMO_MAMMOGRAM_DATASET!r} already exists" in again.getvalue()
    assert Dataset.objects.get(name=DEMO_FRACTURE_DATASET).pk == hips.pk
    assert Dataset.objects.count() == 2


def test_make_demo_data_without_fracture_images_skips_the_fracture_dataset(tmp_path):
    call_command("make_demo_data", stdout=io.StringIO(), images=2, fracture_images=0, folder=tmp_path / "m")
    assert not Dataset.objects.filter(kind="hip_fracture").exists()
    assert Dataset.objects.filter(name=DEMO_MAMMOGRAM_DATASET).exists()
