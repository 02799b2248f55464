"""One image explained (DeepMiner section 2.3): decision, class map, the most influential units and their names.

Image-level decision rule. The FCN (``mining.cam``) gives a probability map p (C, h, w) over the image at
training scale, each position a softmax over classes. A finding anywhere makes the image abnormal, so:

* an abnormal class c (every class but ``normal_class``) scores ``max`` over positions of ``p[c]``: the
  probability of c at the most suspicious place;
* the normal class scores ``min`` over positions of ``p[normal]``: the image is normal only as far as its
  least normal place is (equivalently 1 - the largest probability of *some* finding at one position);
* the decided class is the argmax of these scores (the lower index on a tie).

The scores are the image's per-class probabilities as shown; they need not sum to 1. Positions may be
restricted to the tissue (``tissue``: a cell counts when at least half of it is tissue, the patches' rule),
so the black background outside the breast, which no training patch showed, cannot decide. The AUC of the
rule over a split is :func:`image_level_auc` (one-vs-rest AUROC of each class's score against the image's
true class).

Influence is mining's (``mining.influence``): unit u's maximum activation over the whole layer4 map times
its final-layer weight for the decided class; the 8 most influential units (ties to the lower index) are
reported, each with its activation map upsampled to the image (or a display) size. The text names up to 5 of
them, most influential first, from ``unit_names`` (unit -> (label, source)); the caller resolves the label
(consensus first, else the experts' majority, else the mining suggestion) and gives its source as one of
:data:`SOURCES`; a suggestion is marked "suggested, not confirmed". Only units whose influence is positive
are named, since a unit with no or negative influence did not push the network toward its decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn
from torch.nn import functional as F

from . import cam
from .influence import TOP_UNITS_PER_INPUT, top_units, unit_influence
from .metrics import one_vs_rest_auc
from .patches import PatchParams
from .precision import FP32, Precision

__all__ = [
    "METHODS",
    "NAMED_UNITS",
    "SOURCES",
    "Explanation",
    "InfluentialUnit",
    "decide",
    "explain_image",
    "explanation_text",
    "image_level_auc",
    "image_scores",
    "tissue_cells",
]

NAMED_UNITS = 5
SOURCES = ("consensus", "experts", "suggested")
METHODS = ("cam", "gradcam", "smoothgrad")
SUGGESTED_MARK = "suggested, not confirmed"
MIN_TISSUE = 0.5  # share of a map cell that must be tissue for it to count (as for a patch)

UnitNames = Mapping[int, tuple[str, str]]


@dataclass
class InfluentialUnit:
    """A unit among the most influential toward the decided class.

    activation_map: float32 (H, W), its layer4 map upsampled to the output size; label/source: as given
    in ``unit_names`` (None when the unit has no name).
    """

    unit: int
    influence: float
    max_activation: float
    activation_map: np.ndarray
    label: str | None = None
    source: str | None = None

    @property
    def name(self) -> str:
        return f"{cam.FEATURE_LAYER}:{self.unit}"


@dataclass
class Explanation:
    """The explanation of one image.

    scores: float64 (C,) image-level class probabilities (the rule in the module docstring); decided: argmax.
    probability_maps: float32 (C, h, w) the FCN's per-position probabilities (layer4 resolution).
    class_map: float32 (H, W) the decided class's map by ``method``, upsampled to the output size, raw
    (unnormalised). units: the most influential units, most influential first. input_shape: (h_in, w_in)
    of the rescaled network input. features: float32 (1, U, h, w) layer4's map on the CPU, kept for the
    deletion check (``evaluation.explanation_deletion``).
    """

    classes: tuple[str, ...]
    decided: int
    scores: np.ndarray
    probability_maps: np.ndarray
    method: str
    class_map: np.ndarray
    units: list[InfluentialUnit]
    text: str
    input_shape: tuple[int, int]
    features: torch.Tensor | None = field(default=None, repr=False)


# ------------------------------------------------------------------------------------------- decision


def tissue_cells(tissue: np.ndarray, map_shape: tuple[int, int]) -> np.ndarray:
    """bool (h, w): the map cells at least half tissue. tissue: bool (H, W) over the full image."""
    mask = torch.from_numpy(np.ascontiguousarray(tissue, dtype=np.float32))[None, None]
    share = F.adaptive_avg_pool2d(mask, map_shape)[0, 0]
    return (share >= MIN_TISSUE).numpy()


def image_scores(probabilities: ArrayLike, normal_class: int = 0, cells: np.ndarray | None = None) -> np.ndarray:
    """Image-level scores: float64 (C,) from a probability map (C, h, w), or (B, C) from (B, C, h, w).

    Abnormal classes: max over positions; ``normal_class``: min (module docstring). ``cells`` bool (h, w)
    restricts the positions (ignored when it selects none).
    """
    p = torch.as_tensor(probabilities).detach().to("cpu", torch.float64)
    single = p.ndim == 3
    p = p[None] if single else p
    if p.ndim != 4 or not 0 <= normal_class < p.shape[1]:
        raise ValueError(f"need a (C, h, w) or (B, C, h, w) map and a class in it, got {tuple(p.shape)}")
    flat = p.flatten(2)
    if cells is not None and bool(np.any(cells)):
        flat = flat[:, :, torch.from_numpy(np.asarray(cells, dtype=bool).reshape(-1))]
    scores = flat.amax(dim=2)
    scores[:, normal_class] = flat[:, normal_class].amin(dim=1)
    out = scores.numpy()
    return out[0] if single else out


def decide(scores: ArrayLike) -> int:
    """The decided class: index of the largest image-level score (the lower index on a tie)."""
    return int(np.argmax(np.asarray(scores, dtype=np.float64)))


def image_level_auc(y_true: ArrayLike, scores: ArrayLike, classes: Sequence[str]) -> dict[str, float | None]:
    """One-vs-rest AUROC of the image-level rule: y_true int (N,) each image's true class (its most severe
    finding's, the normal class when it has none), scores float (N, C) from :func:`image_scores`.

    None for a class absent from y_true or the only one present (``metrics.one_vs_rest_auc``).
    """
    return one_vs_rest_auc(y_true, scores, classes)


# ------------------------------------------------------------------------------------------------ text


def _named(units: Sequence[InfluentialUnit], limit: int) -> list[InfluentialUnit]:
    return [u for u in units if u.label and u.influence > 0][:limit]


def explanation_text(
    classes: Sequence[str], decided: int, scores: ArrayLike, units: Sequence[InfluentialUnit], limit: int = NAMED_UNITS
) -> str:
    """The text, e.g. "Malignant (0.91). Most influential: unit layer4:1299 — spiculated margin (mass margin); …".

    Names the first ``limit`` of ``units`` (in their order) that have a label and positive influence; a
    "suggested" label gets "(suggested, not confirmed)". Without any: "… None of the k most influential
    units has an expert name yet."
    """
    name = classes[decided]
    head = f"{name[:1].upper()}{name[1:]} ({float(np.asarray(scores)[decided]):.2f})."
    named = _named(units, limit)
    if not named:
        return f"{head} None of the {len(units)} most influential units has an expert name yet."
    parts = []
    for unit in named:
        mark = f" ({SUGGESTED_MARK})" if unit.source == "suggested" else ""
        parts.append(f"unit {unit.name} — {unit.label}{mark}")
    return f"{head} Most influential: {'; '.join(parts)}."


def _check_names(unit_names: UnitNames) -> None:
    for unit, (_label, source) in unit_names.items():
        if source not in SOURCES:
            raise ValueError(f"unit {unit}: source must be one of {SOURCES}, got {source!r}")


# ---------------------------------------------------------------------------------------- explanation


def _class_map(
    model: nn.Module, x: torch.Tensor, fcn: cam.FCNOutput, method: str, class_index: int, seed: int
) -> torch.Tensor:
    """(h, w) map of the decided class at its method's native resolution."""
    if method == "cam":
        return cam.class_activation_map(model, fcn.features, class_index)[0]
    if method == "gradcam":
        return cam.grad_cam(model, fcn.features, class_index)[0]
    if method == "smoothgrad":
        return cam.smoothgrad(model, x, class_index, seed=seed)[0]
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _full_size_maps(
    unit_maps: torch.Tensor, class_map: torch.Tensor, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Unit maps (k, h, w) and the class map (h', w') upsampled to ``size``: float32 (k, H, W), (H, W).

    A class map at layer4's resolution (CAM, Grad-CAM) joins the unit maps in one upsampling call (each
    plane is resampled alone, so the values are the same as separate calls), one allocation fewer.
    """
    if class_map.shape == unit_maps.shape[1:]:
        maps = cam.upsample_maps(torch.cat([unit_maps, class_map[None].to(unit_maps.dtype)]), size).numpy()
        return maps[:-1], maps[-1]
    return cam.upsample_maps(unit_maps, size).numpy(), cam.upsample_maps(class_map, size).numpy()


def explain_image(
    model: nn.Module,
    pixels: np.ndarray,
    *,
    classes: Sequence[str],
    input_size: int,
    unit_names: UnitNames | None = None,
    params: PatchParams = cam.PAPER_PATCHES,
    method: str = "cam",
    size: tuple[int, int] | None = None,
    normal_class: int = 0,
    tissue: np.ndarray | None = None,
    top_k: int = TOP_UNITS_PER_INPUT,
    seed: int = 0,
    pooling: str = "local",
    precision: Precision = FP32,
) -> Explanation:
    """Explain one image: pixels (H, W) uint8/uint16, run at training scale (``cam.image_input``).

    pooling: how the probability maps become the image's scores. "local" (a network trained on patches,
    DeepMiner's): the rule of the module docstring. "global" (a network trained on whole images, such as
    the hip-fracture classifier): the classifier's own output, the softmax of the logit map's mean over
    positions (= the final layer on globally average-pooled features); ``tissue`` is then unused.

    classes: the model's C class names; input_size: the training input size (patch_params["input_size"]).
    unit_names: unit -> (label, source in SOURCES). method: the class map, one of METHODS (SmoothGrad
    with ``seed``). size: (H_out, W_out) of the class and unit maps, default the image's (H, W).
    tissue: optional bool (H, W) restricting the decision to tissue cells. precision: the FCN backbone's
    autocast (``mining.precision``); the maps and scores are float32. One FCN forward pass (plus
    SmoothGrad's backward passes when chosen).
    """
    names = dict(unit_names or {})
    _check_names(names)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = cam.image_input(pixels, input_size, params)
    fcn = cam.fcn_forward(model, x, precision)
    if fcn.logits.shape[1] != len(classes):
        raise ValueError(f"{len(classes)} class names for a model with {fcn.logits.shape[1]} classes")
    map_shape = (int(fcn.features.shape[2]), int(fcn.features.shape[3]))
    cells = tissue_cells(tissue, map_shape) if tissue is not None else None
    if pooling == "global":
        scores = torch.softmax(fcn.logits[0].to(torch.float64).mean(dim=(1, 2)), dim=0).cpu().numpy()
    elif pooling == "local":
        scores = image_scores(fcn.probabilities[0], normal_class, cells)
    else:
        raise ValueError(f"pooling must be 'local' or 'global', got {pooling!r}")
    decided = decide(scores)
    out_size = size or (int(pixels.shape[0]), int(pixels.shape[1]))

    weight, _ = cam.classifier_weights(model)
    maxima = fcn.features[0].amax(dim=(1, 2)).cpu()
    influence = unit_influence(maxima[None], weight.detach().cpu())[0, decided]
    top = top_units(influence, top_k).tolist()
    unit_maps, class_map = _full_size_maps(
        fcn.features[0, top].cpu(), _class_map(model, x, fcn, method, decided, seed).cpu(), out_size
    )
    units = [
        InfluentialUnit(
            unit=u,
            influence=float(influence[u]),
            max_activation=float(maxima[u]),
            activation_map=unit_maps[i],
            label=names[u][0] if u in names else None,
            source=names[u][1] if u in names else None,
        )
        for i, u in enumerate(top)
    ]
    return Explanation(
        classes=tuple(classes),
        decided=decided,
        scores=scores,
        probability_maps=fcn.probabilities[0].cpu().numpy().astype(np.float32),
        method=method,
        class_map=class_map,
        units=units,
        text=explanation_text(classes, decided, scores, units),
        input_shape=(int(x.shape[2]), int(x.shape[3])),
        features=fcn.features.cpu(),
    )
