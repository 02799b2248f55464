"""Explanation evaluation (DeepMiner section 3.2): do the units' names match the truth, and do the units matter?

Greedy matching score (Rus & Lintean 2012; the form of Sharma et al. 2017's nlg-eval ``GreedyMatchingScore``,
which the paper used). For word vectors ``a_1..a_n`` of the candidate and ``b_1..b_m`` of the reference,
with ``cos`` the cosine similarity::

    G(a -> b) = mean_i max_j cos(a_i, b_j)        G(b -> a) = mean_j max_i cos(a_i, b_j)
    score = (G(a -> b) + G(b -> a)) / 2

so it lies in [-1, 1] and is symmetric. Words come from ``mining.wordvectors`` (GloVe 6B 50-d; stop words
dropped, unknown words skipped). A side with no known word matches nothing: the score is 0.0 (nlg-eval
cannot score an empty side at all); a zero vector has cosine 0 with everything.

Explanation vs description (:func:`explanation_scores`). As the paper's notebook (``training/nlp_scores.ipynb``
of ``jimmyyhwu/ddsm-visual-primitives``) does, the candidate is the names of the image's most influential
units joined into one text, scored against the image's description (the report text, or its findings'
concept names): once with the single most influential unit's name (paper: 0.627 averaged over the hold-out
images) and once with the top 8 joined (0.533). An unnamed unit contributes no words; an image whose top
unit is unnamed (or whose description has no known word) gets no score rather than 0, so averages
(:func:`score_summary`) are over the images that could be scored, and say how many those were.

Deletion check (:func:`deletion_check`). The units are layer4 channels, so ablating them needs no new
backbone pass: from one image's layer4 map, the chosen channels are zeroed, the final layer is applied as a
1x1 convolution (``cam.logit_map``), softmaxed per position and turned into the image-level score by the
explanation's rule (``explain.image_scores``: max over (tissue) cells for an abnormal class, min for the
normal class). The drop is ``score(features) - score(features with the units zeroed)`` for the decided
class; the control zeroes ``draws`` random sets of as many units (``causal.random_unit_draws``: uniform over
all units, see ``mining.causal``). Over many images (:func:`deletion_summary`) the mean drops get paired
percentile-bootstrap 95% intervals (``causal.bootstrap_ci``, the same resamples for both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from . import cam
from .causal import BOOTSTRAP_RESAMPLES, CONFIDENCE, RANDOM_DRAWS, SeedLike, bootstrap_ci, random_unit_draws
from .explain import Explanation, image_scores
from .influence import TOP_UNITS_PER_INPUT
from .wordvectors import WordVectors, glove, tokenize

__all__ = [
    "ExplanationScores",
    "ImageDeletion",
    "deletion_check",
    "deletion_summary",
    "explanation_deletion",
    "explanation_scores",
    "greedy_matching",
    "greedy_matching_vectors",
    "score_summary",
]


# ----------------------------------------------------------------------------------- greedy matching


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def greedy_matching_vectors(candidate: np.ndarray, reference: np.ndarray) -> float:
    """The greedy matching score of two sets of word vectors, candidate (n, D) and reference (m, D).

    Computed in float64; 0.0 when n or m is 0 (module docstring).
    """
    if len(candidate) == 0 or len(reference) == 0:
        return 0.0
    similarity = _unit_rows(candidate) @ _unit_rows(reference).T  # (n, m) cosines
    return float((similarity.max(axis=1).mean() + similarity.max(axis=0).mean()) / 2)


def greedy_matching(
    candidate_tokens: Sequence[str], reference_tokens: Sequence[str], vectors: WordVectors | None = None
) -> float:
    """The greedy matching score of two token lists (e.g. from ``wordvectors.tokenize``), in [-1, 1].

    vectors: the embedding (default GloVe 6B 50-d); tokens it does not know are skipped, and a side left
    with none scores 0.0.
    """
    words = vectors if vectors is not None else glove()
    return greedy_matching_vectors(words.lookup(candidate_tokens), words.lookup(reference_tokens))


# --------------------------------------------------------------------------- names vs the description


class ExplanationScores(NamedTuple):
    """Greedy matching of the names with the description: the top unit's name, the top-8 names joined.

    None where a side had no known word (the top unit unnamed, no named unit among the 8, or nothing known
    in the description).
    """

    top1: float | None
    top8: float | None


def _joined_score(names: Sequence[str | None], reference: np.ndarray, words: WordVectors) -> float | None:
    candidate = words.lookup([t for name in names if name for t in tokenize(name)])
    if len(candidate) == 0 or len(reference) == 0:
        return None
    return greedy_matching_vectors(candidate, reference)


def explanation_scores(
    unit_names: Sequence[str | None],
    description: str,
    vectors: WordVectors | None = None,
    top_k: int = TOP_UNITS_PER_INPUT,
) -> ExplanationScores:
    """Scores of one image's explanation against its description (module docstring).

    unit_names: the names (expert labels, e.g. "spiculated margin (mass margin)") of the image's most
    influential units, most influential first, None for an unnamed unit; the first ``top_k`` are used.
    description: the image's report text, or its findings' concept names joined.
    """
    words = vectors if vectors is not None else glove()
    reference = words.lookup(tokenize(description))
    names = list(unit_names)[:top_k]
    return ExplanationScores(_joined_score(names[:1], reference, words), _joined_score(names, reference, words))


def score_summary(scores: Sequence[ExplanationScores]) -> dict[str, Any]:
    """Means over images of each score, skipping None: {"top1", "top1_images", "top8", "top8_images",
    "images"} (a mean is None when no image had that score)."""
    out: dict[str, Any] = {"images": len(scores)}
    for key in ExplanationScores._fields:
        values = [getattr(s, key) for s in scores if getattr(s, key) is not None]
        out[key] = float(np.mean(values)) if values else None
        out[f"{key}_images"] = len(values)
    return out


# ------------------------------------------------------------------------------------ deletion check


@dataclass
class ImageDeletion:
    """One image's deletion check for class ``class_index``.

    baseline: the class's image-level score; units: the zeroed units, sorted; drop: the score's fall with
    them zeroed (negative: a rise); random_units int64
    (draws, k) the control sets and random_drops float64 (draws,) their drops.
    """

    class_index: int
    baseline: float
    units: list[int]
    drop: float
    random_units: np.ndarray
    random_drops: np.ndarray

    @property
    def random_drop(self) -> float:
        """The mean drop over the random sets."""
        return float(self.random_drops.mean())


def _class_scores(
    model: nn.Module, features: torch.Tensor, class_index: int, normal_class: int, cells: np.ndarray | None
) -> np.ndarray:
    """float64 (B,) image-level score of ``class_index`` for each of features (B, U, h, w)."""
    with torch.inference_mode():
        probabilities = torch.softmax(cam.logit_map(model, features).to(torch.float64), dim=1)
    return image_scores(probabilities, normal_class, cells)[:, class_index]


def deletion_check(
    model: nn.Module,
    features: torch.Tensor,
    class_index: int,
    units: Sequence[int],
    *,
    draws: int = RANDOM_DRAWS,
    seed: SeedLike = 0,
    normal_class: int = 0,
    cells: np.ndarray | None = None,
) -> ImageDeletion:
    """The drop of ``class_index``'s image-level score when ``units`` are zeroed, and for ``draws`` random sets.

    features: one image's layer4 map (1, U, h, w) or (U, h, w), e.g. ``cam.fcn_forward(...).features`` or
    ``Explanation.features``; model: supplies the final layer (``fc``) only; units: e.g. the explanation's
    top 8 influential units for the decided class. cells: bool (h, w) tissue cells as for
    ``explain.image_scores`` (``explain.tissue_cells``). The random sets are
    ``causal.random_unit_draws(U, len(units), draws, seed)``: give each image its own seed (e.g.
    ``[seed, image_id]``) so the images do not share one control. The ablations run as one batch of
    ``2 + draws`` maps through the final layer; the softmax is in float64.
    """
    weight, _ = cam.classifier_weights(model)
    if not 0 <= class_index < weight.shape[0]:
        raise ValueError(f"class {class_index} does not exist: the model has {weight.shape[0]} classes")
    maps = features.detach()
    maps = maps[None] if maps.ndim == 3 else maps
    if maps.ndim != 4 or maps.shape[0] != 1:
        raise ValueError(f"features must be one image's (1, U, h, w) map, got {tuple(features.shape)}")
    total = int(maps.shape[1])
    chosen = sorted({int(u) for u in units})
    if chosen and not 0 <= chosen[0] <= chosen[-1] < total:
        raise ValueError(f"units must lie in [0, {total}), got {chosen}")
    random_units = random_unit_draws(total, len(chosen), draws, seed)
    keep = torch.ones((2 + draws, total), dtype=maps.dtype, device=maps.device)
    for row, zeroed in enumerate([chosen, *random_units.tolist()], start=1):
        if zeroed:
            keep[row, zeroed] = 0
    # Multiplying by 1 keeps a value exactly, so row 0 is the unablated map.
    scores = _class_scores(model, maps * keep[:, :, None, None], class_index, normal_class, cells)
    drops = scores[0] - scores[1:]
    return ImageDeletion(
        class_index=class_index,
        baseline=float(scores[0]),
        units=chosen,
        drop=float(drops[0]),
        random_units=random_units,
        random_drops=drops[1:],
    )


def explanation_deletion(
    model: nn.Module,
    explanation: Explanation,
    *,
    draws: int = RANDOM_DRAWS,
    seed: SeedLike = 0,
    normal_class: int = 0,
    cells: np.ndarray | None = None,
) -> ImageDeletion:
    """:func:`deletion_check` of an explanation: its decided class, its influential units, its features.

    ``normal_class`` and ``cells`` should be those the explanation was decided with.
    """
    if explanation.features is None:
        raise ValueError("the explanation carries no layer4 features")
    units = [u.unit for u in explanation.units]
    return deletion_check(
        model,
        explanation.features,
        explanation.decided,
        units,
        draws=draws,
        seed=seed,
        normal_class=normal_class,
        cells=cells,
    )


def deletion_summary(
    results: Sequence[ImageDeletion], resamples: int = BOOTSTRAP_RESAMPLES, seed: SeedLike = 0
) -> dict[str, Any]:
    """Over images: {"images", "top_drop", "top_ci", "random_drop", "random_ci", "ratio", "draws"}.

    top_drop: mean drop with the chosen units zeroed; random_drop: mean over images of each image's mean
    random drop; intervals: 95% percentile bootstrap over images, paired (both resample the same images,
    ``causal.bootstrap_ci`` with ``seed``); ratio: top_drop / random_drop, None unless random_drop > 0.
    No images: every figure None.
    """
    out: dict[str, Any] = {
        "images": len(results),
        "top_drop": None,
        "top_ci": None,
        "random_drop": None,
        "random_ci": None,
        "ratio": None,
        "draws": int(results[0].random_drops.shape[0]) if results else 0,
    }
    if not results:
        return out
    top = np.array([r.drop for r in results])
    rnd = np.array([r.random_drop for r in results])
    out.update(
        top_drop=float(top.mean()),
        top_ci=list(bootstrap_ci(top, resamples, CONFIDENCE, seed)),
        random_drop=float(rnd.mean()),
        random_ci=list(bootstrap_ci(rnd, resamples, CONFIDENCE, seed)),
        ratio=float(top.mean() / rnd.mean()) if rnd.mean() > 0 else None,
    )
    return out
