"""Seeded hip-radiograph phantoms whose hip-fracture descriptors are known.

Each image looks like one hip cropped from an AP pelvis radiograph: uint8 (H, W), bright = dense,
air near black. It holds the soft-tissue shadow of the hip and thigh, the hemipelvis (iliac wing,
acetabular roof, teardrop, acetabular walls, pubic and ischial rami around the obturator foramen) and
the proximal femur (head, neck, greater and lesser trochanter, proximal shaft). Bone is a projection:
cortex seen edge-on is brighter than the medullary bone inside it, the shaft shows the tram lines of a
tube, and cancellous bone carries the compressive and tensile trabecular groups. Quantum noise, detector
blur, unsharp masking and a display window from the image's histogram, as on a CR/DR console.

About 60% of hips are fractured (exactly 3 of every block of 5 patients) at a known place and with
known descriptors (mining.sentences):

- ``location``: a line across the head-neck junction (subcapital), mid neck (transcervical), neck base
  (basicervical), from greater to lesser trochanter (intertrochanteric) or across the shaft below the
  lesser trochanter (subtrochanteric).
- ``displacement``: the fragments move apart by an amount growing with the grade (0.12-0.85 head
  radii, 2-22 degrees). The head stays in the acetabulum, so the proximal fragment only turns about
  the head's centre (into varus for intertrochanteric, flexed and abducted for subtrochanteric
  fractures) while the shaft rides up (shortening) and sideways; "undisplaced" shows only a thin
  lucent line.
- ``impacted``: the fragments are driven into each other, so the overlap makes a dense sclerotic band
  and the femur shortens; no lucent gap.
- ``comminuted``: extra fracture lines branching off the main one and a wedge ("butterfly") fragment.
- ``avulsed_fragment``: the lesser trochanter is pulled off (as by iliopsoas) and lies apart.

Patients differ as in a real fracture clinic, a confounder worth knowing: the fractured are older
(mean 80 vs 72) and more often women, and bone density and cortical thickness fall with age.

Truth is in ``PhantomImage.metadata``: the ``FractureDescriptors.as_dict()`` keys, ``report`` (the
templated sentence), ``age``, ``sex`` and, on fractured images, ``fracture_bbox`` [x0, y0, x1, y1]
(inclusive pixel bounds of everything the fracture changed near the fracture: line, fragments ends,
comminution, avulsed fragment). ``findings`` is empty: no masks.

Geometry is built in a canonical frame, a right hip as seen on an AP radiograph (the patient's right on
the viewer's left): lateral (greater trochanter) to the left, medial (pubis) to the right. "L" images
are mirrored. Points are (x, y) = (column, row); lengths are in pixels and scale with the image, most of
them as multiples of the femoral-head radius.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from mining.sentences import DISPLACEMENTS, LOCATIONS, NECK_LOCATIONS, FractureDescriptors, fracture_sentence

from .common import PhantomImage, smooth_noise_1d, smoothstep

__all__ = ["generate_hip_phantoms", "render_hip_phantom"]

_FRACTURE_BLOCK = (True, True, True, False, False)  # 60% fractured, exactly, per block of five patients
_LOCATION_P = (0.28, 0.15, 0.12, 0.3, 0.15)  # subcapital and intertrochanteric fractures are the common ones
_GRADE = {name: i for i, name in enumerate(DISPLACEMENTS)}
# Per displacement grade: (shift in head radii, angulation in degrees) ranges.
_SHIFT = ((0.0, 0.0), (0.12, 0.2), (0.3, 0.45), (0.6, 0.85))
_ANGLE = ((0.0, 0.0), (2.0, 5.0), (6.0, 11.0), (13.0, 22.0))
Array = np.ndarray


# --------------------------------------------------------------------------- public API


def generate_hip_phantoms(n_images: int, seed: int, width: int = 512, height: int = 512) -> list[PhantomImage]:
    """``n_images`` hip phantoms, one per patient ("H0001", "H0002", ...).

    Image ``i`` depends only on ``(seed, i)``, so a longer run extends a shorter one. Exactly 3 of
    every 5 consecutive patients have a fracture. ``seed`` must be a non-negative int.
    """
    images = []
    for index in range(n_images):
        attrs = _patient_attributes(seed, index)
        images.append(
            render_hip_phantom(
                np.random.default_rng([seed, 6, index]),
                patient_id=f"H{index + 1:04d}",
                laterality=attrs["laterality"],
                descriptors=attrs["descriptors"],
                age=attrs["age"],
                sex=attrs["sex"],
                width=width,
                height=height,
            )
        )
    return images


def render_hip_phantom(
    rng: np.random.Generator,
    *,
    patient_id: str,
    laterality: str,
    descriptors: FractureDescriptors,
    age: int,
    sex: str,
    width: int = 512,
    height: int = 512,
) -> PhantomImage:
    """Render one hip with the fracture ``descriptors`` (which must be complete and valid).

    All randomness comes from ``rng``, split into independent streams for anatomy, fracture and
    noise: the same ``rng`` state with ``FractureDescriptors(False)`` renders the same hip unbroken,
    pixel for pixel outside what the fracture changes.
    """

    errors = descriptors.validate()
    if errors:
        raise ValueError("; ".join(errors))
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be L or R, got {laterality!r}")
    anatomy_rng, fracture_rng, noise_rng = rng.spawn(3)
    hip = _hip_geometry(anatomy_rng, (height, width), age, sex)
    background = _soft_tissue(anatomy_rng, hip) + _pelvis(anatomy_rng, hip)
    fracture = _fracture_plan(fracture_rng, hip, descriptors) if descriptors.fracture else None
    femur, zone = _femur(hip, fracture)
    pixels = _expose(noise_rng, hip, background + femur, background)
    metadata: dict = {**descriptors.as_dict(), "report": fracture_sentence(descriptors), "age": age, "sex": sex}
    if laterality == "L":  # the canonical frame is a right hip; mirror it
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        zone = zone[:, ::-1]
    if fracture is not None:
        metadata["fracture_bbox"] = _bbox(zone)
    label = "fracture" if descriptors.fracture else "no_fracture"
    return PhantomImage(pixels, patient_id, "AP", laterality, label, [], metadata)


# --------------------------------------------------------------------------- patients


def _patient_attributes(seed: int, index: int) -> dict:
    """Descriptors, laterality, age and sex of patient ``index``."""
    block, slot = divmod(index, len(_FRACTURE_BLOCK))
    order = np.random.default_rng([seed, 4, block]).permutation(len(_FRACTURE_BLOCK))
    fractured = _FRACTURE_BLOCK[order[slot]]
    rng = np.random.default_rng([seed, 5, index])
    # Hip fractures are mostly in old women; the unbroken hips come from the same clinic.
    age = int(np.clip(rng.normal(80 if fractured else 72, 8), 50, 99))
    sex = "F" if rng.random() < (0.72 if fractured else 0.55) else "M"
    return {
        "descriptors": _draw_descriptors(rng) if fractured else FractureDescriptors(False),
        "laterality": str(rng.choice(["L", "R"])),
        "age": age,
        "sex": sex,
    }


def _draw_descriptors(rng: np.random.Generator) -> FractureDescriptors:
    """A plausible mix: impaction mostly in neck fractures, comminution mostly in trochanteric ones."""
    location = str(rng.choice(LOCATIONS, p=_LOCATION_P))
    neck = location in NECK_LOCATIONS
    displacement = str(rng.choice(DISPLACEMENTS))
    comminuted = bool(rng.random() < (0.15 if neck else 0.5))
    impacted = bool(rng.random() < (0.35 if neck else 0.15))
    avulsed = bool(rng.random() < (0.08 if neck else 0.3))
    return FractureDescriptors(True, displacement, comminuted, impacted, location, avulsed)


# --------------------------------------------------------------------------- anatomy


@dataclass
class _Hip:
    """Canonical-frame anatomy (right hip, lateral to the left). Points (x, y) in px."""

    shape: tuple[int, int]  # (H, W)
    r: float  # femoral head radius, the unit of most other lengths
    head: Array  # (2,)
    neck_dir: Array  # (2,) unit, from the neck base towards the head
    junction: Array  # (2,) where the neck axis meets the shaft axis
    shaft_dir: Array  # (2,) unit, down the shaft
    lateral: Array  # (2,) unit, perpendicular to the shaft, towards the greater trochanter
    shaft_r: float
    neck_r: tuple[float, float]  # radius at the head, at the base
    gt: tuple[Array, float, float]  # centre, half-width across the shaft, half-length along it
    lt: tuple[Array, float, float]
    cortex: tuple[float, float]  # cortical thickness: proximal femur, shaft
    bone: float  # bone density factor, lower with age (osteoporosis)
    trabecular_table: Array  # float32 (n, n) wrap-around noise the trabecular streaks are drawn from
    trabecular_centers: tuple[Array, Array]  # where the compressive lines fan out from; the tensile arcs' centre
    pelvis: dict[str, float]  # tilt (rad), size, iliac wing width and density factors


def _hip_geometry(rng: np.random.Generator, shape: tuple[int, int], age: int, sex: str) -> _Hip:
    """Draw one hip's anatomy; angles and proportions vary within normal adult ranges."""
    h, w = shape
    s = w / 512
    r = rng.uniform(44, 52) * s * (1.06 if sex == "M" else 1.0)
    head = np.array([w * rng.uniform(0.55, 0.6), h * rng.uniform(0.3, 0.36)])
    tilt = np.radians(rng.uniform(3, 9))  # the shaft's distal end points medially
    shaft_dir = np.array([np.sin(tilt), np.cos(tilt)])
    neck_shaft = np.radians(rng.uniform(124, 136))
    theta = np.arctan2(shaft_dir[1], shaft_dir[0]) - neck_shaft
    neck_dir = np.array([np.cos(theta), np.sin(theta)])
    junction = head - rng.uniform(2.0, 2.25) * r * neck_dir
    lateral = np.array([-shaft_dir[1], shaft_dir[0]])
    gt_center = junction + lateral * rng.uniform(0.55, 0.7) * r - shaft_dir * rng.uniform(0.6, 0.75) * r
    lt_center = junction + shaft_dir * rng.uniform(0.85, 1.0) * r - lateral * rng.uniform(0.78, 0.88) * r
    thinning = np.clip((age - 50) / 45, 0, 1) * (1.0 if sex == "F" else 0.6)  # 0 young .. 1 very osteoporotic
    shaft_r = rng.uniform(0.5, 0.58) * r
    return _Hip(
        shape=shape,
        r=r,
        head=head,
        neck_dir=neck_dir,
        junction=junction,
        shaft_dir=shaft_dir,
        lateral=lateral,
        shaft_r=shaft_r,
        neck_r=(rng.uniform(0.66, 0.74) * r, rng.uniform(0.84, 0.92) * r),
        gt=(gt_center, rng.uniform(0.55, 0.68) * r, rng.uniform(0.62, 0.75) * r),
        lt=(lt_center, rng.uniform(0.22, 0.28) * r, rng.uniform(0.26, 0.32) * r),
        cortex=(rng.uniform(0.06, 0.08) * r, shaft_r * rng.uniform(0.4, 0.5) * (1 - 0.35 * thinning)),
        bone=float(rng.uniform(0.95, 1.05) * (1 - 0.3 * thinning)),
        trabecular_table=_noise_table(rng),
        trabecular_centers=(
            junction + shaft_dir * 1.8 * r - lateral * 0.5 * r,
            junction + shaft_dir * 1.2 * r - lateral * 1.4 * r,
        ),
        pelvis={
            "tilt": rng.uniform(-0.12, 0.12),
            "size": rng.uniform(0.92, 1.08),
            "wing": rng.uniform(0.85, 1.15),
            "density": rng.uniform(0.9, 1.1),
        },
    )


