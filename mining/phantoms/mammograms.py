"""Seeded mammogram-like phantoms with planted findings whose BI-RADS concepts and masks are known.

No real mammograms can be had offline, so the demo and the tests train and mine on these. Because
the truth is known, tests can check what real data cannot: that a unit is selective for a planted
concept (IoU of its mask with the concept mask) and that an explanation names the planted finding.

Each image is a processed-mammogram look-alike: uint8 (H, W), bright = dense, background near black.
It holds a breast silhouette (MLO views with a pectoral muscle), fibroglandular texture whose amount
follows the BI-RADS composition a-d, curving normal vessels, a bright skin line, quantum-like noise,
and possibly one abnormal finding (malignant images sometimes also get benign vascular calcifications):

- ``benign_mass``: circumscribed oval mass -> benign "mass",
  ("mass_shape.oval", "mass_margin.circumscribed"); faint in dense tissue, the hard case.
- ``malignant_mass``: spiculated irregular mass -> malignant "mass",
  ("mass_shape.irregular", "mass_margin.spiculated"); the mask covers the spicules' roots.
- ``malignant_calcification``: 20-45 fine pleomorphic specks within 24-44 px -> malignant
  "calcification", ("calc_suspicious.fine_pleomorphic", "calc_distribution.grouped");
  the mask is the cluster's convex hull.
- ``benign_calcification``: coarse tram-track calcifications along a vessel -> benign
  "calcification", ("calc_benign.vascular",); the mask is a band around them.

Every image also carries normal-anatomy findings (pathology "normal", lesion_type "anatomy"): the
skin line, the normal vessels, the nipple (a bump of the outline on the nipple axis and the dense
retroareolar tissue behind it), one to three intramammary lymph nodes (small dense ovals with a fatty
hilum, "special_case.intramammary_lymph_node") and, on MLO views, the pectoral muscle. Network
Dissection's IoU of a unit with a concept can never exceed |unit mask| / |concept mask| summed over a
split, and a unit's mask at its top-0.5% level covers well under 1% of the split's pixels, so compact
structures are masked as themselves and the muscle as a band along its edge, not as the whole muscle.

Geometry is built in a canonical frame with the chest wall on the left (x = 0) and mirrored at the
end for right breasts, so "L" images have the chest wall at the left edge and "R" at the right edge.
Lengths are given for a 512-px-wide image and scale with ``width``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from mining.birads import by_code

from .common import PhantomImage, PlantedFinding, smooth_noise_1d, smoothstep

__all__ = ["KINDS", "generate_mammogram_phantoms", "render_mammogram_phantom"]

KINDS: tuple[str, ...] = (
    "normal",
    "benign_mass",
    "malignant_mass",
    "malignant_calcification",
    "benign_calcification",
)

# kind -> (pathology, lesion_type, concepts)
_FINDING_SPECS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "benign_mass": ("benign", "mass", ("mass_shape.oval", "mass_margin.circumscribed")),
    "malignant_mass": ("malignant", "mass", ("mass_shape.irregular", "mass_margin.spiculated")),
    "malignant_calcification": (
        "malignant",
        "calcification",
        ("calc_suspicious.fine_pleomorphic", "calc_distribution.grouped"),
    ),
    "benign_calcification": ("benign", "calcification", ("calc_benign.vascular",)),
}
# Fail at import, not in a demo, if the lexicon and the generator drift apart.
for _spec in _FINDING_SPECS.values():
    for _code in _spec[2]:
        by_code(_code)

_DENSITIES = ("a", "b", "c", "d")
# Share of the breast that is fibroglandular, per BI-RADS composition.
_DENSE_FRACTION = {"a": (0.02, 0.08), "b": (0.1, 0.22), "c": (0.3, 0.45), "d": (0.55, 0.7)}
_DENSITY_TEXT = {
    "a": "The breasts are almost entirely fatty.",
    "b": "There are scattered areas of fibroglandular density.",
    "c": "The breasts are heterogeneously dense, which may obscure small masses.",
    "d": "The breasts are extremely dense, which lowers the sensitivity of mammography.",
}
# Patients are drawn in blocks of ten so every block holds exactly 4 normal, 3 benign, 3 malignant.
_CLASS_BLOCK = ("normal",) * 4 + ("benign",) * 3 + ("malignant",) * 3
_MM_PER_PX_AT_512 = 0.35  # a 512-px-wide phantom spans about 18 cm, like a film-screen mammogram
_GENERATOR = "deepminer-mammogram-phantom/2"
_COARSE = 2  # the parenchyma is built at 1/_COARSE resolution, then upsampled
# Normal anatomy is masked as structures a unit's mask can outline, at a 512-px width: the pectoral
# muscle as a band along its edge, the nipple as a half-disc, each lymph node as its oval.
_MUSCLE_EDGE_HALF = 6.0  # half-width of the muscle-edge band, px
_NIPPLE_RADIUS = 22.0  # radius of the nipple-areola mask, px
_LYMPH_NODE = "special_case.intramammary_lymph_node"
for _code in (_LYMPH_NODE, "anatomy.nipple", "anatomy.pectoral_muscle", "anatomy.skin_line", "anatomy.normal_vessels"):
    by_code(_code)


@dataclass
class _Breast:
    """Geometry in the canonical frame (chest wall at x = 0); all arrays (H, W)."""

    mask: np.ndarray  # bool, breast including the pectoral muscle
    skin_dist: np.ndarray  # float32, distance in px to the skin (not to the image border)
    pectoral: np.ndarray  # bool, empty on CC views
    center_y: float  # row of the nipple axis
    depth: float  # chest wall to nipple, px
    scale: float  # width / 512
    nipple: tuple[float, float]  # (y, x) of the nipple's base on the outline, under its bump
    nipple_length: float  # how far the nipple stands out of the outline, px


# --------------------------------------------------------------------------- public API


def generate_mammogram_phantoms(
    n_images: int, seed: int, width: int = 512, height: int = 640
) -> Iterator[PhantomImage]:
    """Yield exactly ``n_images`` phantoms: patients with a CC then an MLO view of the same breast.

    Image ``i`` is view ``i % 2`` of patient ``i // 2`` and depends only on ``(seed, i)``, not on
    ``n_images``, so a longer run extends a shorter one (an odd count ends on a lone CC view).
    The class mix is exactly 40% normal / 30% benign / 30% malignant patients per block of ten.
    ``seed`` must be a non-negative int.
    """
    for index in range(n_images):
        patient, view_index = divmod(index, 2)
        attrs = _patient_attributes(seed, patient)
        rng = np.random.default_rng([seed, 2, patient, view_index])
        yield render_mammogram_phantom(
            rng,
            patient_id=f"P{patient:04d}",
            view=("CC", "MLO")[view_index],
            laterality=attrs["laterality"],
            kind=attrs["kind"],
            width=width,
            height=height,
            density=attrs["density"],
            age=attrs["age"],
            extra_findings=attrs["extra_findings"],
        )


def render_mammogram_phantom(
    rng: np.random.Generator,
    *,
    patient_id: str,
    view: str,
    laterality: str,
    kind: str,
    width: int = 512,
    height: int = 640,
    density: str | None = None,
    age: int | None = None,
    extra_findings: Sequence[str] = (),
) -> PhantomImage:
    """Render one phantom with a finding of ``kind`` (one of ``KINDS``) and any ``extra_findings``.

    ``density`` (BI-RADS composition "a".."d") and ``age`` are drawn from ``rng`` when not given;
    pass them to keep both views of a patient alike. All randomness comes from ``rng``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; expected one of {KINDS}")
    if view not in ("CC", "MLO") or laterality not in ("L", "R"):
        raise ValueError(f"view must be CC/MLO and laterality L/R, got {view!r}/{laterality!r}")
    age = int(rng.integers(40, 80)) if age is None else int(age)
    density = _draw_density(rng, age) if density is None else density

    planted_kinds = [k for k in (kind, *extra_findings) if k != "normal"]
    breast = _breast_geometry(rng, view, height, width)
    # Soft tissue adds up as dense-tissue thickness and is then mapped to brightness, so a mass
    # loses contrast in dense breasts, as in a real mammogram; calcifications, far denser, are
    # drawn on the brightness directly.
    thickness = _parenchyma(rng, breast, density)
    anatomy = [_anatomy("anatomy.normal_vessels", _draw_vessels(rng, breast, thickness))]
    anatomy += [_anatomy(_LYMPH_NODE, node) for node in _draw_lymph_nodes(rng, breast, thickness)]
    planted = [_plant(rng, k, breast, thickness) for k in planted_kinds if k in _SOFT_TISSUE]
    tissue = _to_brightness(rng, breast, thickness)
    if breast.pectoral.any():
        _draw_pectoral(rng, breast, tissue)
        anatomy.append(_anatomy("anatomy.pectoral_muscle", _muscle_edge_band(breast, _MUSCLE_EDGE_HALF * breast.scale)))
    planted += [_plant(rng, k, breast, tissue) for k in planted_kinds if k not in _SOFT_TISSUE]
    # The skin line and the nipple are drawn in _finish; the skin band reaches a few px inside the outline.
    anatomy.append(_anatomy("anatomy.skin_line", breast.mask & (breast.skin_dist <= 6 * breast.scale)))
    anatomy.append(_anatomy("anatomy.nipple", _nipple_mask(breast)))
    subtleties = [_subtlety(tissue, finding) for finding, _ in planted]
    pixels = _finish(rng, breast, tissue)

    findings = [*anatomy, *(finding for finding, _ in planted)]
    if laterality == "R":  # mirror the canonical frame: chest wall to the right edge
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        for finding in findings:
            finding.mask = np.ascontiguousarray(finding.mask[:, ::-1])
    label = _image_label(findings)
    sizes = [(finding.concepts, diameter) for finding, diameter in planted]
    metadata = _metadata(kind, label, age, density, breast.scale, sizes, subtleties)
    return PhantomImage(pixels, patient_id, view, laterality, label, findings, metadata)


