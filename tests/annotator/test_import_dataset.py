"""annotator.services.datasets.dataset_import and `manage.py import_dataset`: manifests, CBIS-DDSM trees,
all-or-nothing validation with line numbers, patient-level splits, stored files."""

from __future__ import annotations

import csv
import errno
import os
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError
from PIL import Image as PILImage

from annotator import files
from annotator.errors import ApplicationError
from annotator.files import media_path
from annotator.importing import storing
from annotator.importing.cbis_ddsm import cbis_concepts
from annotator.models import Dataset, Finding, Image
from annotator.services import datasets
from annotator.services.datasets import dataset_import
from mining.imaging import OUTLINE_COLOURS
from tests.conftest import ROOT, _database_url_for_subprocess
from tests.mining.test_imaging import write_dicom

pytestmark = pytest.mark.django_db

H, W = 48, 64
COLUMNS = ["image", "patient_id", "label", "view", "laterality", "mask", "mask_pathology", "mask_concepts", "age"]


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)
    return path.name


def _box_mask(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


def _pixels(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 256, size=(H, W), dtype=np.uint8)


def write_manifest(folder: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    path = folder / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def build_folder(folder: Path, n_patients: int = 50) -> list[dict[str, Any]]:
    """Two views per patient; every 3rd patient a benign mass, every 5th a malignant one + skin line."""
    rows: list[dict[str, Any]] = []
    for p in range(n_patients):
        for v, view in enumerate(("CC", "MLO")):
            name = f"img/p{p:03d}_{view}.png"
            _png(folder / name, _pixels(2 * p + v))
            base = {"image": name, "patient_id": f"P{p:03d}", "view": view, "laterality": "L", "age": 40 + p}
            if p % 5 == 0:
                malignant = _png(folder / f"masks/p{p:03d}_{view}_m.png", _box_mask(10, 20, 30, 45))
                skin = _png(folder / f"masks/p{p:03d}_{view}_skin.png", _box_mask(0, H, 0, 3))
                rows.append(
                    {
                        **base,
                        "label": "malignant",
                        "mask": f"masks/{malignant}",
                        "mask_pathology": "malignant",
                        "mask_concepts": "mass_shape.irregular;mass_margin.spiculated",
                    }
                )
                rows.append(
                    {
                        **base,
                        "label": "malignant",
                        "mask": f"masks/{skin}",
                        "mask_pathology": "normal",
                        "mask_concepts": "anatomy.skin_line",
                    }
                )
            elif p % 3 == 0:
                benign = _png(folder / f"masks/p{p:03d}_{view}_b.png", _box_mask(5, 9, 7, 15))
                rows.append(
                    {
                        **base,
                        "label": "benign",
                        "mask": f"masks/{benign}",
                        "mask_pathology": "benign",
                        "mask_concepts": "mass_shape.oval;mass_margin.circumscribed",
                    }
                )
            else:
                rows.append({**base, "label": "normal"})
    return rows


def media_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_manifest(folder, build_folder(folder), COLUMNS)
    return folder


# --- a good manifest ---------------------------------------------------------------------------


def test_good_manifest_imports_every_image_and_finding(folder: Path) -> None:
    dataset = dataset_import(name="mammo", folder=folder)
    assert dataset.classes == ["normal", "benign", "malignant"] and dataset.source == "manifest"
    assert dataset.description == f"Imported from {folder.name} (manifest), 100 images."
    assert dataset.images.count() == 100
    assert Counter(dataset.images.values_list("label", flat=True)) == {"normal": 54, "benign": 26, "malignant": 20}
    findings = Finding.objects.filter(image__dataset=dataset)
    assert Counter(findings.values_list("pathology", flat=True)) == {"malignant": 20, "normal": 20, "benign": 26}

    image = dataset.images.get(source_name="img/p005_MLO.png")
    assert (image.width, image.height, image.bit_depth, image.modality) == (W, H, 8, "MG")
    assert (image.patient_id, image.view, image.laterality, image.label) == ("P005", "MLO", "L", "malignant")
    assert image.metadata == {"age": 45}
    by_pathology = {f.pathology: f for f in image.findings.all()}
    assert sorted(c.code for c in by_pathology["malignant"].concepts.all()) == [
        "mass_margin.spiculated",
        "mass_shape.irregular",
    ]
    assert [c.code for c in by_pathology["normal"].concepts.all()] == ["anatomy.skin_line"]
    assert by_pathology["malignant"].area == 10 * 15 and by_pathology["malignant"].bbox == [30, 10, 45, 20]
    assert by_pathology["normal"].bbox == [0, 0, 3, H]


def test_stored_files_are_lossless_with_thumbnail_overlay_and_masks(folder: Path, media_root: Path) -> None:
    dataset = dataset_import(name="mammo", folder=folder)
    image = dataset.images.get(source_name="img/p000_CC.png")
    assert image.file.name.startswith("images/") and image.file.name.endswith(".png")
    np.testing.assert_array_equal(np.asarray(PILImage.open(media_path(image.file.name))), _pixels(0))
    thumbnail = PILImage.open(media_path(image.thumbnail.name))
    assert thumbnail.mode == "L" and thumbnail.size == (W, H)  # small images are not enlarged
    overlay = np.asarray(PILImage.open(media_path(image.overlay.name)))
    assert overlay.shape == (H, W, 4)
    assert tuple(overlay[10, 35]) == OUTLINE_COLOURS["malignant"]  # top edge of the malignant box
    assert not overlay[:, :3, 3].any()  # the skin line (normal anatomy) is not outlined
    for finding in image.findings.all():
        mask = np.asarray(PILImage.open(media_path(finding.mask.name))) > 0
        assert mask.shape == (H, W) and int(mask.sum()) == finding.area
    # Image, display rendition, thumbnail and overlay per image, and a mask per finding.
    display = PILImage.open(media_path(image.display.name))
    assert display.mode == "L" and display.size == (W, H)
    assert len(media_files(media_root)) == 4 * 100 + Finding.objects.count()


def test_splits_are_per_patient_80_10_10_and_reproducible(folder: Path) -> None:
    first = dataset_import(name="a", folder=folder, seed=0)
    split_of: dict[str, set[str]] = defaultdict(set)
    for patient, split in first.images.values_list("patient_id", "split"):
        split_of[patient].add(split)
    assert all(len(splits) == 1 for splits in split_of.values())  # no patient straddles splits
    assert Counter(s for (s,) in split_of.values()) == {"train": 40, "test": 5, "holdout": 5}

    again = dataset_import(name="b", folder=folder, seed=0)
    other = dataset_import(name="c", folder=folder, seed=1)

    def splits(dataset: Dataset) -> dict[str, str]:
        return dict(dataset.images.values_list("patient_id", "split"))

    assert splits(again) == splits(first) and splits(other) != splits(first)


def test_split_column_overrides_the_seeded_split_per_patient(tmp_path: Path) -> None:
    rows = build_folder(tmp_path, n_patients=20)
    for row in rows:
        row["split"] = "holdout" if row["patient_id"] in ("P001", "P002") else ""
    write_manifest(tmp_path, rows)
    dataset = dataset_import(name="override", folder=tmp_path)
    splits = dict(dataset.images.values_list("patient_id", "split"))
    assert splits["P001"] == splits["P002"] == "holdout"
    # the 18 other patients get the seeded 80/10/10: 14 / 2 / 2 (largest remainders)
    others = Counter(split for patient, split in splits.items() if patient not in ("P001", "P002"))
    assert others == {"train": 14, "test": 2, "holdout": 2}


def test_metadata_columns_keep_numbers_as_numbers(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", _pixels(0))
    row = {
        "image": "a.png",
        "patient_id": "P1",
        "label": "normal",
        "age": "61",
        "bmi": "23.5",
        "density": "c",
        "code": "007",
        "empty": "",
        "birads": "-1",
    }
    write_manifest(tmp_path, [row])
    image = dataset_import(name="meta", folder=tmp_path).images.get()
    assert image.metadata == {"age": 61, "bmi": 23.5, "density": "c", "code": "007", "birads": -1}


def test_16_bit_dicom_in_a_manifest_keeps_its_depth_and_header_facts(tmp_path: Path) -> None:
    values = np.random.default_rng(3).integers(0, 65536, size=(H, W), dtype=np.uint16)
    write_dicom(tmp_path / "a.dcm", values, ViewPosition="MLO", ImageLaterality="R", PatientAge="058Y", PatientSex="F")
    write_manifest(tmp_path, [{"image": "a.dcm", "patient_id": "P1", "label": "normal"}])
    image = dataset_import(name="dicom", folder=tmp_path).images.get()
    assert (image.bit_depth, image.modality, image.view, image.laterality) == (16, "MG", "MLO", "R")
    assert image.metadata["age"] == 58 and image.metadata["sex"] == "F"
    stored = np.asarray(PILImage.open(media_path(image.file.name)))
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, values)
    thumbnail = PILImage.open(media_path(image.thumbnail.name))
    assert thumbnail.mode == "L"


# --- bad manifests -----------------------------------------------------------------------------


def test_three_bad_rows_are_all_reported_and_nothing_is_imported(folder: Path, media_root: Path) -> None:
    rows = build_folder(folder, n_patients=5)
    rows[1]["image"] = "img/missing.png"  # line 3
    rows[3]["label"] = "suspicious"  # line 5
    rows[4]["laterality"] = "left"  # line 6
    write_manifest(folder, rows, COLUMNS)
    with pytest.raises(ApplicationError) as caught:
        dataset_import(name="bad", folder=folder)
    assert caught.value.message == "3 bad rows in manifest"
    errors = caught.value.extra["errors"]
    assert [e["line"] for e in errors] == [3, 5, 6]
    assert errors[0]["reason"] == "image file not found: img/missing.png"
    assert "unknown label 'suspicious'" in errors[1]["reason"]
    assert "bad laterality 'left'" in errors[2]["reason"]
    assert (Dataset.objects.count(), Image.objects.count(), Finding.objects.count()) == (0, 0, 0)
    assert media_files(media_root) == []


def test_every_kind_of_bad_row_is_reported_with_its_line(tmp_path: Path, media_root: Path) -> None:
    for i in range(12):
        _png(tmp_path / f"{i}.png", _pixels(i))
    _png(tmp_path / "big.png", np.zeros((100, 100), np.uint8))
    (tmp_path / "corrupt.png").write_bytes((tmp_path / "0.png").read_bytes()[:120])
    _png(tmp_path / "mask.png", _box_mask(1, 5, 1, 5))
    _png(tmp_path / "odd_mask.png", np.zeros((H + 1, W), np.uint8))
    _png(tmp_path / "empty_mask.png", np.zeros((H, W), np.uint8))
    ok = {"patient_id": "P1", "label": "malignant", "laterality": "L"}
    rows = [
        {"image": "0.png", **ok},  # 2: fine
        {"image": "corrupt.png", **ok},  # 3
        {"image": "big.png", **ok},  # 4: 10 000 pixels > 5 000
        {"image": "1.png", **ok, "mask": "odd_mask.png"},  # 5
        {"image": "2.png", **ok, "mask": "mask.png", "mask_concepts": "mass_shape.oval;mass_shape.blobby"},  # 6
        {"image": "0.png", **ok, "patient_id": "P2"},  # 7: same image, other patient
        {"image": "3.png", **ok, "split": "train"},  # 8
        {"image": "4.png", **ok, "split": "test"},  # 9: P1 already in train
        {"image": "5.png", **ok, "label": "benign", "mask": "mask.png", "mask_pathology": "malignant"},  # 10
        {"image": "../outside.png", **ok},  # 11
        {"image": "6.png", **ok, "mask": "empty_mask.png"},  # 12
        {"image": "7.png", **ok, "mask_concepts": "mass_shape.oval"},  # 13: concepts but no mask
        {"image": "0.png", **ok},  # 14: repeated without a mask
        {"image": "8.png", **ok, "patient_id": ""},  # 15
        {"image": "9.png", **ok, "split": "validation"},  # 16
    ]
    write_manifest(tmp_path, rows, [*COLUMNS, "split"])
    with pytest.raises(ApplicationError) as caught:
        dataset_import(name="bad", folder=tmp_path, max_pixels=5_000)
    reasons = {e["line"]: e["reason"] for e in caught.value.extra["errors"]}
    expected = {
        3: "corrupt.png: corrupt or unreadable image",
        4: "big.png: image too large: 100x100 = 10,000 pixels, the limit is 5,000",
        5: "mask odd_mask.png: mask size 64x49 does not match the image size 64x48",
        6: "unknown concept(s): mass_shape.blobby",
        7: "image 0.png is also on line 2 with a different patient_id",
        9: "patient P1 has split 'test' here, 'train' on line 8",
        10: "label 'benign' but the image has a malignant finding (line 10)",
        11: "image path '../outside.png' is outside the folder",
        12: "mask empty_mask.png is empty",
        13: "mask_concepts given without a mask",
        14: "image 0.png is already on line 2; a repeated row must add a mask",
        15: "patient_id is empty",
        16: "bad split 'validation'",
    }
    assert sorted(reasons) == sorted(expected)
    for line, reason in expected.items():
        assert reason in reasons[line], (line, reasons[line])
    assert caught.value.message == f"{len(expected)} bad rows in manifest"
    assert Dataset.objects.count() == 0 and media_files(media_root) == []


def test_missing_required_column_is_refused(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", _pixels(0))
    write_manifest(tmp_path, [{"image": "a.png", "label": "normal"}])
    with pytest.raises(ApplicationError, match="missing column"):
        dataset_import(name="x", folder=tmp_path)


def test_taken_name_is_refused(folder: Path) -> None:
    dataset_import(name="once", folder=folder)
    with pytest.raises(ApplicationError, match="already exists"):
        dataset_import(name="once", folder=folder)
    assert Dataset.objects.count() == 1


def test_a_failure_while_writing_rows_removes_every_written_file(
    folder: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_rows = storing._create_rows

    def explode(*args: Any, **kwargs: Any) -> None:
        create_rows(*args, **kwargs)  # every row exists now; the transaction must drop them
        raise RuntimeError("disk full")

    monkeypatch.setattr(storing, "_create_rows", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        dataset_import(name="doomed", folder=folder)
    assert (Dataset.objects.count(), Image.objects.count(), Finding.objects.count()) == (0, 0, 0)
    assert media_files(media_root) == []


def _fail_from(monkeypatch: pytest.MonkeyPatch, call: str, number: int, error: BaseException) -> list[int]:
    """From the ``number``-th media file written on (counting from 1), ``os.<call>`` in annotator.files
    raises ``error``: "fsync" fails each file half written (a disk filling up part-way through phase 2),
    "replace" fails just after the file landed under its name (an interrupt right after the rename).
    Returns the count of calls so far."""
    real, lock, calls = getattr(os, call), threading.Lock(), [0]

    def failing(*args: Any) -> None:
        with lock:  # the import writes on a few threads
            calls[0] += 1
            count = calls[0]
        if count >= number and call == "fsync":
            raise error  # the data never reached the disk: the temp file is half written
        real(*args)
        if count >= number:
            raise error  # the file is in place under its name

    monkeypatch.setattr(files.os, call, failing)
    return calls


def _nothing_left(media_root: Path) -> None:
    assert (Dataset.objects.count(), Image.objects.count(), Finding.objects.count()) == (0, 0, 0)
    assert Finding.concepts.through.objects.count() == 0
    assert media_files(media_root) == []  # temp files of the failed writes too


@pytest.mark.parametrize("number", [1, 2, 150], ids=["first-file", "second-file", "half-way"])
def test_a_disk_filling_up_while_writing_files_leaves_no_row_and_no_file(
    folder: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch, number: int
) -> None:
    calls = _fail_from(monkeypatch, "fsync", number, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space left"):
        dataset_import(name="doomed", folder=folder)
    assert calls[0] >= number  # the failure was reached
    _nothing_left(media_root)


def test_ctrl_c_just_after_a_file_is_written_leaves_no_row_and_no_file(
    folder: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_from(monkeypatch, "replace", 40, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        dataset_import(name="doomed", folder=folder)
    _nothing_left(media_root)


def test_an_image_changing_between_the_check_and_the_write_leaves_no_row_and_no_file(
    folder: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode_all = datasets.decode_all

    def decode_then_change(*args: Any, **kwargs: Any) -> Any:
        errors = decode_all(*args, **kwargs)
        _png(folder / "img/p049_MLO.png", np.zeros((H + 1, W), np.uint8))  # the last image, checked at H x W
        return errors

    monkeypatch.setattr(datasets, "decode_all", decode_then_change)
    with pytest.raises(ApplicationError, match=r"img/p049_MLO\.png changed during the import"):
        dataset_import(name="doomed", folder=folder)
    _nothing_left(media_root)


@pytest.mark.parametrize("stage", ["findings", "concept links"])
def test_a_failure_after_some_rows_are_inserted_leaves_no_row_and_no_file(
    folder: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """Every file is written and the images' rows (and for the links, the findings') are in; the next insert fails."""
    manager = Finding.objects if stage == "findings" else Finding.concepts.through.objects

    def explode(*args: Any, **kwargs: Any) -> None:
        assert Image.objects.count() == 100  # rows were inserted before this one failed
        raise DatabaseError("connection lost")

    monkeypatch.setattr(manager, "bulk_create", explode)
    with pytest.raises(DatabaseError, match="connection lost"):
        dataset_import(name="doomed", folder=folder)
    _nothing_left(media_root)


# --- CBIS-DDSM ---------------------------------------------------------------------------------

MASS_HEADER = (
    "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
    "mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,"
    "ROI mask file path"
)
CALC_HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
    "calc type,calc distribution,assessment,pathology,subtlety,image file path,"
    "cropped image file path,ROI mask file path"
)
CH, CW = 60, 40


def _cbis_case(root: Path, case: str, masks: list[np.ndarray], seed: int, crop_first: bool = True) -> None:
    """Write one case the way TCIA ships it: renamed inner folders, ROI mask beside the cropped image."""
    pixels = np.random.default_rng(seed).integers(0, 65536, size=(CH, CW), dtype=np.uint16)
    write_dicom(root / case / "07-20-2016-DDSM-74994" / "1.000000-full mammogram images-24515" / "1-1.dcm", pixels)
    for index, mask in enumerate(masks, start=1):
        series = root / f"{case}_{index}" / "08-29-2017-DDSM-96009" / "1.000000-ROI mask images-18374"
        crop = np.full((12, 9), 500, np.uint16)
        names = ("1-1.dcm", "1-2.dcm") if crop_first else ("1-2.dcm", "1-1.dcm")
        write_dicom(series / names[0], crop)
        write_dicom(series / names[1], mask)


def _cbis_path(case: str, name: str) -> str:
    return f"{case}/1.3.6.1.4.1.9590.100.1.2.4221127/1.3.6.1.4.1.9590.100.1.2.3423861/{name}"


@pytest.fixture
def cbis_folder(tmp_path: Path) -> Path:
    tree = tmp_path / "CBIS-DDSM"
    mask_a, mask_b, mask_c = (
        _box_mask(5, 15, 5, 12, (CH, CW)),
        _box_mask(30, 40, 20, 30, (CH, CW)),
        _box_mask(40, 50, 10, 14, (CH, CW)),
    )
    _cbis_case(tree, "Mass-Training_P_00001_LEFT_CC", [mask_a, mask_b], seed=1)
    _cbis_case(tree, "Mass-Training_P_00003_RIGHT_MLO", [mask_c], seed=2, crop_first=False)
    _cbis_case(tree, "Calc-Test_P_00002_RIGHT_MLO", [mask_a], seed=3)
    a, b, c = "Mass-Training_P_00001_LEFT_CC", "Mass-Training_P_00003_RIGHT_MLO", "Calc-Test_P_00002_RIGHT_MLO"
    mass_rows = [
        f"P_00001,3,LEFT,CC,1,mass,IRREGULAR,SPICULATED,5,MALIGNANT,4,{_cbis_path(a, '000000.dcm')},"
        f"{_cbis_path(a + '_1', '000000.dcm')},{_cbis_path(a + '_1', '000001.dcm')}",
        f"P_00001,3,LEFT,CC,2,mass,OVAL,CIRCUMSCRIBED,2,BENIGN_WITHOUT_CALLBACK,5,{_cbis_path(a, '000000.dcm')},"
        f"{_cbis_path(a + '_2', '000000.dcm')},{_cbis_path(a + '_2', '000001.dcm')}",
        f"P_00003,2,RIGHT,MLO,1,mass,LOBULATED-IRREGULAR,ILL_DEFINED,4,BENIGN,3,{_cbis_path(b, '000000.dcm')},"
        f"{_cbis_path(b + '_1', '000001.dcm')},{_cbis_path(b + '_1', '000000.dcm')}",
    ]
    calc_rows = [
        f"P_00002,4,RIGHT,MLO,1,calcification,PLEOMORPHIC,CLUSTERED,4,MALIGNANT,2,{_cbis_path(c, '000000.dcm')},"
        f"{_cbis_path(c + '_1', '000000.dcm')},{_cbis_path(c + '_1', '000001.dcm')}\n",
    ]
    (tmp_path / "mass_case_description_train_set.csv").write_text("\n".join([MASS_HEADER, *mass_rows]) + "\n")
    (tmp_path / "calc_case_description_test_set.csv").write_text("\n".join([CALC_HEADER, *calc_rows]) + "\n")
    return tmp_path


def test_cbis_words_map_to_concepts_where_clear() -> None:
    row = {"mass_shape": "LOBULATED-IRREGULAR", "mass_margins": "ILL_DEFINED", "calc_type": "N/A"}
    assert cbis_concepts(row) == ("mass_shape.oval", "mass_shape.irregular", "mass_margin.indistinct")
    row = {"calc_type": "PLEOMORPHIC-FINE_LINEAR_BRANCHING", "calc_distribution": "CLUSTERED"}
    assert cbis_concepts(row) == (
        "calc_suspicious.fine_pleomorphic",
        "calc_suspicious.fine_linear_or_fine_linear_branching",
        "calc_distribution.grouped",
    )
    assert cbis_concepts({"mass_shape": "SOMETHING_NEW"}) == ()


def test_cbis_ddsm_tree_imports_with_labels_findings_and_concepts(cbis_folder: Path) -> None:
    dataset = dataset_import(name="cbis", folder=cbis_folder, layout="cbis-ddsm")
    assert dataset.source == "cbis-ddsm" and dataset.images.count() == 3
    images = {image.patient_id: image for image in dataset.images.all()}
    left_cc = images["P_00001"]
    assert (left_cc.label, left_cc.view, left_cc.laterality, left_cc.modality) == ("malignant", "CC", "L", "MG")
    assert (left_cc.width, left_cc.height, left_cc.bit_depth) == (CW, CH, 16)
    assert left_cc.source_name.startswith("CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/07-20-2016-DDSM-74994/")
    assert left_cc.metadata["breast_density"] == 3 and left_cc.metadata["assessment"] == 5
    assert left_cc.metadata["cbis_split"] == "train"
    findings = {f.pathology: f for f in left_cc.findings.all()}
    assert sorted(c.code for c in findings["malignant"].concepts.all()) == [
        "mass_margin.spiculated",
        "mass_shape.irregular",
    ]
    assert sorted(c.code for c in findings["benign"].concepts.all()) == ["mass_margin.circumscribed", "mass_shape.oval"]
    assert "shape IRREGULAR, margins SPICULATED" in findings["malignant"].description
    assert "pathology BENIGN_WITHOUT_CALLBACK" in findings["benign"].description
    # The ROI mask (image-sized) was picked, not the 12x9 cropped image beside it.
    assert findings["malignant"].bbox == [5, 5, 12, 15] and findings["malignant"].area == 70
    assert findings["benign"].bbox == [20, 30, 30, 40]

    right_mlo = images["P_00003"]  # mask stored as 1-2.dcm, crop as 1-1.dcm, CSV naming swapped
    assert right_mlo.label == "benign" and right_mlo.laterality == "R"
    finding = right_mlo.findings.get()
    assert finding.bbox == [10, 40, 14, 50] and finding.lesion_type == "mass"
    assert sorted(c.code for c in finding.concepts.all()) == [
        "mass_margin.indistinct",
        "mass_shape.irregular",
        "mass_shape.oval",
    ]

    calc = images["P_00002"]
    assert calc.label == "malignant" and calc.metadata["cbis_split"] == "test" and calc.metadata["breast_density"] == 4
    finding = calc.findings.get()
    assert finding.lesion_type == "calcification"
    assert sorted(c.code for c in finding.concepts.all()) == [
        "calc_distribution.grouped",
        "calc_suspicious.fine_pleomorphic",
    ]


def test_cbis_rows_whose_dicom_cannot_be_found_are_bad_rows(cbis_folder: Path, media_root: Path) -> None:
    csv_path = cbis_folder / "mass_case_description_train_set.csv"
    missing = "Mass-Training_P_00009_LEFT_CC"
    extra = (
        f"P_00009,1,LEFT,CC,1,mass,OVAL,OBSCURED,3,BENIGN,3,{_cbis_path(missing, '000000.dcm')},"
        f"{_cbis_path(missing + '_1', '000000.dcm')},{_cbis_path(missing + '_1', '000001.dcm')}\n"
    )
    csv_path.write_text(csv_path.read_text() + extra + "P_00001,3,LEFT,CC,3,mass,OVAL,OBSCURED,3,CANCER,3,x,y,z\n")
    with pytest.raises(ApplicationError) as caught:
        dataset_import(name="cbis", folder=cbis_folder, layout="cbis-ddsm")
    errors = caught.value.extra["errors"]
    assert [(e["file"], e["line"]) for e in errors] == [
        ("mass_case_description_train_set.csv", 5),
        ("mass_case_description_train_set.csv", 6),
    ]
    assert errors[0]["reason"] == f"image not found: no DICOM file under a folder named {missing}"
    assert errors[1]["reason"] == "unknown pathology 'CANCER'"
    assert Dataset.objects.count() == 0 and media_files(media_root) == []


# --- the command -------------------------------------------------------------------------------


def test_command_prints_a_summary(folder: Path) -> None:
    out = StringIO()
    call_command("import_dataset", str(folder), "--name", "cmd", "--seed", "0", stdout=out)
    text = out.getvalue()
    assert "Imported dataset 'cmd': 100 images" in text
    assert "patients per split: train 40, test 5, holdout 5" in text
    assert "findings:           normal 20, benign 26, malignant 20" in text


def test_command_with_bad_rows_lists_them_and_raises(folder: Path) -> None:
    rows = build_folder(folder, n_patients=3)
    rows[0]["label"] = "cancer"
    rows[2]["mask_concepts"] = "nope"
    write_manifest(folder, rows, COLUMNS)
    err = StringIO()
    with pytest.raises(CommandError, match="2 bad rows in manifest; nothing was imported"):
        call_command("import_dataset", str(folder), "--name", "cmd", stderr=err)
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("line 2: unknown label 'cancer'")
    assert lines[1] == "line 4: unknown concept(s): nope"
    assert Dataset.objects.count() == 0


def test_command_exit_code_and_stderr_in_a_real_process(folder: Path, tmp_path: Path) -> None:
    rows = build_folder(folder, n_patients=2)
    rows[1]["image"] = "img/nope.png"
    write_manifest(folder, rows, COLUMNS)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url_for_subprocess(),
        "DEEPMINER_VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "import_dataset", str(folder), "--name", "proc", "--skip-checks"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "line 3: image file not found: img/nope.png" in result.stderr.splitlines()
    assert "CommandError: 1 bad row in manifest; nothing was imported" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "media").exists() or media_files(tmp_path / "media") == []