def _soft_tissue(rng: np.random.Generator, hip: _Hip) -> Array:
    """Attenuation (H, W) of the soft tissue: air lateral to the skin edge, the thickest tissue
    centrally, a thinner perineum medial to the thigh below the pelvis, a faint fat plane along the
    lateral thigh muscles, and perhaps bowel gas over the pelvis. Smooth, so built on every other
    pixel and upsampled."""
    h, w = hip.shape
    r = hip.r
    xs, ys = _grid((slice(0, h), slice(0, w)), stride=2)
    gt_y = float(hip.gt[0][1])
    gt_lateral = float(hip.gt[0][0] - hip.gt[1])
    # The hip is widest at the greater trochanter: the skin edge bulges out there.
    cover = rng.uniform(0.9, 2.6) * r
    wobble = 0.04 * r * smooth_noise_1d(rng, h + 2, 20, mode="wrap")[ys[:, :1].astype(np.int32)]
    skin_x = gt_lateral - cover * (0.65 + 0.35 * np.exp(-(((ys - gt_y) / (3.0 * r)) ** 2))) + wobble
    depth = np.clip((xs - skin_x) / (3.5 * r), 0.0, 1.0)
    thickness = np.sqrt(depth) * (1.0 - 0.25 * depth)
    # Medial contour of the thigh below the ischial tuberosity; the perineum beyond it is thinner.
    shaft_x = hip.junction[0] + (ys - hip.junction[1]) * hip.shaft_dir[0] / hip.shaft_dir[1]
    medial_x = shaft_x + rng.uniform(3.0, 3.6) * r + 0.02 * (ys - gt_y)
    below = smoothstep(ys, gt_y + 1.0 * r, gt_y + 2.5 * r)
    thickness *= 1.0 - 0.35 * smoothstep(xs - medial_x, -0.1 * r, 0.25 * r) * below
    # Fat between the gluteal and lateral thigh muscles: a faint dark stripe beside the femur.
    fat_x = shaft_x - rng.uniform(1.2, 1.8) * r - 0.25 * r * np.exp(-(((ys - gt_y) / (1.5 * r)) ** 2))
    thickness *= 1.0 - 0.05 * np.exp(-(((xs - fat_x) / (0.07 * r)) ** 2)) * smoothstep(ys, gt_y - r, gt_y)
    if rng.random() < 0.6:
        thickness *= 1.0 - _bowel_gas(rng, hip, xs, ys)
    return _upsample2(rng.uniform(0.3, 0.4) * thickness, (h, w))