# --------------------------------------------------------------------------- patients and labels


def _patient_attributes(seed: int, patient: int) -> dict:
    """Kind, laterality, age, density and extra findings of one patient, shared by both views."""
    block, slot = divmod(patient, len(_CLASS_BLOCK))
    order = np.random.default_rng([seed, 0, block]).permutation(len(_CLASS_BLOCK))
    pathology = _CLASS_BLOCK[order[slot]]
    rng = np.random.default_rng([seed, 1, patient])
    if pathology == "normal":
        kind = "normal"
    elif pathology == "benign":
        kind = str(rng.choice(["benign_mass", "benign_calcification"]))
    else:
        kind = str(rng.choice(["malignant_mass", "malignant_calcification"]))
    age = int(rng.integers(40, 80))
    # Vascular calcifications are common in older women and do not change a malignant label;
    # they keep "calcification" from being a shortcut for malignancy.
    extra = ("benign_calcification",) if pathology == "malignant" and rng.random() < 0.2 else ()
    return {
        "kind": kind,
        "laterality": str(rng.choice(["L", "R"])),
        "age": age,
        "density": _draw_density(rng, age),
        "extra_findings": extra,
    }


def _draw_density(rng: np.random.Generator, age: int) -> str:
    """BI-RADS composition, about 10/40/40/10% overall, denser in younger women."""
    shift = np.clip((60 - age) / 40, -0.5, 0.5)
    p = np.array([0.10 - 0.06 * shift, 0.40 - 0.1 * shift, 0.40 + 0.1 * shift, 0.10 + 0.06 * shift])
    return str(rng.choice(_DENSITIES, p=p / p.sum()))


def _image_label(findings: Sequence[PlantedFinding]) -> str:
    pathologies = {f.pathology for f in findings}
    for label in ("malignant", "benign"):
        if label in pathologies:
            return label
    return "normal"


