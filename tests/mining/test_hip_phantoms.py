"""Tests for mining.phantoms.hips: determinism, shapes, the truth in the metadata, the descriptor mix,
that each fracture is drawn where its box says (generation speed is timed in bench/generators.py)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage as ndi

from mining.phantoms import PhantomImage
from mining.phantoms import generate_hip_phantoms as from_package
from mining.phantoms.hips import _patient_attributes, generate_hip_phantoms, render_hip_phantom
from mining.sentence_parse import parse_sentence
from mining.sentences import DISPLACEMENTS, LOCATIONS, FractureDescriptors

SEED = 2
N_IMAGES = 200


@pytest.fixture(scope="module")
def phantoms() -> list[PhantomImage]:
    """The 200 images most tests look at."""
    return generate_hip_phantoms(N_IMAGES, seed=SEED)


def unbroken_twin(seed: int, index: int, descriptors: FractureDescriptors) -> tuple[PhantomImage, PhantomImage]:
    """Patient ``index`` rendered with ``descriptors`` and, from the same generator state, unbroken."""
    attrs = _patient_attributes(seed, index)
    kwargs = {"patient_id": "H", "laterality": attrs["laterality"], "age": attrs["age"], "sex": attrs["sex"]}
    broken = render_hip_phantom(np.random.default_rng([seed, 6, index]), descriptors=descriptors, **kwargs)
    whole = render_hip_phantom(
        np.random.default_rng([seed, 6, index]), descriptors=FractureDescriptors(False), **kwargs
    )
    return broken, whole


def box_mask(shape: tuple[int, int], box: list[int], grow: int = 0) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros(shape, dtype=bool)
    mask[max(y0 - grow, 0) : y1 + grow + 1, max(x0 - grow, 0) : x1 + grow + 1] = True
    return mask


# --------------------------------------------------------------------------- determinism and shapes


def test_same_seed_gives_identical_images() -> None:
    first, second = generate_hip_phantoms(4, seed=3), generate_hip_phantoms(4, seed=3)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.pixels, b.pixels)
        assert a.metadata == b.metadata and a.laterality == b.laterality


def test_different_seeds_give_different_images() -> None:
    a, b = generate_hip_phantoms(1, seed=1)[0], generate_hip_phantoms(1, seed=2)[0]
    assert np.mean(a.pixels != b.pixels) > 0.5


def test_an_image_does_not_depend_on_how_many_are_generated() -> None:
    short, long = generate_hip_phantoms(3, seed=5), generate_hip_phantoms(7, seed=5)
    for a, b in zip(short, long[:3], strict=True):
        assert np.array_equal(a.pixels, b.pixels) and a.metadata == b.metadata


def test_the_package_exports_the_hip_generator() -> None:
    assert from_package is generate_hip_phantoms


@pytest.mark.parametrize(("width", "height"), [(512, 512), (256, 320), (160, 128)])
def test_shape_and_dtype(width: int, height: int) -> None:
    for image in generate_hip_phantoms(6, seed=0, width=width, height=height):
        assert image.pixels.shape == (height, width) and image.pixels.dtype == np.uint8
        box = image.metadata.get("fracture_bbox")
        if box:
            assert 0 <= box[0] <= box[2] < width and 0 <= box[1] <= box[3] < height


def test_left_is_the_mirror_of_right() -> None:
    descriptors = FractureDescriptors(True, "moderately displaced", True, False, "intertrochanteric", True)
    kwargs = {"patient_id": "H", "descriptors": descriptors, "age": 80, "sex": "F"}
    right = render_hip_phantom(np.random.default_rng(4), laterality="R", **kwargs)
    left = render_hip_phantom(np.random.default_rng(4), laterality="L", **kwargs)
    assert np.array_equal(left.pixels, right.pixels[:, ::-1])
    x0, y0, x1, y1 = right.metadata["fracture_bbox"]
    assert left.metadata["fracture_bbox"] == [511 - x1, y0, 511 - x0, y1]


def test_looks_like_a_radiograph(phantoms: list[PhantomImage]) -> None:
    """Air near black, bone bright, the full grey range used; the femoral head side is brighter
    (bone) than the lateral soft tissue side."""
    for image in phantoms[:20]:
        lo, median, hi = np.percentile(image.pixels, [1, 50, 99.5])
        assert lo < 40 and 50 < median < 180 and hi > 190
        columns = image.pixels.mean(axis=0)
        lateral, medial = (
            (columns[:100], columns[-200:]) if image.laterality == "R" else (columns[-100:], columns[:200])
        )
        assert medial.mean() > lateral.mean()


def test_refuses_incomplete_descriptors_and_bad_laterality() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="location"):
        render_hip_phantom(
            rng, patient_id="H", laterality="R", descriptors=FractureDescriptors(True, "undisplaced"), age=80, sex="F"
        )
    with pytest.raises(ValueError, match="laterality"):
        render_hip_phantom(rng, patient_id="H", laterality="X", descriptors=FractureDescriptors(False), age=80, sex="F")


# --------------------------------------------------------------------------- truth


def test_labels_and_metadata_agree(phantoms: list[PhantomImage]) -> None:
    keys = set(FractureDescriptors(False).as_dict())
    for number, image in enumerate(phantoms, start=1):
        assert image.patient_id == f"H{number:04d}" and image.view == "AP" and image.findings == []
        assert image.laterality in ("L", "R") and image.metadata["sex"] in ("F", "M")
        assert 50 <= image.metadata["age"] <= 99
        truth = FractureDescriptors.from_dict(image.metadata)
        assert truth.validate() == []
        assert image.label == ("fracture" if truth.fracture else "no_fracture")
        # The report reads back, through the grammar's parser rather than the call that wrote it, as the truth.
        assert parse_sentence(image.metadata["report"]) == truth
        expected = keys | {"report", "age", "sex"} | ({"fracture_bbox"} if truth.fracture else set())
        assert set(image.metadata) == expected
        assert {k: image.metadata[k] for k in keys} == truth.as_dict()
        assert json.loads(json.dumps(image.metadata)) == image.metadata  # plain JSON values


def test_sixty_percent_fractured_and_every_descriptor_occurs(phantoms: list[PhantomImage]) -> None:
    assert Counter(image.label for image in phantoms) == {"fracture": 120, "no_fracture": 80}
    fractures = [image.metadata for image in phantoms if image.metadata["fracture"]]
    assert set(Counter(m["location"] for m in fractures)) == set(LOCATIONS)
    assert set(Counter(m["displacement"] for m in fractures)) == set(DISPLACEMENTS)
    for flag in ("comminuted", "impacted", "avulsed_fragment"):
        assert 0 < sum(m[flag] for m in fractures) < len(fractures)
    assert Counter(image.laterality for image in phantoms)["L"] in range(70, 131)


# --------------------------------------------------------------------------- the fracture is in the pixels


def test_an_undisplaced_fracture_changes_only_pixels_near_its_box() -> None:
    """Same hip with and without a thin undisplaced crack: the image darkens along a line inside the
    box, and nothing changes farther from it than the image processing reaches (~60 px)."""
    for index, location in enumerate(LOCATIONS):
        descriptors = FractureDescriptors(True, "undisplaced", location=location)
        broken, whole = unbroken_twin(7, index, descriptors)
        diff = whole.pixels.astype(int) - broken.pixels.astype(int)
        inside = box_mask(diff.shape, broken.metadata["fracture_bbox"])
        assert not diff[~box_mask(diff.shape, broken.metadata["fracture_bbox"], grow=64)].any()
        assert np.percentile(diff[inside], 99) > 20, location  # a lucent line
        assert diff[inside].mean() > 0.5


@pytest.mark.parametrize("displacement", DISPLACEMENTS)
def test_every_fracture_is_visible_inside_its_box(displacement: str) -> None:
    for index, location in enumerate(LOCATIONS):
        for comminuted, impacted, avulsed in ((False, False, False), (True, True, True)):
            descriptors = FractureDescriptors(True, displacement, comminuted, impacted, location, avulsed)
            broken, whole = unbroken_twin(11, index, descriptors)
            diff = np.abs(whole.pixels.astype(int) - broken.pixels.astype(int))
            inside = box_mask(diff.shape, broken.metadata["fracture_bbox"])
            assert np.percentile(diff[inside], 99) > 20, descriptors
            assert 0.002 < inside.mean() < 0.25  # a box around the fracture, not the whole image


def test_more_displacement_changes_more(phantoms: list[PhantomImage]) -> None:
    changes: dict[str, list[float]] = {name: [] for name in DISPLACEMENTS}
    for index in range(60):
        attrs = _patient_attributes(SEED, index)
        truth = attrs["descriptors"]
        if truth.fracture:
            broken, whole = unbroken_twin(SEED, index, truth)
            assert np.array_equal(broken.pixels, phantoms[index].pixels)  # the twin is the generated image
            changes[str(truth.displacement)].append(np.abs(broken.pixels.astype(int) - whole.pixels).mean())
    means = [np.mean(changes[name]) for name in DISPLACEMENTS]
    assert means[0] < means[1] < means[3] and means[0] < means[2] < means[3]


def test_boxes_sit_where_the_location_says(phantoms: list[PhantomImage]) -> None:
    """Down the femur: subcapital boxes highest, then basicervical, subtrochanteric lowest."""
    rows: dict[str, list[float]] = {name: [] for name in LOCATIONS}
    for image in phantoms:
        if image.metadata["fracture"]:
            box = image.metadata["fracture_bbox"]
            rows[image.metadata["location"]].append((box[1] + box[3]) / 2)
    mean = {name: np.mean(values) for name, values in rows.items()}
    assert mean["subcapital"] < mean["transcervical"] < mean["basicervical"] < mean["subtrochanteric"]
    assert mean["subcapital"] < mean["intertrochanteric"] < mean["subtrochanteric"]


def test_an_avulsed_fragment_is_separate_bone() -> None:
    """The avulsed lesser trochanter is bright bone with soft tissue between it and the femur."""
    descriptors = FractureDescriptors(True, "undisplaced", location="subcapital", avulsed_fragment=True)
    broken, whole = unbroken_twin(3, 0, descriptors)
    diff = broken.pixels.astype(int) - whole.pixels.astype(int)
    inside = box_mask(diff.shape, broken.metadata["fracture_bbox"])
    gained = ndi.gaussian_filter((diff * inside).astype(float), 2) > 15  # the fragment's new place
    lost = ndi.gaussian_filter((-diff * inside).astype(float), 2) > 15  # the bare bed on the femur
    assert gained.sum() > 20 and lost.sum() > 20