def _bowel_gas(rng: np.random.Generator, hip: _Hip, xs: Array, ys: Array) -> Array:
    """Share of soft tissue displaced by gas, like ``xs``: blotches in the pelvis above the pubis."""
    u, v = (xs - hip.head[0]) / hip.r, (ys - hip.head[1]) / hip.r
    region = smoothstep(u, 0.8, 1.8) * smoothstep(-v, 0.0, 0.8)
    blobs = _coarse_noise(rng, xs.shape, 8)
    return (0.3 * smoothstep(blobs, 0.9, 1.7) * region).astype(np.float32)


# --------------------------------------------------------------------------- pelvis


def _pelvis(rng: np.random.Generator, hip: _Hip) -> Array:
    """Attenuation (H, W) of the hemipelvis: the iliac wing between its lateral border and the pelvic
    brim, the acetabulum, the pubic rami and ischium around the obturator foramen; cortical margins,
    the acetabular roof (sourcil), the teardrop and the acetabular walls; mottled cancellous bone."""
    h, w = hip.shape
    r = hip.r
    xs, ys = _grid((slice(0, h), slice(0, w)), stride=2)
    u, v = _local(xs, ys, hip.head, r, hip.pelvis["tilt"])
    # Bone is thick around the acetabulum and thins out into the iliac wing, unevenly.
    thick = 0.4 + 0.6 * np.exp(-((u - 0.3) ** 2 + (v + 0.5) ** 2) * 0.25)
    thick *= 1.0 - 0.35 * np.exp(-(((u - 0.2) ** 2 + (v - 0.1) ** 2) ** 2))  # the thin floor of the acetabulum
    thick *= 1.0 + 0.25 * _coarse_noise(rng, xs.shape, 8)
    sdf = _upsample2(_pelvis_shape(hip, xs, ys), (h, w)) * r
    radius = _upsample2(0.42 * r * thick, (h, w))
    texture = 0.25 * _coarse_noise(rng, (h, w), 2) + 0.35 * _coarse_noise(rng, (h, w), 4)
    mu = _bone_profile(-sdf, 0.07 * r, radius, texture, hip.bone * hip.pelvis["density"])
    near = (
        slice(max(int(hip.head[1] - 1.6 * r), 0), min(int(hip.head[1] + 1.2 * r), h)),
        slice(max(int(hip.head[0] - 1.4 * r), 0), min(int(hip.head[0] + 1.7 * r), w)),
    )
    mu[near] += hip.bone * _acetabular_lines(*_local(*_grid(near), hip.head, r, hip.pelvis["tilt"]), r)
    return mu


def _pelvis_shape(hip: _Hip, xs: Array, ys: Array) -> Array:
    """Signed distance, in head radii (< 0 in bone), to the hemipelvis; like ``xs``."""
    u, v = _local(xs, ys, hip.head, hip.r, hip.pelvis["tilt"])
    u, v = u / hip.pelvis["size"], v / hip.pelvis["size"]
    wing = hip.pelvis["wing"]
    # Points in head radii from the head centre, x medial, y down.
    body = _sd_ellipse(u, v, (0.15, -1.45), (1.25, 1.15))  # above the acetabulum
    iliac_wing = _sd_ellipse(*_turn(u + 0.6, v + 4.9, -0.35), (0.0, 0.0), (2.3 * wing, 2.5))
    brim = _sd_taper(u, v, (1.25, 0.1), (2.1, -5.5), (0.42, 0.7))  # its medial edge: the pelvic brim
    acetabulum = _sd_circle(u, v, (0.3, -0.15), 1.1)
    superior_ramus = _smin(
        _sd_taper(u, v, (0.9, 0.35), (3.0, 0.7), (0.55, 0.33)),
        _sd_taper(u, v, (3.0, 0.7), (5.5, 1.4), (0.33, 0.27)),
        0.2,
    )
    ischium = _sd_taper(u, v, (0.35, 0.6), (0.75, 2.35), (0.62, 0.48))
    tuberosity = _sd_ellipse(*_turn(u - 0.95, v - 2.65, 0.3), (0.0, 0.0), (0.7, 0.5))
    inferior_ramus = _sd_taper(u, v, (1.2, 2.95), (5.5, 1.9), (0.36, 0.26))
    bone = _smin(_smin(body, iliac_wing, 0.9), brim, 0.6)
    bone = _smin(_smin(bone, acetabulum, 0.35), superior_ramus, 0.35)
    bone = _smin(_smin(_smin(bone, ischium, 0.3), tuberosity, 0.3), inferior_ramus, 0.35)
    foramen = _sd_ellipse(*_turn(u - 2.05, v - 1.75, 0.35), (0.0, 0.0), (1.05, 0.75))
    return np.maximum(bone, -foramen)


def _acetabular_lines(u: Array, v: Array, r: float) -> Array:
    """Bright lines like ``u``: the sourcil above the joint space, the teardrop, and the faint
    anterior and posterior acetabular walls crossing the head. ``u``, ``v``: head-centred
    coordinates in head radii, x medial, y down."""
    px = 1.0 / r  # one pixel in head radii
    rho, angle = np.hypot(u, v), np.arctan2(v, u)  # angle -pi/2 is straight up
    roof = np.exp(-(((rho - 1.13) / (2.5 * px)) ** 2)) * smoothstep(-angle, 0.5, 1.0) * smoothstep(angle, -2.75, -2.4)
    teardrop = _ring(u, v, (1.2, 0.25), (0.18, 0.42), 1.6 * px) * (v > 0.2)
    posterior = _ring(u, v, (0.75, -0.1), (1.6, 1.25), 1.6 * px) * smoothstep(v, -0.8, -0.4) * (u < 0.3)
    anterior = _ring(u, v, (0.55, 0.25), (1.15, 0.95), 1.4 * px) * smoothstep(v, -0.75, -0.3) * (u < 0.5)
    ilioischial = np.exp(-(((u - 1.02 - 0.08 * v) / (1.8 * px)) ** 2)) * smoothstep(-v, -0.3, 0.2) * (v > -1.3)
    return 0.45 * roof + 0.35 * teardrop + 0.14 * posterior + 0.1 * anterior + 0.2 * ilioischial