def _metadata(
    kind: str,
    label: str,
    age: int,
    density: str,
    scale: float,
    sizes: Sequence[tuple[tuple[str, ...], float]],
    subtleties: Sequence[int],
) -> dict:
    """JSON-serialisable metadata; ``subtlety`` (1 subtle .. 5 obvious) is that of the most
    obvious finding, None on normal images. ``sizes``: (concepts, diameter in px) per finding."""
    mm_per_px = _MM_PER_PX_AT_512 / scale
    sentences = [_DENSITY_TEXT[density]]
    for concepts, diameter_px in sizes:
        sentences.append(_finding_sentence(concepts, f"{diameter_px * mm_per_px:.0f} mm"))
    if not sizes:
        sentences.append("No suspicious mass or calcification.")
    assessment = {"normal": 1, "benign": 2, "malignant": 5 if kind == "malignant_mass" else 4}[label]
    sentences.append(f"BI-RADS {assessment}.")
    return {
        "age": age,
        "sex": "F",
        "density": density,
        "subtlety": max(subtleties, default=None),
        "birads_assessment": assessment,
        "kind": kind,
        "pixel_spacing_mm": round(mm_per_px, 4),
        "report": " ".join(sentences),
        "generator": _GENERATOR,
    }


def _finding_sentence(concepts: tuple[str, ...], size: str) -> str:
    if "mass_margin.spiculated" in concepts:
        return f"Irregular spiculated mass, {size}."
    if "mass_shape.oval" in concepts:
        return f"Oval circumscribed mass, {size}."
    if "calc_suspicious.fine_pleomorphic" in concepts:
        return f"Grouped fine pleomorphic calcifications spanning {size}."
    return f"Coarse vascular calcifications over {size}."


# --------------------------------------------------------------------------- breast and tissue


def _breast_geometry(rng: np.random.Generator, view: str, h: int, w: int) -> _Breast:
    """Silhouette as x < x_edge(y): a superellipse on the chest wall with a wobbly outline."""
    ys = np.arange(h, dtype=np.float32)
    depth = w * rng.uniform(0.62, 0.86)
    if view == "CC":
        center_y = h * rng.uniform(0.46, 0.54)
        half_top = half_bottom = h * rng.uniform(0.36, 0.45)
    else:
        # MLO: the axillary tail reaches the top edge and the breast sags below the nipple axis.
        center_y = h * rng.uniform(0.52, 0.6)
        half_top = center_y * rng.uniform(1.25, 1.45)
        half_bottom = (h - center_y) * rng.uniform(0.72, 0.9)
    half = np.where(ys < center_y, half_top, half_bottom)
    u = np.clip(np.abs(ys - center_y) / half, 0.0, 1.0)
    power = rng.uniform(2.0, 2.6)
    wobble = 1.0 + 0.015 * smooth_noise_1d(rng, h, sigma=h / 8, mode="reflect")
    x_edge = depth * (1.0 - u**power) ** (1.0 / power) * wobble  # (H,)
    # The nipple in profile: a short rounded bump of the outline on the nipple axis.
    s = w / 512
    nipple_length, nipple_half = rng.uniform(5, 9) * s, rng.uniform(4, 6) * s
    base = float(np.interp(center_y, ys, x_edge))
    x_edge = x_edge + nipple_length * np.exp(-0.5 * ((ys - center_y) / nipple_half) ** 2)
    xs = np.arange(w, dtype=np.float32)
    mask = xs[None, :] < x_edge[:, None]
    skin_dist = _skin_distance(mask, x_edge)
    pectoral = _pectoral_mask(rng, mask, float(x_edge[0])) if view == "MLO" else np.zeros_like(mask)
    return _Breast(mask, skin_dist, pectoral, float(center_y), float(depth), s, (float(center_y), base), nipple_length)


def _skin_distance(mask: np.ndarray, x_edge: np.ndarray) -> np.ndarray:
    """Approximate Euclidean distance (H, W) to the skin, exact for a locally straight outline.

    With horizontal and vertical distances dx, dy to the outline, the distance to the straight
    edge through both intercepts is dx*dy/hypot(dx, dy). This is cheaper than an EDT and, unlike
    an EDT of the mask, ignores the image border, which is chest wall or axilla, not skin.
    """
    h, w = mask.shape
    far = np.float32(4 * (h + w))  # stands for "no skin this way"
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    dx = x_edge[:, None].astype(np.float32) - xs[None, :]
    has = mask.any(axis=0)
    top = np.where(has, mask.argmax(axis=0), h).astype(np.float32)
    bottom = np.where(has, h - 1 - mask[::-1].argmax(axis=0), -1).astype(np.float32)
    top[top == 0] = -far  # the outline touches the image border: no skin above
    bottom[bottom == h - 1] = far
    dy = np.minimum(ys - top[None, :], bottom[None, :] - ys) + np.float32(0.5)
    dist = dx * dy / np.sqrt(dx * dx + dy * dy + np.float32(1e-6))
    return np.where(mask, np.maximum(dist, 0.0), 0.0).astype(np.float32)


def _pectoral_mask(rng: np.random.Generator, breast: np.ndarray, breast_top: float) -> np.ndarray:
    """Bool (H, W): a slightly convex triangle in the top chest-wall corner of an MLO view.

    ``breast_top``: the breast's extent along the top row; the muscle takes half of it or so.
    """
    h, w = breast.shape
    top_width = breast_top * rng.uniform(0.4, 0.7)
    length = h * rng.uniform(0.35, 0.6)
    bulge = rng.uniform(0.8, 1.0)  # < 1 bows the muscle edge outwards, as it usually does
    ys = np.arange(h, dtype=np.float32)
    x_edge = top_width * np.clip(1.0 - ys / length, 0.0, 1.0) ** bulge
    return (np.arange(w)[None, :] < x_edge[:, None]) & breast


