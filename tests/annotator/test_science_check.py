"""The science check: on the demo phantoms, where the truth is planted, training and mining must find what
is there. Train + mine a ResNet-18 from random weights on the demo data (a few CPU minutes), then, with the
definitions of DeepMiner's reference code and of Network Dissection (issue 9), assert:

- malignant AUC on the test split >= 0.95;
- of the 60 (class, unit) selections (each class's 20 most frequent per-image top-8 units over all images
  of the test split; a unit in two lists counts twice), at least 30 (aim: 36; measured 34-42) have a dataset-wide IoU > 0.04 (summed
  over every patch of the mined split) with a planted concept;
- the causal check: for each class, zeroing its 20 selected units lowers the class's mean probability on
  its test inputs, and at least 3x as much as zeroing 20 random units (the mean over seeded draws).

Aim, not yet asserted (issue 9 item 7): at least 5 of the 20 normal-class selections matching a normal-
anatomy concept (a finding of lesion type "anatomy": nipple, intramammary lymph node, pectoral muscle edge,
skin line, vessels). Measured: 0 on the demo phantoms. Of those concepts only the nipple and the lymph nodes
can pass at all at a 4 x 4 map: a perfect detector of the vessels, the skin line or the muscle's edge stays
below 0.04 (tests/mining/test_concept_reach.py). The normal units' top-0.5% masks land on the
brightest small structures (vascular and pleomorphic calcifications) or spread along the breast's edge and
the muscle, which are long structures whose IoU cannot pass; the figures below report the count.

Which concept a given unit matches varies with the seed, so it is never asserted.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from annotator.demo import demo_dataset_create
from annotator.models import Finding, Job, TrainedModel, Unit
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from mining.dissection import INTERPRETABLE_IOU

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

DEMO_IMAGES = int(os.environ.get("SCIENCE_IMAGES", "500"))
SCIENCE_EPOCHS = int(os.environ.get("SCIENCE_EPOCHS", "1"))
REPORT = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "var" / "test-artifacts"))
CLASSES = ("normal", "benign", "malignant")


def _anatomy_concepts(dataset) -> set[str]:
    """Codes of the dataset's normal-anatomy findings (lesion type "anatomy"), read from its own findings."""
    found = Finding.objects.filter(image__dataset=dataset, lesion_type="anatomy").values_list(
        "concepts__code", flat=True
    )
    return {code for code in found.distinct() if code}


def _run(kind: str, dataset, params: dict) -> Job:
    job = job_create(kind=kind, dataset=dataset, params=params)
    job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    return job


def test_demo_phantoms_train_and_mine_find_the_planted_concepts(tmp_path, django_capture_on_commit_callbacks):
    start = time.perf_counter()
    with django_capture_on_commit_callbacks(execute=False):  # run everything in-process, in order
        dataset, _ = demo_dataset_create(folder=tmp_path / "demo", n_images=DEMO_IMAGES, seed=0, name="science")
        _run(Job.Kind.EXTRACT_PATCHES, dataset, {})
        train = _run(Job.Kind.TRAIN, dataset, {"epochs": SCIENCE_EPOCHS})
        trained = TrainedModel.objects.get(job=train)
        _run(Job.Kind.MINE, dataset, {"model": trained.pk})
    trained.refresh_from_db()

    malignant_auc = trained.metrics["per_class"]["malignant"]["auc"]
    anatomy = _anatomy_concepts(dataset)
    units = Unit.objects.filter(model=trained).select_related("suggested_concept")
    # One entry per (class, unit) selection: a unit in two classes' lists counts in both.
    selections = [(name, unit) for unit in units for name in unit.selections]
    matched = [
        (name, unit) for name, unit in selections if unit.suggested_concept and unit.suggested_iou > INTERPRETABLE_IOU
    ]
    normal_anatomy = [
        (name, unit) for name, unit in matched if name == "normal" and unit.suggested_concept.code in anatomy
    ]
    # Looser: a normal selection with IoU > 0.04 with some anatomy concept, its best concept or not.
    normal_anatomy_any = [
        unit
        for name, unit in selections
        if name == "normal" and any(unit.concept_ious.get(code, 0) > INTERPRETABLE_IOU for code in anatomy)
    ]
    causal = trained.mining["causal"]["per_class"]
    figures = {
        "images": DEMO_IMAGES,
        "malignant_auc": malignant_auc,
        "test_auc": {k: v["auc"] for k, v in trained.metrics["per_class"].items()},
        "selections": len(selections),
        "selections_by_class": dict(Counter(name for name, _ in selections)),
        "matched_iou_gt_0_04": len(matched),
        "matched_by_class": dict(Counter(name for name, _ in matched)),
        "normal_matched_anatomy": len(normal_anatomy),
        "normal_anatomy_iou_gt_0_04_any": len(normal_anatomy_any),
        "matched_concepts_by_class": {
            name: dict(Counter(unit.suggested_concept.code for cls, unit in matched if cls == name)) for name in CLASSES
        },
        "causal": {
            name: {key: causal[name][key] for key in ("selected_drop", "random_drop", "ratio")} for name in causal
        },
        "coverage": trained.mining["coverage"],
        "minutes_training": round(sum(r["seconds"] for r in trained.history) / 60, 2),
        "minutes_total": round((time.perf_counter() - start) / 60, 2),
    }
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "science_check.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))

    assert malignant_auc >= 0.95, figures
    assert len(selections) == 60, figures
    # Aim 36 (issue 9); runs on these phantoms gave 34-42 (training is not bit-reproducible): 30 never flakes.
    assert len(matched) >= 30, figures
    assert set(causal) == set(CLASSES), figures
    for name in CLASSES:
        drops = causal[name]
        assert drops["selected_drop"] > 0 and drops["selected_drop"] >= 3 * drops["random_drop"], (name, figures)