# --------------------------------------------------------------------------- femur


@dataclass
class _Fragment:
    """A rigid piece of the femur: the image point p shows the femur-frame point
    rot(-angle) @ (p - pivot - shift) + pivot, where ``side`` keeps it (> 0 proximal, < 0 distal)."""

    sign: int  # +1 the proximal fragment, -1 the distal one
    angle: float  # radians, counter-clockwise on screen (y down)
    pivot: Array
    shift: Array


@dataclass
class _FracturePlan:
    """One fracture, in the femur frame: its line, how its ends look, and how the fragments moved."""

    point: Array  # (2,) on the fracture line
    normal: Array  # (2,) unit, towards the head
    jag: Array  # (n,) offset in px along the line, indexed by (distance along the line + n/2)
    gap: float  # px of lucent gap (0 when impacted)
    bevel: float  # px over which a fragment's end fades: the fracture surface is oblique to the beam
    fragments: tuple[_Fragment, _Fragment]  # proximal, distal
    descriptors: FractureDescriptors
    rng: np.random.Generator  # for comminution, drawn after the fragments


def _fracture_plan(rng: np.random.Generator, hip: _Hip, d: FractureDescriptors) -> _FracturePlan:
    """Where the line runs and how the fragments move, from the descriptors."""
    grade = _GRADE[str(d.displacement)]
    point, normal = _fracture_line(rng, hip, str(d.location))
    fragments, gap = _displace(rng, hip, d, point, normal)
    # A jagged line: fine teeth on a wavy course; a finer crack when undisplaced, rougher when comminuted.
    n = int(8 * hip.r)
    rough = (0.5 if grade == 0 else 1.0) * (1.8 if d.comminuted else 1.0)
    jag = rough * (
        smooth_noise_1d(rng, n, 1.5, mode="wrap") * rng.uniform(0.8, 1.6)
        + smooth_noise_1d(rng, n, 6.0, mode="wrap") * rng.uniform(2.5, 5.0)
    )
    bevel = 1.0 if grade == 0 else rng.uniform(3.0, 7.0)
    return _FracturePlan(point, normal, jag, gap, bevel, fragments, d, rng)


def _displace(
    rng: np.random.Generator, hip: _Hip, d: FractureDescriptors, point: Array, normal: Array
) -> tuple[tuple[_Fragment, _Fragment], float]:
    """The proximal and distal fragments' moves, and the lucent gap (px) between their ends.

    The head stays in the acetabulum, so the proximal fragment can only turn about the head's centre;
    the shaft is free to ride up (shortening) and sideways."""
    r, grade = hip.r, _GRADE[str(d.displacement)]
    shift = rng.uniform(*_SHIFT[grade]) * r
    angle = np.radians(rng.uniform(*_ANGLE[grade]))
    medial = -hip.lateral
    if d.location in NECK_LOCATIONS:  # the shaft rides up and out past the head
        direction, tilt = _unit(-hip.shaft_dir + 0.5 * hip.lateral), 0.25 * angle
        proximal = _Fragment(+1, rng.uniform(-0.3, 0.3) * angle, hip.head, np.zeros(2))
    elif d.location == "intertrochanteric":  # varus collapse: the neck tips down, the shaft rides up and in
        direction, tilt = _unit(-hip.shaft_dir + 0.6 * medial), 0.15 * angle
        proximal = _Fragment(+1, -angle, hip.head, np.zeros(2))
    else:  # subtrochanteric: iliopsoas and gluteals flex and abduct the top, adductors pull the shaft in
        direction, tilt = _unit(-hip.shaft_dir + 0.8 * medial), 0.1 * angle
        proximal = _Fragment(+1, -angle, hip.head, np.zeros(2))
    if d.impacted:  # driven together along the normal: overlap, a dense band, shortening
        gap, along = 0.0, rng.uniform(0.06, 0.12) * r
    else:  # pulled apart a little: a lucent line, wider when displaced
        gap, along = rng.uniform(0.9, 1.4) + 0.04 * shift, -rng.uniform(0.0, 0.03) * shift
    # Displacement is relative: the shaft's end follows the proximal fragment's end, then moves on.
    proximal_end = _from_femur_frame(point[None, :], proximal)[0]
    distal_shift = proximal_end - point + shift * direction + along * _rotate(normal, proximal.angle)
    return (proximal, _Fragment(-1, tilt, point, distal_shift)), gap


def _fracture_line(rng: np.random.Generator, hip: _Hip, location: str) -> tuple[Array, Array]:
    """A point on the fracture line and its unit normal towards the head, in the femur frame."""
    r = hip.r
    if location in ("subcapital", "transcervical"):
        distance = {"subcapital": (0.85, 0.98), "transcervical": (1.3, 1.45)}[location]
        point = hip.head - rng.uniform(*distance) * r * hip.neck_dir
        return point, _rotate(hip.neck_dir, rng.uniform(-0.15, 0.15))
    if location == "basicervical":  # from the trochanteric fossa, medial to the trochanter, to above the lesser
        gt_center, across_gt, _ = hip.gt
        top = gt_center - hip.lateral * across_gt * rng.uniform(0.9, 1.1) + hip.shaft_dir * 0.1 * r
        bottom = hip.lt[0] - hip.shaft_dir * rng.uniform(0.4, 0.55) * r + hip.lateral * 0.2 * r
        return _line_through(top, bottom, hip.head)
    if location == "intertrochanteric":  # from the greater to the lesser trochanter
        top = hip.gt[0] + hip.shaft_dir * rng.uniform(0.1, 0.35) * r
        bottom = hip.lt[0] - hip.shaft_dir * 0.2 * r + hip.lateral * 0.15 * r
        return _line_through(top, bottom, hip.head)
    point = hip.junction + hip.shaft_dir * rng.uniform(1.5, 2.2) * r
    return point, _rotate(-hip.shaft_dir, rng.uniform(-0.5, 0.5))


def _line_through(a: Array, b: Array, head: Array) -> tuple[Array, Array]:
    """The midpoint of a-b and the line's unit normal towards ``head``."""
    along = _unit(b - a)
    normal = np.array([along[1], -along[0]])
    return 0.5 * (a + b), normal if normal @ (head - a) > 0 else -normal


def _femur(hip: _Hip, plan: _FracturePlan | None) -> tuple[Array, Array]:
    """Femur attenuation (H, W) and the fracture zone, bool (H, W) (empty without a fracture)."""
    h, w = hip.shape
    mu = np.zeros((h, w), dtype=np.float32)
    zone = np.zeros((h, w), dtype=bool)
    if plan is None:
        _add_fragment(hip, mu, None, None, zone, include_lt=True)
        return mu, zone
    avulsed = plan.descriptors.avulsed_fragment
    for fragment in plan.fragments:
        _add_fragment(hip, mu, plan, fragment, zone, include_lt=not avulsed)
    if plan.descriptors.comminuted:
        _comminute(plan.rng, hip, plan, mu, zone)
    if avulsed:
        _avulse_lesser_trochanter(plan.rng, hip, mu, zone)
    return mu, zone


