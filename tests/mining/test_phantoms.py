"""Tests for mining.phantoms: determinism, the planted truth (labels, masks, concepts), the class mix,
and that the findings are really in the pixels."""

from __future__ import annotations

import json
import time
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull

from mining.birads import LEXICON
from mining.phantoms import KINDS, PhantomImage, generate_mammogram_phantoms, render_mammogram_phantom
from mining.phantoms.mammograms import _convex_hull_mask

CODES = {term.code for term in LEXICON}


@pytest.fixture(scope="module")
def phantoms() -> list[PhantomImage]:
    """20 patients (two blocks of ten), every kind present for this seed."""
    images = list(generate_mammogram_phantoms(40, seed=11))
    assert {im.metadata["kind"] for im in images} == set(KINDS)
    return images


def breast_mask(im: PhantomImage) -> np.ndarray:
    """Bool (H, W): the breast as seen in the pixels (the background is near black)."""
    return ndi.gaussian_filter(im.pixels.astype(np.float32), 1.0) > 20


def ring_around(mask: np.ndarray, width: int) -> np.ndarray:
    return ndi.binary_dilation(mask, iterations=width) & ~mask


def abnormal(images: list[PhantomImage], concept: str) -> list[tuple[PhantomImage, np.ndarray]]:
    return [(im, f.mask) for im in images for f in im.findings if concept in f.concepts]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_images() -> None:
    first = list(generate_mammogram_phantoms(4, seed=3))
    second = list(generate_mammogram_phantoms(4, seed=3))
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.pixels, b.pixels)
        assert a.metadata == b.metadata
        assert [f.concepts for f in a.findings] == [f.concepts for f in b.findings]
        assert all(np.array_equal(fa.mask, fb.mask) for fa, fb in zip(a.findings, b.findings, strict=True))


def test_different_seeds_give_different_images() -> None:
    a = next(generate_mammogram_phantoms(1, seed=1))
    b = next(generate_mammogram_phantoms(1, seed=2))
    assert np.mean(a.pixels != b.pixels) > 0.5


def test_an_image_does_not_depend_on_how_many_are_generated() -> None:
    short = list(generate_mammogram_phantoms(3, seed=5))
    long = list(generate_mammogram_phantoms(7, seed=5))
    for a, b in zip(short, long[:3], strict=True):
        assert np.array_equal(a.pixels, b.pixels)
        assert a.patient_id == b.patient_id and a.label == b.label


def test_render_is_deterministic_for_a_generator_state() -> None:
    kwargs = {"patient_id": "P0001", "view": "MLO", "laterality": "L", "kind": "malignant_mass"}
    a = render_mammogram_phantom(np.random.default_rng(9), **kwargs)
    b = render_mammogram_phantom(np.random.default_rng(9), **kwargs)
    assert np.array_equal(a.pixels, b.pixels)


# --------------------------------------------------------------------------- structure and labels