def _parenchyma(rng: np.random.Generator, breast: _Breast, density: str) -> np.ndarray:
    """Fibroglandular thickness, float32 (H, W): ~0 in fat, ~1 in dense tissue, 0 outside.

    The gland is a soft threshold of an envelope (central, sparing the fat under the skin and at
    the chest wall) plus multi-scale noise; the threshold is the quantile that gives the
    composition's dense share of the breast. Built at 1/_COARSE resolution, where this texture
    is still smooth, and upsampled: at full resolution it would dominate the run time.
    """
    h, w = breast.mask.shape
    s = breast.scale
    lo_shape = (-(-h // _COARSE), -(-w // _COARSE))
    envelope = _glandular_envelope(rng, breast, stride=_COARSE)
    lobes = _smooth_noise(rng, lo_shape, 16 * s / _COARSE)  # lobes of the gland
    lobules = _smooth_noise(rng, lo_shape, 5 * s / _COARSE)  # fatty lobules, glandular islands
    ducts = _duct_streaks(rng, breast, lo_shape)
    field_ = 2.4 * (envelope - 1.0) + 0.6 * lobes + 0.3 * lobules + 0.35 * ducts
    breast_lo = breast.mask[::_COARSE, ::_COARSE]
    share = rng.uniform(*_DENSE_FRACTION[density])
    threshold = np.quantile(field_[breast_lo], 1.0 - share) if breast_lo.any() else 0.0
    gland = 1.0 / (1.0 + np.exp(-(field_ - threshold) / 0.3))
    # Dense tissue is not uniformly thick: let it drift with the finer texture. The finest
    # grain (~1-2 px) comes out of the bilinear upsampling of lo-res white-ish noise.
    grain = _smooth_noise(rng, lo_shape, 1.2 * s / _COARSE)
    thickness_lo = gland * (1.0 + 0.1 * lobules + 0.05 * ducts) + 0.03 * lobules + 0.03 * grain
    thickness = _zoom_to(thickness_lo.astype(np.float32), (h, w))
    return np.where(breast.mask, thickness, 0.0).astype(np.float32)


def _to_brightness(rng: np.random.Generator, breast: _Breast, thickness: np.ndarray) -> np.ndarray:
    """Map dense-tissue thickness (H, W) to brightness in [0, 1] with a saturating curve.

    The curve's slope falls about threefold from fat to dense tissue, which is what hides
    masses in dense breasts.
    """
    fat = rng.uniform(0.26, 0.33)
    span = rng.uniform(0.42, 0.5)
    k = 1.1
    t = np.maximum(thickness, -0.2)
    brightness = fat + span * (1.0 - np.exp(-k * t)) / (1.0 - np.exp(-k))
    return np.where(breast.mask, brightness, 0.0).astype(np.float32)


def _glandular_envelope(rng: np.random.Generator, breast: _Breast, stride: int) -> np.ndarray:
    """Float32 (ceil(H/stride), ceil(W/stride)) in [0, 1]: where glands may sit, sparing the
    subcutaneous and retromammary fat and the muscle."""
    s = breast.scale
    dist = breast.skin_dist[::stride, ::stride]
    xs = np.arange(0, breast.mask.shape[1], stride, dtype=np.float32)[None, :]
    under_skin = smoothstep(dist, 10 * s, rng.uniform(40, 70) * s)
    off_wall = smoothstep(xs, 0.0, rng.uniform(25, 60) * s)
    return (under_skin * off_wall * ~breast.pectoral[::stride, ::stride]).astype(np.float32)


def _duct_streaks(rng: np.random.Generator, breast: _Breast, shape: tuple[int, int]) -> np.ndarray:
    """Float32 ``shape``: streaks elongated along x and converging on the nipple, like ducts."""
    factor = breast.mask.shape[1] / shape[1]
    noise = rng.standard_normal(shape).astype(np.float32)
    streaks = ndi.gaussian_filter(noise, (3.2 * breast.scale / _COARSE, 20 * breast.scale / _COARSE))
    streaks /= streaks.std() + 1e-6
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    cy, depth = breast.center_y / factor, breast.depth / factor
    # Spread rows away from the nipple axis in proportion to the distance from the nipple, so
    # straight streaks in the source become rays converging on the nipple.
    spread = np.clip(1.0 - 0.7 * xx / depth, 0.25, 1.0)
    src_y = cy + (yy - cy) * spread
    return ndi.map_coordinates(streaks, [src_y, xx], order=1, mode="reflect")


def _anatomy(code: str, mask: np.ndarray) -> PlantedFinding:
    return PlantedFinding("normal", "anatomy", (code,), mask)


def _muscle_edge_band(breast: _Breast, half_width: float) -> np.ndarray:
    """Bool (H, W): breast pixels within ``half_width`` px of the pectoral muscle's edge (either side).

    The edge is where muscle meets breast tissue; the muscle's sides on the image border are not edge.
    """
    pec = breast.pectoral
    band = np.zeros_like(pec)
    if not pec.any():
        return band
    pad = int(np.ceil(half_width)) + 2
    rows = min(int(np.flatnonzero(pec.any(axis=1)).max()) + pad + 1, pec.shape[0])
    cols = min(int(pec.sum(axis=1).max()) + pad + 1, pec.shape[1])
    crop = pec[:rows, :cols]
    # The EDT measures to the nearest zero inside the array, so the image border never counts as edge.
    inside = crop & (ndi.distance_transform_edt(crop) <= half_width)
    outside = ~crop & (ndi.distance_transform_edt(~crop) <= half_width)
    band[:rows, :cols] = (inside | outside) & breast.mask[:rows, :cols]
    return band


def _nipple_mask(breast: _Breast) -> np.ndarray:
    """Bool (H, W): the nipple and the areola behind it, a half-disc on the outline at the nipple axis."""
    h, w = breast.mask.shape
    ny, nx = breast.nipple
    radius = _NIPPLE_RADIUS * breast.scale
    ys, xs, crop = _crop_grid((h, w), ny, nx, radius + 1)
    local = np.hypot(ys - ny, xs - nx) <= radius
    return _full_mask((h, w), crop, local) & breast.mask


def _draw_nipple(rng: np.random.Generator, breast: _Breast, img: np.ndarray) -> None:
    """The nipple-areola complex on brightness ``img`` (H, W): the nipple, a dense blob filling the bump
    of the outline, and behind it the retroareolar tissue where the ducts converge, both brighter than
    the thin periphery around them."""
    s = breast.scale
    ny, nx = breast.nipple
    nipple = np.asarray([[ny, nx + 0.3 * breast.nipple_length]])
    _stamp(img, nipple, np.asarray([rng.uniform(0.22, 0.32)]), rng.uniform(4.0, 5.5) * s, spread=False)
    behind = np.asarray([[ny, nx - rng.uniform(8, 11) * s]])
    _stamp(img, behind, np.asarray([rng.uniform(0.12, 0.18)]), rng.uniform(6.0, 8.0) * s, spread=False)


def _draw_lymph_nodes(rng: np.random.Generator, breast: _Breast, thickness: np.ndarray) -> list[np.ndarray]:
    """Zero to three intramammary lymph nodes added to ``thickness`` (H, W): small dense ovals (5-8 mm) with
    a sharp edge and a lucent fatty hilum notched into one side, mostly in the upper breast, as in the
    upper outer quadrant. Returns each node's mask: the oval grown by 2.5 px (hilum included), so that a
    unit's mask (tens of px across at a 4 x 4 feature map) that covers the node overlaps it well."""
    s = breast.scale
    masks = []
    for _ in range(int(rng.choice([0, 1, 1, 2, 2, 3]))):
        a = rng.uniform(7, 12) * s
        b = a * rng.uniform(0.55, 0.8)
        for _try in range(4):  # prefer the upper half of the breast
            cy, cx = _choose_site(rng, breast, a + 12 * s)
            if cy < breast.center_y:
                break
        ys, xs, crop = _crop_grid(thickness.shape, cy, cx, a + 4 * s)
        angle = rng.uniform(0, np.pi)
        u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
        v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        edge = np.clip((1.0 - rho) * b / 1.0 + 0.5, 0.0, 1.0)
        side = rng.choice([-1.0, 1.0])  # the hilum notches the node from one of its long sides
        hilum = np.hypot(u, v - side * 0.6 * b) / (0.5 * a)
        fat = smoothstep(-hilum, -1.1, -0.7)
        thickness[crop] += rng.uniform(0.7, 1.1) * edge * (1.0 - 0.85 * fat)
        grown = np.sqrt((u / (a + 2.5 * s)) ** 2 + (v / (b + 2.5 * s)) ** 2) <= 1.0
        masks.append(_full_mask(thickness.shape, crop, grown) & breast.mask)
    return masks


def _draw_pectoral(rng: np.random.Generator, breast: _Breast, tissue: np.ndarray) -> None:
    """Bright, nearly homogeneous muscle with faint fibres parallel to its edge, blended over ~2 px."""
    pec = breast.pectoral
    rows = int(np.flatnonzero(pec.any(axis=1)).max()) + 4
    ends = pec.sum(axis=1)[:rows]  # the muscle is a run from x = 0 in each row
    cols = min(int(ends.max()) + 4, pec.shape[1])
    crop = (slice(0, rows), slice(0, cols))
    # Fibres: 1-D noise indexed by the horizontal distance to the muscle's edge in each row.
    fibres = smooth_noise_1d(rng, cols + 1, sigma=2.5 * breast.scale, mode="reflect")
    across = np.clip(ends[:, None] - np.arange(cols)[None, :], 0, cols)
    ramp = np.linspace(1.0, 0.92, rows, dtype=np.float32)[:, None]  # thinner towards the apex
    muscle = rng.uniform(0.72, 0.84) * ramp + 0.02 * fibres[across]
    soft = ndi.gaussian_filter(pec[crop].astype(np.float32), 1.2 * breast.scale)
    region = tissue[crop]
    region[:] = np.where(breast.mask[crop], region * (1 - soft) + muscle * soft, region)


def _draw_vessels(rng: np.random.Generator, breast: _Breast, thickness: np.ndarray) -> np.ndarray:
    """Add two to four curving vessels, from the chest wall towards the nipple, to ``thickness``
    (H, W); returns their mask, bool (H, W)."""
    s = breast.scale
    h, w = thickness.shape
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(2, 5))):
        start = (breast.center_y + rng.uniform(-0.35, 0.35) * h, rng.uniform(0.02, 0.3) * breast.depth)
        heading = np.arctan2(breast.center_y - start[0], breast.depth - start[1])
        heading += rng.uniform(-0.35, 0.35)
        path = _curve(rng, start, heading, rng.uniform(0.35, 0.75) * breast.depth, bend=0.5)
        path = _inside(path, breast, margin=4 * s)
        if len(path) < 20:
            continue
        sigma = rng.uniform(1.1, 2.0) * s
        _stamp(thickness, path, np.full(len(path), rng.uniform(0.15, 0.25)), sigma)
        mask |= _band_mask((h, w), path, 3 * s + 1.5 * sigma)
    if not mask.any():  # tiny breast: guarantee the concept is present on every image
        y, x = int(breast.center_y), int(0.5 * breast.depth)
        path = np.stack([np.full(40, float(y)), np.linspace(x - 20, x + 20, 40)], axis=1)
        _stamp(thickness, path, np.full(40, 0.14), 1.2 * s)
        mask = _band_mask((h, w), path, 4 * s)
    return mask & breast.mask