def _add_fragment(
    hip: _Hip, mu: Array, plan: _FracturePlan | None, fragment: _Fragment | None, zone: Array, *, include_lt: bool
) -> None:
    """Render the whole femur, or one fragment of it, into ``mu`` (H, W) in place; mark the fracture
    ends of a fragment in ``zone``.

    The outline's distance field and the texture coordinates are smooth, so they are computed on every
    other pixel and upsampled; only the fracture line and the texture lookup run at full resolution.
    """
    crop = _femur_crop(hip, fragment)
    shape = (crop[0].stop - crop[0].start, crop[1].stop - crop[1].start)
    coarse = _grid(crop, stride=2)
    full = _grid(crop)
    if fragment is not None:
        coarse, full = _to_femur_frame(*coarse, fragment), _to_femur_frame(*full, fragment)
    sdf, along, calcar, *streaks = (_upsample2(field, shape) for field in _femur_fields(hip, *coarse, include_lt))
    t = smoothstep(along, 0.6 * hip.r, 2.4 * hip.r)
    # Thin cortex and a broad bone proximally, the thick-walled tube of the shaft distally; the
    # calcar, the thick cortex under the neck, carries the load down to the medial shaft.
    cortex = hip.cortex[0] + (hip.cortex[1] - hip.cortex[0]) * t + 0.1 * hip.r * calcar
    radius = 0.95 * hip.r + (hip.shaft_r - 0.95 * hip.r) * t
    texture = _trabeculae(hip, full, streaks, t)
    bone = _bone_profile(-sdf, cortex, radius, texture, hip.bone)
    if plan is not None and fragment is not None:
        side = _side(hip, plan, *full) * fragment.sign
        bone *= np.clip((side - 0.5 * plan.gap) / plan.bevel + 0.5, 0.0, 1.0)  # keep the fragment's own side
        zone[crop] |= (np.abs(side) < plan.gap + 0.5 * plan.bevel + 2.0) & (sdf < 1.0)
    mu[crop] += bone


def _femur_crop(hip: _Hip, fragment: _Fragment | None) -> tuple[slice, slice]:
    """Image rows and columns the (moved) femur can reach: its bounding box (the shaft reaching well
    below the image), moved like the fragment."""
    h, w = hip.shape
    r = hip.r
    x0 = min(hip.gt[0][0] - hip.gt[1], hip.junction[0] - 1.2 * r) - 0.4 * r
    x1 = hip.head[0] + 1.3 * r
    y0, y1 = hip.head[1] - 1.3 * r, 1.6 * h
    corners = np.array([(x0, y0), (x1, y0), (x0, y1), (x1, y1)])
    if fragment is not None:
        corners = _from_femur_frame(corners, fragment)
    (x0, y0), (x1, _) = corners.min(axis=0) - 2, corners.max(axis=0) + 2
    return slice(max(int(y0), 0), h), slice(max(int(x0), 0), min(int(np.ceil(x1)), w))


def _femur_fields(hip: _Hip, xs: Array, ys: Array, include_lt: bool) -> list[Array]:
    """At femur-frame points ``xs``, ``ys``, each like ``xs``: the signed distance (px, < 0 in bone)
    to the femur's outline, the distance (px) down the shaft axis from the neck-shaft junction, the
    calcar's weight (1 on the line of thick cortex from under the neck to the lesser trochanter), and
    the streak coordinates of the trabeculae: (across, along) the compressive group's lines, which
    fan out from below the calcar, then (across, along) the tensile group's arcs."""
    r = hip.r
    sdf = _femur_shape(hip, xs, ys, include_lt)
    j, down = hip.junction, hip.shaft_dir
    along = (xs - j[0]) * down[0] + (ys - j[1]) * down[1]
    below_neck = np.array([-hip.neck_dir[1], hip.neck_dir[0]])
    below_neck = below_neck if below_neck[1] > 0 else -below_neck
    under_neck = hip.head - 0.9 * r * hip.neck_dir + 0.6 * r * below_neck
    calcar_line = _sd_tapered(xs, ys, under_neck, hip.lt[0] - hip.lateral * 0.1 * r, (0.0, 0.0))
    calcar = np.exp(-((calcar_line / (0.3 * r)) ** 2))
    fan_center, arch_center = hip.trabecular_centers
    fan = np.arctan2(xs - fan_center[0], fan_center[1] - ys) * (1.4 * r)  # ~ px across the lines near the neck
    fan_length = np.hypot(xs - fan_center[0], ys - fan_center[1])
    arc_radius = np.hypot(xs - arch_center[0], ys - arch_center[1])
    arc_length = np.arctan2(ys - arch_center[1], xs - arch_center[0]) * (1.5 * r)
    # Texture coordinates: about 2 px per texel across a group's lines, 14 px along them.
    return [sdf, along, calcar, fan * 0.55, fan_length * 0.07, arc_radius * 0.55, arc_length * 0.07]


def _femur_shape(hip: _Hip, xs: Array, ys: Array, include_lt: bool) -> Array:
    """Signed distance (px, < 0 in bone) to the femur's outline at femur-frame points; like ``xs``."""
    r = hip.r
    j, down = hip.junction, hip.shaft_dir
    head = np.hypot(xs - hip.head[0], ys - hip.head[1]) - r
    neck = _sd_tapered(xs, ys, hip.head, j, hip.neck_r)
    body = _sd_oriented_ellipse(xs, ys, j + down * 0.35 * r + hip.lateral * 0.3 * r, down, (0.95 * r, 1.0 * r))
    gt = _sd_oriented_ellipse(xs, ys, hip.gt[0], _rotate(down, 0.15), (hip.gt[1], hip.gt[2]))
    shaft = _sd_tapered(xs, ys, j + down * 0.2 * r, j + down * 12 * r, (0.85 * r, hip.shaft_r), bend=4.0)
    sdf = _smin(_smin(_smin(neck, body, 0.35 * r), gt, 0.3 * r), shaft, 0.6 * r)
    if include_lt:
        lt = _sd_oriented_ellipse(xs, ys, hip.lt[0], _rotate(down, -0.7), (hip.lt[1], hip.lt[2]))
        sdf = _smin(sdf, lt, 0.2 * r)
    return _smin(sdf, head, 0.3 * r)