def test_shapes_dtypes_and_metadata(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        assert im.pixels.dtype == np.uint8 and im.pixels.shape == (640, 512)
        assert im.view in ("CC", "MLO") and im.laterality in ("L", "R")
        assert im.patient_id.startswith("P") and len(im.patient_id) == 5
        for f in im.findings:
            assert f.mask.dtype == bool and f.mask.shape == im.pixels.shape
            assert f.pathology in ("normal", "benign", "malignant")
            assert f.lesion_type in ("mass", "calcification", "anatomy")
            assert f.concepts and set(f.concepts) <= CODES
        meta = json.loads(json.dumps(im.metadata))  # JSON-serialisable as is
        assert meta == im.metadata
        assert isinstance(meta["age"], int) and 40 <= meta["age"] < 80
        assert meta["density"] in ("a", "b", "c", "d")
        if im.label == "normal":
            assert meta["subtlety"] is None
        else:
            assert meta["subtlety"] in (1, 2, 3, 4, 5)


def test_other_sizes_work() -> None:
    im = next(generate_mammogram_phantoms(1, seed=4, width=256, height=320))
    assert im.pixels.shape == (320, 256)
    assert all(f.mask.shape == (320, 256) and f.mask.any() for f in im.findings)


def test_label_follows_the_findings(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        pathologies = {f.pathology for f in im.findings}
        expected = "malignant" if "malignant" in pathologies else "benign" if "benign" in pathologies else "normal"
        assert im.label == expected


def test_each_kind_plants_its_concepts() -> None:
    expected = {
        "benign_mass": ("benign", "mass", ("mass_shape.oval", "mass_margin.circumscribed")),
        "malignant_mass": ("malignant", "mass", ("mass_shape.irregular", "mass_margin.spiculated")),
        "malignant_calcification": (
            "malignant",
            "calcification",
            ("calc_suspicious.fine_pleomorphic", "calc_distribution.grouped"),
        ),
        "benign_calcification": ("benign", "calcification", ("calc_benign.vascular",)),
    }
    for i, kind in enumerate(KINDS):
        im = render_mammogram_phantom(
            np.random.default_rng(i), patient_id="P0000", view="CC", laterality="R", kind=kind
        )
        planted = [(f.pathology, f.lesion_type, f.concepts) for f in im.findings if f.pathology != "normal"]
        assert planted == ([expected[kind]] if kind != "normal" else [])
        assert im.label == (expected[kind][0] if kind != "normal" else "normal")


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown phantom kind"):
        render_mammogram_phantom(np.random.default_rng(0), patient_id="P", view="CC", laterality="L", kind="cyst")


def test_normal_anatomy_is_on_every_image(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        anatomy = {f.concepts[0]: f for f in im.findings if f.lesion_type == "anatomy"}
        assert {"anatomy.skin_line", "anatomy.normal_vessels"} <= anatomy.keys()
        assert ("anatomy.pectoral_muscle" in anatomy) == (im.view == "MLO")
        assert all(f.pathology == "normal" and f.mask.any() for f in anatomy.values())


# --------------------------------------------------------------------------- patients and class mix


def test_patients_have_a_cc_and_an_mlo_view_of_one_breast(phantoms: list[PhantomImage]) -> None:
    for cc, mlo in zip(phantoms[0::2], phantoms[1::2], strict=True):
        assert (cc.view, mlo.view) == ("CC", "MLO")
        assert cc.patient_id == mlo.patient_id and cc.laterality == mlo.laterality
        assert cc.label == mlo.label
        for key in ("age", "density", "kind"):
            assert cc.metadata[key] == mlo.metadata[key]
    assert len({im.patient_id for im in phantoms}) == len(phantoms) // 2


def test_exactly_n_images_even_when_odd() -> None:
    images = list(generate_mammogram_phantoms(3, seed=0, width=128, height=160))
    assert [im.view for im in images] == ["CC", "MLO", "CC"]
    assert [im.patient_id for im in images] == ["P0000", "P0000", "P0001"]


def test_class_mix_is_about_40_30_30() -> None:
    images = list(generate_mammogram_phantoms(100, seed=21, width=256, height=320))
    counts = Counter(im.label for im in images)
    assert 35 <= counts["normal"] <= 45
    assert 25 <= counts["benign"] <= 35
    assert 25 <= counts["malignant"] <= 35
    kinds = Counter(im.metadata["kind"] for im in images)
    assert all(kinds[k] >= 6 for k in KINDS)  # every kind is represented, not just every class
    assert set(Counter(im.metadata["density"] for im in images)) >= {"b", "c"}


def test_laterality_puts_the_chest_wall_on_its_side(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        tissue = breast_mask(im)
        left, right = tissue[:, 0].sum(), tissue[:, -1].sum()
        assert (left > right) == (im.laterality == "L")


# --------------------------------------------------------------------------- masks and pixels


def test_every_finding_mask_lies_inside_the_breast(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        tissue = breast_mask(im)
        for f in im.findings:
            assert f.mask.any()
            assert tissue[f.mask].mean() > 0.97, (im.patient_id, im.view, f.concepts)


def test_lesions_stay_off_the_skin_and_the_muscle(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        anatomy = {f.concepts[0]: f.mask for f in im.findings if f.lesion_type == "anatomy"}
        for f in im.findings:
            if f.lesion_type == "mass":
                assert not (f.mask & anatomy["anatomy.skin_line"]).any()
                if "anatomy.pectoral_muscle" in anatomy:
                    assert not (f.mask & anatomy["anatomy.pectoral_muscle"]).any()


def test_masses_have_the_size_a_128_px_patch_can_hold(phantoms: list[PhantomImage]) -> None:
    masses = [mask for im in phantoms for f in im.findings if f.lesion_type == "mass" for mask in [f.mask]]
    assert masses
    for mask in masses:
        ys, xs = np.nonzero(mask)
        extent = max(np.ptp(ys), np.ptp(xs)) + 1
        assert 20 <= extent <= 100


def test_malignant_masses_are_brighter_than_their_surroundings(phantoms: list[PhantomImage]) -> None:
    found = abnormal(phantoms, "mass_margin.spiculated")
    assert found
    for im, mask in found:
        ring = ring_around(mask, 10) & breast_mask(im)
        inside, around = im.pixels[mask].mean(), im.pixels[ring].mean()
        assert inside > around + 3, (im.patient_id, im.view, inside, around)


def test_calcification_cluster_mask_is_the_hull_of_its_specks(phantoms: list[PhantomImage]) -> None:
    found = abnormal(phantoms, "calc_suspicious.fine_pleomorphic")
    assert found
    for im, mask in found:
        # Specks: pixels well above their local median, searched in a window around the mask.
        pixels = im.pixels.astype(np.float32)
        tophat = pixels - ndi.median_filter(pixels, size=7)
        window = ndi.binary_dilation(mask, iterations=12)
        specks = (tophat > 40) & window
        assert specks.sum() >= 10, "too few visible specks to be learnable"
        assert specks[mask].sum() >= 0.95 * specks.sum(), "specks outside the cluster mask"
        # The mask is the filled hull, far larger than the dots themselves ...
        assert mask.sum() >= 4 * specks.sum()
        speck_hull = ConvexHull(np.argwhere(specks & mask)).volume
        assert speck_hull <= mask.sum() <= 3 * speck_hull + 60
        # ... and convex: it fills its own hull.
        assert mask.sum() >= 0.95 * ConvexHull(np.argwhere(mask)).volume
        ys, xs = np.nonzero(mask)
        assert 12 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 50


def test_convex_hull_mask_fills_a_known_triangle() -> None:
    points = np.array([[10, 10], [10, 30], [30, 10], [15, 15], [12, 20]], dtype=float)
    mask = _convex_hull_mask((40, 40), points, grow=0.0)
    assert mask[10, 10] and mask[10, 30] and mask[30, 10] and mask[15, 15]
    assert not mask[25, 25] and not mask[5, 5]
    assert abs(int(mask.sum()) - 231) <= 25  # the right triangle with legs of 21 px holds 231 pixels


def test_vascular_calcifications_are_bright_lines_inside_a_band(phantoms: list[PhantomImage]) -> None:
    found = abnormal(phantoms, "calc_benign.vascular")
    assert found
    for im, mask in found:
        ring = ring_around(mask, 6) & breast_mask(im)
        assert np.quantile(im.pixels[mask], 0.95) > im.pixels[ring].mean() + 30
        # A band, not a blob: much longer than it is wide.
        ys, xs = np.nonzero(mask)
        assert max(np.ptp(ys), np.ptp(xs)) >= 25


def test_background_is_near_black_and_tissue_is_not(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        tissue = breast_mask(im)
        outside = ~ndi.binary_dilation(tissue, iterations=3)
        assert im.pixels[outside].mean() < 12
        assert im.pixels[tissue].mean() > 50
        assert 0.25 < tissue.mean() < 0.9


def test_denser_breasts_are_brighter() -> None:
    images = list(generate_mammogram_phantoms(60, seed=8, width=256, height=320))
    by_density: dict[str, list[float]] = {}
    for im in images:
        by_density.setdefault(im.metadata["density"], []).append(float(im.pixels[breast_mask(im)].mean()))
    means = {d: np.mean(v) for d, v in by_density.items()}
    present = sorted(means)
    assert len(present) >= 3
    assert all(means[a] < means[b] for a, b in pairwise(present))


def test_generation_is_fast() -> None:
    start = time.perf_counter()
    list(generate_mammogram_phantoms(10, seed=1))
    per_image = (time.perf_counter() - start) / 10
    assert per_image < 0.5  # target 0.1 s; loose, as test machines are noisy
