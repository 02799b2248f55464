"""Tests for mining.phantoms: determinism, the planted truth (labels, masks, concepts), the class mix,
and that the findings are really in the pixels."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull

from mining.birads import LEXICON
from mining.phantoms import KINDS, PhantomImage, generate_mammogram_phantoms, render_mammogram_phantom
from mining.phantoms.mammograms import _MUSCLE_EDGE_HALF, _Breast, _convex_hull_mask, _muscle_edge_band

CODES = {term.code for term in LEXICON}
LYMPH_NODE = "special_case.intramammary_lymph_node"
ANATOMY = {"anatomy.skin_line", "anatomy.normal_vessels", "anatomy.pectoral_muscle", "anatomy.nipple", LYMPH_NODE}


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


def canonical(im: PhantomImage, array: np.ndarray) -> np.ndarray:
    """``array`` (H, W) in the generator's frame: chest wall on the left."""
    return array[:, ::-1] if im.laterality == "R" else array


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
    node_counts = []
    for im in phantoms:
        found = [f for f in im.findings if f.lesion_type == "anatomy"]
        assert all(len(f.concepts) == 1 and f.concepts[0] in ANATOMY for f in found)
        codes = Counter(f.concepts[0] for f in found)
        assert codes["anatomy.skin_line"] == codes["anatomy.normal_vessels"] == codes["anatomy.nipple"] == 1
        assert codes["anatomy.pectoral_muscle"] == (im.view == "MLO")
        assert codes[LYMPH_NODE] <= 3
        node_counts.append(codes[LYMPH_NODE])
        assert all(f.pathology == "normal" and f.mask.any() for f in found)
    assert 0 in node_counts and max(node_counts) >= 1  # lymph nodes on some images, not all


def test_localized_anatomy_masks_are_small_relative_to_the_breast(phantoms: list[PhantomImage]) -> None:
    """The nipple, lymph nodes and the muscle's edge are masked as structures a unit's mask (tens of px
    across) can outline, not whole regions: a whole-muscle mask would dwarf any unit's."""
    largest = {"anatomy.nipple": 0.01, LYMPH_NODE: 0.008, "anatomy.pectoral_muscle": 0.04}
    for im in phantoms:
        tissue = breast_mask(im).sum()
        for f in im.findings:
            code = f.concepts[0]
            if code in largest:
                assert f.mask.sum() <= largest[code] * tissue, (im.patient_id, im.view, code)
                assert ndi.label(f.mask)[1] == 1, (im.patient_id, im.view, code)  # one piece


def test_muscle_edge_band_lies_along_the_muscle_boundary(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        bands = [canonical(im, f.mask) for f in im.findings if f.concepts == ("anatomy.pectoral_muscle",)]
        if im.view == "CC":
            assert not bands
            continue
        (band,) = bands
        pixels = canonical(im, im.pixels).astype(np.float32)
        rows = np.flatnonzero(band.any(axis=1))
        assert np.ptp(rows) >= 150  # along the edge, from the top of the image towards the apex
        runs, muscle_side, breast_side = [], [], []
        for y in rows:
            xs = np.flatnonzero(band[y])
            assert np.ptp(xs) + 1 == xs.size  # one run per row: the edge crosses each row once
            runs.append(xs.size)
            if xs[0] >= 6:
                muscle_side.append(pixels[y, xs[0] - 6 : xs[0]].mean())
                breast_side.append(pixels[y, xs[-1] + 1 : xs[-1] + 7].mean())
        # About twice the half-width, wider only near the apex where the edge turns towards the chest wall.
        assert np.median(runs) <= 2 * _MUSCLE_EDGE_HALF + 3 and max(runs) <= 5 * _MUSCLE_EDGE_HALF
        # The bright muscle is on the chest-wall side of the band, the breast on the other.
        assert np.mean(muscle_side) > np.mean(breast_side) + 5, (im.patient_id, im.view)


def test_muscle_edge_band_of_a_known_triangle() -> None:
    h, w = 200, 300
    ys, xs = np.mgrid[0:h, 0:w]
    breast = xs < 250
    pectoral = (xs < 80 - 0.8 * ys) & breast
    geometry = _Breast(breast, np.zeros((h, w), np.float32), pectoral, 100.0, 250.0, 1.0, (100.0, 250.0), 0.0)
    band = _muscle_edge_band(geometry, 4.0)
    edge = pectoral & ~ndi.binary_erosion(pectoral, border_value=1)  # muscle pixels next to breast tissue
    assert edge.any() and band[edge].all()
    # Every band pixel is within the half-width of the edge, and only breast pixels are in it.
    assert (ndi.distance_transform_edt(~edge)[band] <= 4.0 + 1.0).all()
    assert not band[~breast].any()
    # The muscle's sides on the image border are not its edge.
    assert not band[0, :60].any() and not band[:70, 0].any()
    assert band[0, 78] and band[50, 40]


def test_nipple_sits_on_the_outline_at_the_breast_apex(phantoms: list[PhantomImage]) -> None:
    for im in phantoms:
        (nipple,) = [canonical(im, f.mask) for f in im.findings if f.concepts == ("anatomy.nipple",)]
        tissue = canonical(im, breast_mask(im))
        apex = np.flatnonzero(tissue.any(axis=0)).max()  # the breast's furthest column from the chest wall
        assert np.flatnonzero(nipple.any(axis=0)).max() >= apex - 2
        ring = ring_around(nipple, 8) & tissue
        pixels = canonical(im, im.pixels).astype(np.float32)
        assert pixels[nipple].mean() > pixels[ring].mean() + 6, (im.patient_id, im.view)


def test_lymph_nodes_are_small_ovals_denser_than_their_surroundings(phantoms: list[PhantomImage]) -> None:
    contrasts = []
    for im, mask in abnormal(phantoms, LYMPH_NODE):
        ys, xs = np.nonzero(mask)
        assert 12 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 32  # 5-8 mm nodes plus the mask's margin
        ring = ring_around(mask, 6) & breast_mask(im)
        contrasts.append(im.pixels[mask].mean() - im.pixels[ring].mean())
    assert len(contrasts) >= 10
    assert min(contrasts) > 2 and np.median(contrasts) > 20  # faint in dense tissue, plain in fat


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
                assert not (f.mask & anatomy["anatomy.nipple"]).any()
                if "anatomy.pectoral_muscle" in anatomy:  # the band along the muscle's edge
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