def _bone_profile(
    depth: Array, cortex: Array | float, radius: Array | float, texture: Array | float, density: float
) -> Array:
    """Projected attenuation of a tube of ``radius`` with walls ``cortex`` thick, ``depth`` px inside
    its outline (negative outside): chords through the cortical shell and through the medulla."""
    s = np.clip(depth + 0.5, 0.0, radius)  # + 0.5: the outline falls between pixel centres
    outer = 2.0 * np.sqrt(s * (2.0 * radius - s))
    inner_r = np.maximum(radius - cortex, 1.0)
    si = np.clip(s - cortex, 0.0, inner_r)
    inner = 2.0 * np.sqrt(si * (2.0 * inner_r - si))
    return (density * (0.022 * (outer - inner) + 0.004 * inner * (1.0 + texture))).astype(np.float32)


def _trabeculae(hip: _Hip, full: tuple[Array, Array], streaks: list[Array], shaft: Array) -> Array:
    """Cancellous texture, about zero-mean, like ``shaft``: the compressive group fanning from the
    calcar up into the head, the tensile group arching from below the greater trochanter over the
    neck into the head, fine grain elsewhere; fading down the shaft (``shaft`` 0 .. 1), whose canal
    is marrow. ``full``: femur-frame (x, y); ``streaks``: the coordinates from ``_femur_fields``.

    Each group samples one noise table with coordinates that change fast across its lines and
    slowly along them, which draws broken streaks that move with the fragment they are in."""
    r = hip.r
    table = hip.trabecular_table
    compressive = _lookup(table, streaks[0], streaks[1])
    tensile = _lookup(table, streaks[2] + 64.0, streaks[3])
    xs, ys = full
    grain = _lookup(table, ys * 0.7, xs * 0.7 + 40.0)
    u, v = (xs - hip.head[0]) / r, (ys - hip.head[1]) / r
    in_head = np.exp(-(u * u + v * v) * 0.6)
    gj = ((xs - hip.junction[0]) ** 2 + (ys - hip.junction[1]) ** 2) / (r * r)
    neck = np.exp(-gj * 0.45)
    texture = (0.8 * in_head + 0.3 * neck) * compressive + (0.3 * in_head + 0.7 * neck) * tensile + 0.6 * grain
    return (0.28 * (1.0 - 0.7 * shaft) * texture).astype(np.float32)