def _finish(rng: np.random.Generator, breast: _Breast, tissue: np.ndarray) -> np.ndarray:
    """Thin periphery, skin line, background, quantum-like noise; returns uint8 (H, W)."""
    s = breast.scale
    # Compressed breasts thin out towards the skin, so the periphery is darker (ease-out ramp).
    ramp = np.minimum(breast.skin_dist * np.float32(1 / (rng.uniform(35, 55) * s)), 1.0)
    img = tissue * (0.5 + 0.5 * ramp * (2.0 - ramp))
    _draw_nipple(rng, breast, img)
    # The skin line: a Gaussian ridge ~1.5 px inside the outline, computed only near it.
    near = breast.mask & (breast.skin_dist < 8 * s)
    skin_width = rng.uniform(1.0, 1.8) * s
    img[near] += rng.uniform(0.10, 0.18) * np.exp(-0.5 * ((breast.skin_dist[near] - 1.5 * s) / skin_width) ** 2)
    img[~breast.mask] = rng.uniform(0.01, 0.03)
    # Quantum noise: variance grows with the signal, slightly correlated by the detector.
    noise = ndi.gaussian_filter(rng.standard_normal(img.shape, dtype=np.float32), 0.7)
    img = img + rng.uniform(0.03, 0.05) * noise * np.sqrt(np.maximum(img, 0.0) + 0.02)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- planted findings


_SOFT_TISSUE = ("benign_mass", "malignant_mass")  # drawn as thickness, the others as brightness