def _side(hip: _Hip, plan: _FracturePlan, xs: Array, ys: Array) -> Array:
    """Signed distance (px) to the jagged fracture line, > 0 on the head's side, like ``xs``.

    A neck fracture never takes the greater trochanter with the head: where its line, carried on,
    would cut the trochanter's tip, the trochanter stays with the shaft."""
    dx, dy = xs - plan.point[0], ys - plan.point[1]
    across = dx * plan.normal[0] + dy * plan.normal[1]
    along = dy * plan.normal[0] - dx * plan.normal[1]
    n = plan.jag.size
    side = across + np.take(plan.jag, np.clip(along + n // 2, 0, n - 1).astype(np.int32))
    if plan.descriptors.location in NECK_LOCATIONS:
        gt_center, across_gt, along_gt = hip.gt
        outside_gt = _sd_oriented_ellipse(xs, ys, gt_center, _rotate(hip.shaft_dir, 0.15), (across_gt, along_gt))
        side = np.minimum(side, outside_gt + 0.1 * hip.r)
    return side


def _to_femur_frame(xs: Array, ys: Array, fragment: _Fragment) -> tuple[Array, Array]:
    """Femur-frame coordinates of the image points (``xs``, ``ys``) that ``fragment`` covers."""
    u, v = _turn(
        xs - fragment.pivot[0] - fragment.shift[0], ys - fragment.pivot[1] - fragment.shift[1], -fragment.angle
    )
    return (u + fragment.pivot[0]).astype(np.float32), (v + fragment.pivot[1]).astype(np.float32)


# --------------------------------------------------------------------------- comminution and avulsion


def _comminute(rng: np.random.Generator, hip: _Hip, plan: _FracturePlan, mu: Array, zone: Array) -> None:
    """Crack lines branching off the fracture into the distal fragment, and a wedge fragment."""
    r = hip.r
    distal = plan.fragments[1]
    tangent = np.array([-plan.normal[1], plan.normal[0]])
    lines = np.zeros_like(mu)
    for _ in range(int(rng.integers(2, 5))):
        start = plan.point + tangent * rng.uniform(-0.6, 0.6) * r
        heading = _rotate(-plan.normal, rng.uniform(-0.8, 0.8))
        length = rng.uniform(0.4, 1.0) * r
        points = _bent_path(rng, start, heading, length)
        points = _from_femur_frame(points, distal)
        _stamp_line(lines, points, 1.1)
    lucent = np.clip(lines, 0.0, 1.0)
    zone |= (lucent > 0.2) & (mu > 0.05)  # only where a crack crosses bone
    mu *= 1.0 - 0.4 * lucent
    _wedge_fragment(rng, hip, plan, mu, zone)


def _wedge_fragment(rng: np.random.Generator, hip: _Hip, plan: _FracturePlan, mu: Array, zone: Array) -> None:
    """Lift a triangle of bone with its base on the fracture line out of the distal fragment's edge
    and set it down a few px away, outlined by a lucent rim."""
    r = hip.r
    distal = plan.fragments[1]
    tangent = np.array([-plan.normal[1], plan.normal[0]])
    # The wedge breaks off the medial cortex, the side of the lesser trochanter, as it mostly does.
    side = 1.0 if tangent @ (hip.lt[0] - plan.point) > 0 else -1.0
    half_width = _bone_half_width(hip, plan.point, tangent * side)
    base_mid = plan.point + tangent * side * max(half_width - 0.2 * r, 0.0)
    corners = np.array(
        [
            base_mid - tangent * side * 0.25 * r,
            base_mid + tangent * side * 0.4 * r,  # beyond the outline: the wedge takes the cortex with it
            base_mid - plan.normal * rng.uniform(0.45, 0.7) * r + tangent * side * 0.15 * r,
        ]
    )
    corners = _from_femur_frame(corners, distal)
    crop, mask = _triangle_mask(hip.shape, corners, pad=int(0.3 * r))
    if not mask.any():
        return
    # Pushed out from the bone by a few px: it juts from the outline and leaves a lucent seam behind.
    step = _rotate(tangent * side, distal.angle) * rng.uniform(2.5, 4.5) - _rotate(plan.normal, distal.angle)
    offset = np.rint(step).astype(int)
    region = mu[crop]
    piece = region * mask
    region -= piece
    moved_mask = np.roll(mask, (offset[1], offset[0]), axis=(0, 1))
    region += np.roll(piece, (offset[1], offset[0]), axis=(0, 1))
    rim = ndi.binary_dilation(moved_mask, iterations=1) & ~moved_mask
    region *= 1.0 - 0.3 * rim
    zone[crop] |= mask | moved_mask


def _avulse_lesser_trochanter(rng: np.random.Generator, hip: _Hip, mu: Array, zone: Array) -> None:
    """The lesser trochanter as a separate, irregular small bone, pulled up and medially (the femur was
    rendered without it, so its bed shows as a defect in the medial outline)."""
    r = hip.r
    h, w = hip.shape
    center, half_w, half_l = hip.lt
    new_center = center + _unit(-hip.shaft_dir - 0.8 * hip.lateral) * rng.uniform(0.25, 0.45) * r
    low, high = np.minimum(center, new_center) - 0.7 * r, np.maximum(center, new_center) + 0.7 * r
    crop = (slice(max(int(low[1]), 0), min(int(high[1]), h)), slice(max(int(low[0]), 0), min(int(high[0]), w)))
    xs, ys = _grid(crop)
    axis = _rotate(hip.shaft_dir, -0.6 + rng.uniform(-0.5, 0.5))
    sdf = _sd_oriented_ellipse(xs, ys, new_center, axis, (half_w * 0.9, half_l * 0.9))
    # A torn-off piece, not an egg: a ragged outline.
    theta = np.arctan2(ys - new_center[1], xs - new_center[0])
    for k in (2, 3, 5):
        sdf += rng.uniform(0.04, 0.1) * half_w * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    mu[crop] += _bone_profile(-sdf, 0.12 * r, half_w, 0.0, hip.bone)
    bed = np.hypot(xs - center[0], ys - center[1]) < 1.2 * max(half_w, half_l)
    zone[crop] |= (sdf < 2.0) | bed


def _bone_half_width(hip: _Hip, point: Array, direction: Array) -> float:
    """Distance (px) from ``point`` along unit ``direction`` to the femur's outline."""
    steps = np.arange(0.0, 3.0 * hip.r, 1.0, dtype=np.float32)
    xs = (point[0] + direction[0] * steps).astype(np.float32)
    ys = (point[1] + direction[1] * steps).astype(np.float32)
    sdf = _femur_shape(hip, xs, ys, include_lt=True)
    outside = np.flatnonzero(sdf > 0)
    return float(steps[outside[0]]) if outside.size else float(steps[-1])


# --------------------------------------------------------------------------- exposure


def _expose(rng: np.random.Generator, hip: _Hip, mu: Array, background: Array) -> Array:
    """Attenuation ``mu`` (H, W) to a processed radiograph, uint8 (H, W): exposure, a heel-effect
    gradient, quantum noise, a mild unsharp mask as in clinical processing, and a display window
    set from the histogram of ``background`` (H, W), the attenuation without the femur, so that a
    fracture never shifts the grey levels of the rest of the image."""
    h, w = hip.shape
    gain = rng.uniform(1.05, 1.25)
    heel = 1.0 + rng.uniform(-0.05, 0.05) * np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    signal = (1.0 - np.exp(-gain * mu)) * heel
    # Quantum noise grows with the signal; the detector's blur then softens noise and edges alike.
    noise = rng.standard_normal((h, w), dtype=np.float32)
    signal += rng.uniform(0.045, 0.065) * noise * np.sqrt(np.clip(signal, 0.0, None) + 0.05)
    signal = ndi.gaussian_filter(signal, 0.75 * w / 512)
    blurred = _blur_coarse(signal)
    signal = signal + rng.uniform(0.25, 0.45) * (signal - blurred)
    # Auto-ranging, as a CR/DR console does: the window follows the histogram (of the pelvis and soft
    # tissue, with headroom for the femur, which is brighter where it overlaps the acetabulum).
    reference = (1.0 - np.exp(-gain * background[::4, ::4])) * heel[::4]
    lo, hi = np.percentile(reference, [0.5, 99.5])
    lo, hi = lo - rng.uniform(0.0, 0.04), hi * rng.uniform(1.42, 1.55)
    return (np.clip((signal - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- geometry helpers


def _grid(crop: tuple[slice, slice], stride: int = 1) -> tuple[Array, Array]:
    """Pixel-centre coordinates (x, y) of ``crop``, float32 (h, w) each. With ``stride`` 2, every other
    pixel from the crop's first, one more than needed: (h // 2 + 1, w // 2 + 1), for ``_upsample2``."""
    rows, cols = crop
    if stride == 1:
        ys, xs = np.mgrid[rows, cols].astype(np.float32)
        return xs, ys
    h, w = rows.stop - rows.start, cols.stop - cols.start
    ys = (rows.start + 2 * np.arange(h // 2 + 1, dtype=np.float32))[:, None]
    xs = (cols.start + 2 * np.arange(w // 2 + 1, dtype=np.float32))[None, :]
    return np.broadcast_to(xs, (ys.shape[0], xs.shape[1])), np.broadcast_to(ys, (ys.shape[0], xs.shape[1]))


def _upsample2(coarse: Array, shape: tuple[int, int]) -> Array:
    """Bilinear upsampling of a field sampled on every other pixel (``_grid(stride=2)``) to ``shape``."""
    m, n = coarse.shape
    out = np.empty((2 * m - 1, 2 * n - 1), dtype=np.float32)
    out[::2, ::2] = coarse
    out[1::2, ::2] = 0.5 * (coarse[:-1] + coarse[1:])
    out[:, 1::2] = 0.5 * (out[:, :-2:2] + out[:, 2::2])
    return out[: shape[0], : shape[1]]


def _local(xs: Array, ys: Array, origin: Array, unit: float, tilt: float) -> tuple[Array, Array]:
    """Coordinates like ``xs`` in multiples of ``unit`` around ``origin``, rotated by ``tilt`` rad."""
    c, s = np.cos(tilt), np.sin(tilt)
    dx, dy = (xs - origin[0]) / unit, (ys - origin[1]) / unit
    return c * dx + s * dy, -s * dx + c * dy


def _sd_circle(u: Array, v: Array, center: tuple[float, float], radius: float) -> Array:
    return np.hypot(u - center[0], v - center[1]) - radius


def _sd_ellipse(u: Array, v: Array, center: tuple[float, float], radii: tuple[float, float]) -> Array:
    """Approximate signed distance to an axis-aligned ellipse (exact on the axes)."""
    q = np.hypot((u - center[0]) / radii[0], (v - center[1]) / radii[1])
    return (q - 1.0) * min(radii)


def _sd_oriented_ellipse(xs: Array, ys: Array, center: Array, axis: Array, half: tuple[float, float]) -> Array:
    """Approximate signed distance to an ellipse with half-lengths (across, along) ``axis``."""
    dx, dy = xs - center[0], ys - center[1]
    along = dx * axis[0] + dy * axis[1]
    across = dy * axis[0] - dx * axis[1]
    return (np.hypot(across / half[0], along / half[1]) - 1.0) * min(half)


def _sd_taper(u: Array, v: Array, a: tuple[float, float], b: tuple[float, float], radii: tuple[float, float]) -> Array:
    return _sd_tapered(u, v, np.asarray(a), np.asarray(b), radii)


def _sd_convex(u: Array, v: Array, corners: list[tuple[float, float]]) -> Array:
    """Signed distance to a convex polygon (exact inside, a slight overestimate near outer corners)."""
    pts = np.asarray(corners, dtype=float)
    center = pts.mean(axis=0)
    dist = None
    for a, b in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        normal = np.array([b[1] - a[1], a[0] - b[0]]) / np.hypot(*(b - a))
        if normal @ (center - a) > 0:  # make it point outwards
            normal = -normal
        edge = (u - a[0]) * normal[0] + (v - a[1]) * normal[1]
        dist = edge if dist is None else np.maximum(dist, edge)
    assert dist is not None, "a polygon needs corners"
    return dist


def _sd_tapered(xs: Array, ys: Array, a: Array, b: Array, radii: tuple[float, float], bend: float = 1.0) -> Array:
    """Approximate signed distance to a segment a-b thickened from radii[0] at a to radii[1] at b
    (reaching radii[1] after 1/bend of the way when ``bend`` > 1)."""
    ab = b - a
    length2 = float(ab @ ab)
    t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / length2, 0.0, 1.0)
    dist = np.hypot(xs - a[0] - t * ab[0], ys - a[1] - t * ab[1])
    return dist - (radii[0] + (radii[1] - radii[0]) * np.minimum(t * bend, 1.0))


def _ring(u: Array, v: Array, center: tuple[float, float], radii: tuple[float, float], width: float) -> Array:
    """A thin bright elliptical line, like ``u``."""
    return np.exp(-((_sd_ellipse(u, v, center, radii) / width) ** 2))


def _smin(a: Array, b: Array, k: float) -> Array:
    """Polynomial smooth minimum: a union of two shapes with a fillet of size ``k``."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _unit(v: Array) -> Array:
    return v / np.linalg.norm(v)


def _rotate(v: Array, angle: float) -> Array:
    """``v`` (2,) rotated by ``angle`` rad, counter-clockwise on screen (whose y axis points down)."""
    return np.array(_turn(v[0], v[1], angle))


def _turn(x: Array, y: Array, angle: float) -> tuple[Array, Array]:
    """(x, y) rotated about the origin by ``angle`` rad, counter-clockwise on screen."""
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _from_femur_frame(points: Array, fragment: _Fragment) -> Array:
    """Image positions (N, 2) of femur-frame ``points`` (N, 2) of ``fragment``."""
    u, v = _turn(points[:, 0] - fragment.pivot[0], points[:, 1] - fragment.pivot[1], fragment.angle)
    return np.stack([u, v], axis=1) + fragment.pivot + fragment.shift


def _bent_path(rng: np.random.Generator, start: Array, heading: Array, length: float) -> Array:
    """(N, 2) points every 0.5 px along a gently bending path."""
    n = max(int(length / 0.5), 2)
    turn = np.cumsum(rng.normal(0, 0.015, n))
    base = np.arctan2(heading[1], heading[0])
    steps = 0.5 * np.stack([np.cos(base + turn), np.sin(base + turn)], axis=1)
    return start + np.cumsum(steps, axis=0)


def _stamp_line(canvas: Array, points: Array, sigma: float) -> None:
    """Add a blurred line of peak ~1 through ``points`` (N, 2) (x, y) to ``canvas`` in place."""
    h, w = canvas.shape
    idx = np.rint(points).astype(int)
    ok = (idx[:, 0] >= 0) & (idx[:, 0] < w) & (idx[:, 1] >= 0) & (idx[:, 1] < h)
    idx = idx[ok]
    if len(idx) == 0:
        return
    pad = int(3 * sigma) + 2
    x0, y0 = np.maximum(idx.min(0) - pad, 0)
    x1, y1 = np.minimum(idx.max(0) + pad + 1, (w, h))
    local = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    local[idx[:, 1] - y0, idx[:, 0] - x0] = 1.0
    canvas[y0:y1, x0:x1] += ndi.gaussian_filter(local, sigma) * (np.sqrt(2 * np.pi) * sigma)


def _triangle_mask(shape: tuple[int, int], corners: Array, pad: int) -> tuple[tuple[slice, slice], Array]:
    """A crop around the triangle ``corners`` (3, 2) (x, y) and the triangle's bool mask in it."""
    h, w = shape
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + pad + 1, (w, h))
    crop = (slice(int(y0), int(y1)), slice(int(x0), int(x1)))
    xs, ys = _grid(crop)
    signs = []
    for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        signs.append((b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= 0)
    mask = (signs[0] & signs[1] & signs[2]) | (~signs[0] & ~signs[1] & ~signs[2])
    return crop, mask


def _bbox(mask: Array) -> list[int]:
    """[x0, y0, x1, y1], inclusive, of the true pixels of ``mask`` (H, W)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


# --------------------------------------------------------------------------- noise helpers


def _noise_table(rng: np.random.Generator) -> Array:
    """Float32 (128, 128) tileable noise, unit std, features about 2 texels: trabecular streaks and grain."""
    noise = ndi.gaussian_filter(rng.standard_normal((128, 128), dtype=np.float32), 0.7, mode="wrap")
    return noise / (noise.std() + 1e-6)


def _blur_coarse(img: Array) -> Array:
    """A wide blur of ``img`` (H, W), about 12 px at 512 px: a 3-px blur at 1/4 resolution."""
    small = np.pad(img[::4, ::4], ((0, 1), (0, 1)), mode="edge")
    return _upsample(ndi.gaussian_filter(small, 3.0), 4, img.shape)


def _coarse_noise(rng: np.random.Generator, shape: tuple[int, int], factor: int) -> Array:
    """Float32 ``shape`` smooth noise with features about ``factor`` px (a power of two), unit std:
    white noise on a grid ``factor`` px apart, lightly smoothed, bilinearly upsampled."""
    coarse = rng.standard_normal((shape[0] // factor + 1, shape[1] // factor + 1), dtype=np.float32)
    if factor >= 4:
        coarse = ndi.gaussian_filter(coarse, 0.7, mode="reflect")
    noise = _upsample(coarse, factor, shape)
    return noise / (noise.std() + 1e-6)


def _lookup(table: Array, a: Array, b: Array) -> Array:
    """Nearest-texel lookup in a wrap-around (128, 128) ``table`` at rows ``a``, columns ``b``."""
    index = (a.astype(np.int32) & 127) * 128 + (b.astype(np.int32) & 127)
    return np.take(table.ravel(), index)


def _upsample(coarse: Array, factor: int, shape: tuple[int, int]) -> Array:
    """``_upsample2`` applied log2(``factor``) times: a field sampled every ``factor`` px to ``shape``."""
    out = coarse
    while factor > 1:
        out = _upsample2(out, (2 * out.shape[0] - 1, 2 * out.shape[1] - 1))
        factor //= 2
    return out[: shape[0], : shape[1]]