def _plant(rng: np.random.Generator, kind: str, breast: _Breast, canvas: np.ndarray) -> tuple[PlantedFinding, float]:
    """Draw one finding of ``kind`` into ``canvas`` (H, W): thickness for masses, brightness for
    calcifications. Returns the finding and its diameter in px."""
    draw = {
        "benign_mass": _draw_oval_mass,
        "malignant_mass": _draw_spiculated_mass,
        "malignant_calcification": _draw_pleomorphic_cluster,
        "benign_calcification": _draw_vascular_calcifications,
    }[kind]
    mask, diameter = draw(rng, breast, canvas)
    pathology, lesion_type, concepts = _FINDING_SPECS[kind]
    return PlantedFinding(pathology, lesion_type, concepts, mask & breast.mask), diameter


def _draw_oval_mass(rng: np.random.Generator, breast: _Breast, thickness: np.ndarray) -> tuple[np.ndarray, float]:
    """Benign: an oval of even density with a sharp (circumscribed) edge, added to ``thickness``.

    Of moderate density, so it is plain in fat and faint in dense tissue (the hard case).
    """
    s = breast.scale
    diameter = rng.uniform(26, 62) * s
    r_major, r_minor = diameter / 2, diameter / 2 * rng.uniform(0.6, 0.88)
    cy, cx = _choose_site(rng, breast, r_major + 10 * s)
    ys, xs, crop = _crop_grid(thickness.shape, cy, cx, r_major + 4)
    angle = rng.uniform(0, np.pi)
    u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
    rho = np.sqrt((u / r_major) ** 2 + (v / r_minor) ** 2)
    edge = np.clip((1.0 - rho) * r_minor / 1.2 + 0.5, 0.0, 1.0)  # ~1 px transition: circumscribed
    dome = 0.65 + 0.35 * np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0))
    thickness[crop] += rng.uniform(0.15, 0.5) * edge * dome
    return _full_mask(thickness.shape, crop, rho <= 1.0), diameter


def _draw_spiculated_mass(rng: np.random.Generator, breast: _Breast, thickness: np.ndarray) -> tuple[np.ndarray, float]:
    """Malignant: a dense irregular core with an indistinct edge and radiating spicules.

    The mask is the core's outline pushed out by 35%, which covers the spicules' roots.
    """
    s = breast.scale
    radius = rng.uniform(13, 28) * s
    k = np.arange(2, 7)[:, None, None]  # lobulation harmonics of the outline
    amps = rng.uniform(0.0, 0.22, (5, 1, 1)) / np.sqrt(k - 1)
    phases = rng.uniform(0, 2 * np.pi, (5, 1, 1))
    reach = radius * (1 + amps.sum())  # the outline's largest radius
    spicule_len = rng.uniform(0.7, 1.6) * radius
    cy, cx = _choose_site(rng, breast, 1.35 * reach + 8 * s)
    ys, xs, crop = _crop_grid(thickness.shape, cy, cx, reach * 1.4 + 2)
    theta = np.arctan2(ys - cy, xs - cx)
    outline = radius * (1 + (amps * np.cos(k * theta + phases)).sum(0))
    rho = np.hypot(ys - cy, xs - cx) / outline
    core = smoothstep(-rho, -1.15, -0.8) * (0.75 + 0.25 * np.sqrt(np.clip(1 - rho**2, 0, 1)))
    density = rng.uniform(0.7, 1.2)  # high density: brighter than the gland around it
    thickness[crop] += density * core
    _draw_spicules(rng, breast, thickness, (cy, cx), radius, spicule_len, density)
    return _full_mask(thickness.shape, crop, rho <= 1.35), 2 * radius + spicule_len


def _draw_spicules(
    rng: np.random.Generator,
    breast: _Breast,
    thickness: np.ndarray,
    center: tuple[float, float],
    radius: float,
    length: float,
    density: float,
) -> None:
    """Thin lines radiating from the core's edge, fading outwards."""
    n = int(rng.integers(9, 20))
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(-0.3, 0.3, n)
    for angle in angles:
        start = (center[0] + 0.5 * radius * np.sin(angle), center[1] + 0.5 * radius * np.cos(angle))
        reach = 0.5 * radius + length * rng.uniform(0.35, 1.3)
        path = _inside(_curve(rng, start, angle, reach, bend=0.25), breast, margin=3 * breast.scale)
        if len(path) < 4:
            continue
        # Rise from inside the core (so the roots do not show as a ring of dots), then fade.
        along = np.arange(len(path)) * 0.5
        rise = smoothstep(along, 0.0, 0.5 * radius)
        fade = np.clip(1.0 - (along - 0.5 * radius) / (reach - 0.5 * radius), 0.1, 1.0)
        profile = rise * fade * 0.5 * density * rng.uniform(0.5, 1.0)
        _stamp(thickness, path, profile, rng.uniform(0.7, 1.6) * breast.scale)


def _draw_pleomorphic_cluster(
    rng: np.random.Generator, breast: _Breast, brightness: np.ndarray
) -> tuple[np.ndarray, float]:
    """Malignant: 20-45 tiny bright specks of varied shape grouped in a 24-44 px region.

    The mask is the convex hull of the specks (grown by 1.5 px), not the specks themselves, so a
    unit that responds to the cluster as a whole overlaps it.
    """
    s = breast.scale
    half_span = rng.uniform(12, 22) * s
    for _try in range(6):  # specks cannot show on tissue already near white: look for a site with headroom
        cy, cx = _choose_site(rng, breast, half_span + 10 * s)
        _, _, around = _crop_grid(brightness.shape, cy, cx, half_span)
        if brightness[around].mean() < 0.72:
            break
    n = int(rng.integers(20, 46))
    # Uniform in a random ellipse: sqrt keeps the density even across the radius.
    r = np.sqrt(rng.uniform(0, 1, n)) * half_span
    phi = rng.uniform(0, 2 * np.pi, n)
    aspect, tilt = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
    u, v = r * np.cos(phi), r * np.sin(phi) * aspect
    centers = np.stack([cy + u * np.sin(tilt) + v * np.cos(tilt), cx + u * np.cos(tilt) - v * np.sin(tilt)], axis=1)
    # Pleomorphic: each speck is 1-5 pixels in a random pattern around its centre.
    sizes = rng.integers(1, 6, n)
    offsets = rng.integers(-1, 2, (n, 5, 2))
    offsets[:, 0] = 0
    keep = np.arange(5)[None, :] < sizes[:, None]
    pixels = (np.rint(centers)[:, None, :] + offsets)[keep]
    values = np.repeat(rng.uniform(0.3, 0.55, n), sizes)
    inside = _in_bounds(pixels, brightness.shape)
    inside[inside] &= breast.mask[_index(pixels[inside], brightness.shape)]
    pixels, values = pixels[inside], values[inside]
    _stamp(brightness, pixels, values, 0.55 * s, spread=False)
    return _convex_hull_mask(brightness.shape, pixels, grow=1.5), 2 * half_span


def _draw_vascular_calcifications(
    rng: np.random.Generator, breast: _Breast, brightness: np.ndarray
) -> tuple[np.ndarray, float]:
    """Benign: coarse interrupted parallel lines (tram tracks) on the walls of a curving vessel.

    The mask is a band about 4 px around the calcified walls.
    """
    s = breast.scale
    length = rng.uniform(70, 160) * s
    lumen = rng.uniform(3.0, 5.0) * s
    start = _choose_site(rng, breast, 14 * s)
    heading = rng.uniform(-np.pi, np.pi)
    center = _inside(_curve(rng, start, heading, length, bend=0.4), breast, margin=8 * s)
    if len(center) < length:  # under half the path (points are 0.5 px apart): go the other way
        center = _inside(_curve(rng, start, heading + np.pi, length, bend=0.4), breast, margin=8 * s)
    if len(center) < 2:
        center = np.asarray([start, start], dtype=float)
    _stamp(brightness, center, np.full(len(center), 0.03), lumen / 2)  # the vessel's soft tissue
    tangent = np.gradient(center, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-6
    walls = [(center + side * lumen * normal)[_dashes(rng, len(center), step=0.5, scale=s)] for side in (-0.5, 0.5)]
    calcified = np.concatenate(walls)
    if len(calcified) == 0:
        calcified = center
    value = rng.uniform(0.2, 0.38)
    _stamp(brightness, calcified, np.full(len(calcified), value), rng.uniform(0.8, 1.2) * s)
    return _band_mask(brightness.shape, calcified, 4 * s + 1), len(center) * 0.5


def _dashes(rng: np.random.Generator, n: int, step: float, scale: float) -> np.ndarray:
    """Bool (n,): on/off runs 5-20 px long along a sampled line, about two thirds on."""
    lengths = rng.uniform(5, 20, n // 8 + 2) * scale / step
    on = rng.random(lengths.size) < 0.68
    run_of = np.searchsorted(np.cumsum(lengths), np.arange(n), side="right")
    return on[np.minimum(run_of, lengths.size - 1)]


def _subtlety(brightness: np.ndarray, finding: PlantedFinding) -> int:
    """DDSM-style subtlety, 1 (subtle) .. 5 (obvious), from the finding's measured contrast.

    Masses: mean brightness inside the mask minus that of an 8-px ring around it.
    Calcifications: the brightest 5% inside minus the ring, since only the specks stand out.
    """
    mask = finding.mask
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 1
    pad = 10
    crop = (slice(max(ys.min() - pad, 0), ys.max() + pad + 1), slice(max(xs.min() - pad, 0), xs.max() + pad + 1))
    local, img = mask[crop], brightness[crop]
    ring = ndi.binary_dilation(local, iterations=8) & ~local & (img > 0)
    around = float(img[ring].mean()) if ring.any() else 0.0
    if finding.lesion_type == "mass":
        contrast, faint, obvious = float(img[local].mean()) - around, 0.03, 0.22
    else:
        contrast, faint, obvious = float(np.quantile(img[local], 0.95)) - around, 0.15, 0.6
    t = (contrast - faint) / (obvious - faint)
    return int(np.clip(1 + np.floor(t * 5), 1, 5))


# --------------------------------------------------------------------------- drawing helpers


def _choose_site(rng: np.random.Generator, breast: _Breast, clearance: float) -> tuple[float, float]:
    """A (y, x) in breast tissue at least ``clearance`` px from the skin, chest wall and muscle."""
    xs = np.arange(breast.mask.shape[1])[None, :]
    for margin in (clearance, clearance / 2, 0.0):
        ok = (breast.skin_dist > margin) & (xs > margin) & ~breast.pectoral
        if margin:
            ok &= ~_muscle_keepout(breast.pectoral, int(margin))
        candidates = np.flatnonzero(ok)
        if candidates.size:
            y, x = divmod(int(rng.choice(candidates)), breast.mask.shape[1])
            return float(y) + rng.uniform(-0.5, 0.5), float(x) + rng.uniform(-0.5, 0.5)
    raise ValueError("the breast silhouette is empty")


def _muscle_keepout(pectoral: np.ndarray, by: int) -> np.ndarray:
    """Bool (H, W): the muscle grown by ``by`` px to the right and up/down (not a true disc,
    but enough to keep a lesion off the muscle and cheaper than a 2-D dilation)."""
    if not pectoral.any():
        return pectoral
    # The muscle is a run from x = 0 in each row, so growing its right end is enough.
    ends = pectoral.sum(axis=1)
    grown = np.arange(pectoral.shape[1])[None, :] < (ends + by * (ends > 0))[:, None]
    return ndi.maximum_filter1d(grown, size=2 * by + 1, axis=0)


def _curve(
    rng: np.random.Generator, start: tuple[float, float], heading: float, length: float, bend: float
) -> np.ndarray:
    """(N, 2) float (y, x) points every 0.5 px along a smoothly bending path."""
    n = max(int(length / 0.5), 2)
    t = np.linspace(0.0, 1.0, n)
    freq = rng.uniform(0.3, 1.5, 2)
    phase = rng.uniform(0, 2 * np.pi, 2)
    amp = bend * rng.uniform(-1, 1, 2)
    angle = heading + amp[0] * np.sin(2 * np.pi * freq[0] * t + phase[0])
    angle += amp[1] * np.sin(np.pi * freq[1] * t + phase[1])
    steps = 0.5 * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    return np.asarray(start, dtype=np.float64)[None, :] + np.cumsum(steps, axis=0)


def _inside(points: np.ndarray, breast: _Breast, margin: float) -> np.ndarray:
    """The leading run of ``points`` (N, 2) that stays in tissue ``margin`` px from the skin."""
    h, w = breast.mask.shape
    ok = _in_bounds(points, (h, w))
    idx = _index(points, (h, w))
    ok &= (breast.skin_dist[idx] > margin) & (points[:, 1] > 0)
    # Stop at the first exit so a vessel does not re-enter as a disconnected stub.
    first_bad = np.argmin(ok) if not ok.all() else len(points)
    return points[:first_bad]


def _stamp(img: np.ndarray, points: np.ndarray, values: np.ndarray, sigma: float, *, spread: bool = True) -> None:
    """Add blurred dots at ``points`` (N, 2) (y, x) to ``img`` (H, W) in place, within a local crop.

    Points are max-combined before blurring, so overlapping samples of a line do not add up;
    the result is scaled so that a 1-px-spaced line (``spread``) or a lone dot peaks at ``values``.
    """
    if len(points) == 0:
        return
    h, w = img.shape
    ok = _in_bounds(points, (h, w))
    points, values = points[ok], np.asarray(values, dtype=np.float32)[ok]
    if len(points) == 0:
        return
    idx = np.rint(points).astype(int)
    pad = int(np.ceil(3 * sigma)) + 1
    y0, x0 = np.maximum(idx.min(0) - pad, 0)
    y1, x1 = np.minimum(idx.max(0) + pad + 1, (h, w))
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    np.maximum.at(canvas, (idx[:, 0] - y0, idx[:, 1] - x0), values)
    blurred = ndi.gaussian_filter(canvas, sigma)
    gain = np.sqrt(2 * np.pi) * sigma if spread else 2 * np.pi * sigma**2
    img[y0:y1, x0:x1] += blurred * gain


def _band_mask(shape: tuple[int, int], points: np.ndarray, half_width: float) -> np.ndarray:
    """Bool ``shape``: pixels within ``half_width`` px of any of ``points`` (N, 2)."""
    mask = np.zeros(shape, dtype=bool)
    ok = _in_bounds(points, shape)
    if not ok.any():
        return mask
    idx = np.rint(points[ok]).astype(int)
    pad = int(np.ceil(half_width)) + 1
    y0, x0 = np.maximum(idx.min(0) - pad, 0)
    y1, x1 = np.minimum(idx.max(0) + pad + 1, shape)
    canvas = np.ones((y1 - y0, x1 - x0), dtype=bool)
    canvas[idx[:, 0] - y0, idx[:, 1] - x0] = False
    mask[y0:y1, x0:x1] = ndi.distance_transform_edt(canvas) <= half_width
    return mask


def _convex_hull_mask(shape: tuple[int, int], points: np.ndarray, grow: float) -> np.ndarray:
    """Bool ``shape``: the filled convex hull of ``points`` (N, 2) (y, x), grown by ``grow`` px."""
    hull = _convex_hull(np.unique(np.rint(points).astype(int), axis=0))
    if len(hull) < 3:  # collinear specks: a hull has no area, fall back to a band
        return _band_mask(shape, points, grow + 1)
    lo = np.maximum(np.floor(hull.min(0) - grow - 1).astype(int), 0)
    hi = np.minimum(np.ceil(hull.max(0) + grow + 2).astype(int), shape)
    ys, xs = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    inside = np.ones(ys.shape, dtype=bool)
    for a, b in zip(hull, np.roll(hull, -1, axis=0), strict=True):
        edge = b - a
        cross = edge[0] * (xs - a[1]) - edge[1] * (ys - a[0])  # (b-a) x (p-a) in (y, x) order
        inside &= cross / np.hypot(*edge) >= -grow
    mask = np.zeros(shape, dtype=bool)
    mask[lo[0] : hi[0], lo[1] : hi[1]] = inside
    return mask


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain. ``points`` (N, 2) unique; returns the hull vertices (K, 2), ordered
    so that interior points p give (b-a) x (p-a) >= 0 for every edge a->b, as used above."""
    pts = sorted(map(tuple, points.tolist()))
    if len(pts) < 3:
        return np.asarray(pts, dtype=float)

    def turn(o: tuple, a: tuple, b: tuple) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple] = []
    upper: list[tuple] = []
    for p in pts:
        while len(lower) >= 2 and turn(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and turn(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1], dtype=float)


def _crop_grid(
    shape: tuple[int, int], cy: float, cx: float, half: float
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """Pixel-centre coordinate grids (h, w) of a square crop around (cy, cx), and its slices."""
    y0, x0 = max(int(cy - half), 0), max(int(cx - half), 0)
    y1, x1 = min(int(np.ceil(cy + half)) + 1, shape[0]), min(int(np.ceil(cx + half)) + 1, shape[1])
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return ys, xs, (slice(y0, y1), slice(x0, x1))


def _full_mask(shape: tuple[int, int], crop: tuple[slice, slice], local: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[crop] = local
    return mask


def _in_bounds(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    idx = np.rint(points)
    return (idx[:, 0] >= 0) & (idx[:, 0] < shape[0]) & (idx[:, 1] >= 0) & (idx[:, 1] < shape[1])


def _index(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Clipped integer (rows, cols) of ``points`` (N, 2), for fancy indexing."""
    idx = np.rint(points).astype(int)
    return np.clip(idx[:, 0], 0, shape[0] - 1), np.clip(idx[:, 1], 0, shape[1] - 1)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Float32 ``shape``: white noise low-passed by ``sigma`` px, rescaled to unit std.

    Wide blurs are done on a coarser grid and upsampled: same look, a fraction of the cost.
    """
    factor = max(int(sigma // 2), 1)
    coarse = (-(-shape[0] // factor), -(-shape[1] // factor))
    noise = ndi.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma / factor)
    if factor > 1:
        noise = _zoom_to(noise, shape)
    return noise / (noise.std() + 1e-6)


def _zoom_to(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float (h, w) array to ``shape``."""
    factors = (shape[0] / arr.shape[0], shape[1] / arr.shape[1])
    out = ndi.zoom(arr, factors, order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]
