"""mining.evaluation: the greedy matching score, names vs description, and the image-level deletion check.

Greedy matching on 2-d vectors (words doubled, xx for x, since tokenize drops one-letter words): x = (1, 0),
y = (0, 1), v = (-1, 0) against z = (1, 0), w = (3, 4) (cosine with x 0.6, with y 0.8). Candidate (x, y, v)
-> reference: best cosines 1, 0.8, -0.6, mean 0.4; reference -> candidate: z 1, w 0.8, mean 0.9; score 0.65.

Deletion check on a network that is only its final layer (the check never runs the backbone): 4 units, two
classes (normal, malignant), W = [[0, 0, 1, 0], [1, 1, 0, 0]], no bias. Cell A holds (ln 2, ln 2, 0, 0), so
its logits are (0, ln 4) and p = (1/5, 4/5); cell B holds (0, 0, ln 3, 0): logits (ln 3, 0), p = (3/4, 1/4).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from mining.cam import fcn_forward, image_input
from mining.causal import bootstrap_ci, random_unit_draws, units_zeroed
from mining.evaluation import (
    ExplanationScores,
    ImageDeletion,
    deletion_check,
    deletion_summary,
    explanation_deletion,
    explanation_scores,
    greedy_matching,
    greedy_matching_vectors,
    score_summary,
)
from mining.explain import explain_image, image_scores
from mining.networks import build_network
from mining.wordvectors import WordVectors, glove, tokenize

WORDS = WordVectors(
    ["xx", "yy", "vv", "zz", "ww"], np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
)
LN2, LN3 = math.log(2), math.log(3)


# ----------------------------------------------------------------------------------- greedy matching


def brute_force(candidate: np.ndarray, reference: np.ndarray) -> float:
    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return sum(float(p) * float(q) for p, q in zip(a, b, strict=True)) / (
            math.sqrt(sum(float(p) ** 2 for p in a)) * math.sqrt(sum(float(q) ** 2 for q in b))
        )

    forward = sum(max(cos(a, b) for b in reference) for a in candidate) / len(candidate)
    backward = sum(max(cos(a, b) for a in candidate) for b in reference) / len(reference)
    return (forward + backward) / 2


def test_greedy_matching_hand_computed() -> None:
    assert greedy_matching(["xx", "yy", "vv"], ["zz", "ww"], WORDS) == pytest.approx(0.65, abs=1e-12)
    assert greedy_matching(["zz", "ww"], ["xx", "yy", "vv"], WORDS) == pytest.approx(0.65, abs=1e-12)  # symmetric
    assert greedy_matching(["xx", "unknown", "yy", "vv"], ["zz", "ww", "qq"], WORDS) == pytest.approx(0.65, abs=1e-12)
    assert greedy_matching(["xx"], ["zz"], WORDS) == pytest.approx(1.0)  # the same direction
    assert greedy_matching(["xx"], ["vv"], WORDS) == pytest.approx(-1.0)


def test_greedy_matching_of_an_empty_side_is_zero() -> None:
    assert greedy_matching([], ["zz"], WORDS) == 0.0
    assert greedy_matching(["xx"], ["unknown"], WORDS) == 0.0
    assert greedy_matching_vectors(np.zeros((0, 2)), np.zeros((0, 2))) == 0.0
    assert greedy_matching_vectors(np.zeros((1, 2)), np.ones((1, 2))) == 0.0  # a zero vector matches nothing


def test_greedy_matching_equals_a_loop_over_word_pairs() -> None:
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (1, 7), (5, 3), (12, 12)]:
        a, b = rng.normal(size=(n, 50)), rng.normal(size=(m, 50))
        assert greedy_matching_vectors(a, b) == pytest.approx(brute_force(a, b), abs=1e-12)


def test_greedy_matching_with_glove_ranks_a_related_text_first() -> None:
    report = tokenize("Irregular mass with spiculated margins in the upper outer quadrant")
    related = greedy_matching(tokenize("spiculated margin (mass margin)"), report)
    unrelated = greedy_matching(tokenize("coarse vascular calcifications"), report)
    assert greedy_matching(report, report) == pytest.approx(1.0)
    assert 0 < unrelated < related < 1


# --------------------------------------------------------------------------- names vs the description


def test_explanation_scores_join_the_top_names() -> None:
    scores = explanation_scores(["xx yy", "vv", None, "unknown"], "zz, ww", WORDS)
    assert scores.top1 == pytest.approx(greedy_matching(["xx", "yy"], ["zz", "ww"], WORDS))
    assert scores.top8 == pytest.approx(0.65, abs=1e-12)  # x y v joined: the hand-computed case


def test_explanation_scores_use_the_first_eight_units_only() -> None:
    names: list[str | None] = ["xx"] * 8 + ["vv"]
    assert explanation_scores(names, "zz", WORDS) == ExplanationScores(1.0, 1.0)
    # xx (8 times) and vv against zz: (7/9 + 1) / 2.
    assert explanation_scores(names, "zz", WORDS, top_k=9).top8 == pytest.approx(8 / 9)


def test_explanation_scores_are_none_without_words_to_match() -> None:
    assert explanation_scores([None, "xx"], "zz", WORDS) == ExplanationScores(None, 1.0)
    assert explanation_scores([None, "unknown"], "zz", WORDS) == ExplanationScores(None, None)
    assert explanation_scores(["xx"], "nothing known here", WORDS) == ExplanationScores(None, None)
    assert explanation_scores([], "zz", WORDS) == ExplanationScores(None, None)


def test_explanation_scores_default_to_glove() -> None:
    scores = explanation_scores(["spiculated margin (mass margin)", None], "irregular spiculated mass")
    expected = greedy_matching(
        tokenize("spiculated margin mass margin"), tokenize("irregular spiculated mass"), glove()
    )
    assert scores.top1 == pytest.approx(expected) and scores.top8 == pytest.approx(expected)


def test_score_summary_skips_unscored_images() -> None:
    summary = score_summary([ExplanationScores(0.5, 0.25), ExplanationScores(None, 0.75), ExplanationScores(1.0, None)])
    assert summary == {"images": 3, "top1": 0.75, "top1_images": 2, "top8": 0.5, "top8_images": 2}
    assert score_summary([]) == {"images": 0, "top1": None, "top1_images": 0, "top8": None, "top8_images": 0}


# ------------------------------------------------------------------------------------ deletion check


class FinalLayerOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))


def two_cells() -> torch.Tensor:
    """(1, 4, 1, 2): cell A at (0, 0), cell B at (0, 1)."""
    return torch.tensor([[LN2, 0.0], [LN2, 0.0], [0.0, LN3], [0.0, 0.0]], dtype=torch.float32)[None, :, None, :]


def malignant_drop(zeroed: set[int]) -> float:
    """Malignant's score is cell A's (4/5 > 1/4): p = L / (1 + L) with L = 2 for each of units 0, 1 kept."""
    odds = 2.0 ** len({0, 1} - zeroed)
    return 0.8 - odds / (1 + odds)


def test_deletion_drops_are_exact() -> None:
    result = deletion_check(FinalLayerOnly(), two_cells(), 1, [1, 0], draws=6, seed=3)
    assert result.baseline == pytest.approx(0.8, abs=1e-7)
    assert result.units == [0, 1] and result.drop == pytest.approx(0.3, abs=1e-7)  # 4/5 -> 1/2
    assert np.array_equal(result.random_units, random_unit_draws(4, 2, 6, 3))
    expected = [malignant_drop(set(row)) for row in result.random_units.tolist()]
    assert result.random_drops.tolist() == pytest.approx(expected, abs=1e-7)
    assert result.random_drop == pytest.approx(np.mean(expected), abs=1e-7)
    # Zeroing both units that push toward malignant drops it at least as much as any pair of units.
    pairs = [malignant_drop(set(p)) for p in itertools.combinations(range(4), 2)]
    assert result.drop == pytest.approx(max(pairs)) and result.drop >= result.random_drops.max() - 1e-12
    assert result.drop > result.random_drop


def test_deletion_of_the_normal_class_follows_its_min_rule_and_the_tissue_cells() -> None:
    # Normal scores its least normal cell: A (1/5). Zeroing unit 0 lifts A to 1/3 (a rise: negative drop);
    # zeroing unit 2 moves only B (3/4 -> 1/2), which is not the minimum.
    net, features = FinalLayerOnly(), two_cells()
    assert deletion_check(net, features, 0, [0], draws=1).drop == pytest.approx(1 / 5 - 1 / 3, abs=1e-7)
    assert deletion_check(net, features, 0, [2], draws=1).drop == pytest.approx(0.0, abs=1e-7)
    only_b = np.array([[False, True]])
    on_b = deletion_check(net, features[0], 0, [2], draws=1, cells=only_b)  # (U, h, w) accepted too
    assert on_b.baseline == pytest.approx(0.75, abs=1e-7) and on_b.drop == pytest.approx(0.25, abs=1e-7)


def test_deletion_check_rejects_bad_arguments() -> None:
    net, features = FinalLayerOnly(), two_cells()
    with pytest.raises(ValueError, match="units must lie"):
        deletion_check(net, features, 1, [4])
    with pytest.raises(ValueError, match="class 2 does not exist"):
        deletion_check(net, features, 2, [0])
    with pytest.raises(ValueError, match="one image's"):
        deletion_check(net, features.expand(2, -1, -1, -1), 1, [0])


def test_deletion_from_features_equals_a_forward_with_the_units_zeroed() -> None:
    # The check reuses layer4's map; ablating inside a real forward pass (causal.units_zeroed) agrees.
    torch.manual_seed(0)
    model = build_network("resnet18", 3).model.eval()
    pixels = np.random.default_rng(1).integers(0, 4096, (200, 256), dtype=np.uint16)
    explanation = explain_image(model, pixels, classes=("normal", "benign", "malignant"), input_size=64)
    assert explanation.features is not None and explanation.features.shape == (1, 512, 7, 8)
    result = explanation_deletion(model, explanation, draws=2, seed=[0, 7])
    x = image_input(pixels, 64)
    for units, drop in [
        (result.units, result.drop),
        *zip(result.random_units.tolist(), result.random_drops, strict=True),
    ]:
        with units_zeroed(model, units):
            ablated = fcn_forward(model, x).probabilities.to(torch.float64)
        expected = explanation.scores[explanation.decided] - image_scores(ablated[0])[explanation.decided]
        assert drop == pytest.approx(expected, abs=1e-5)
    assert result.baseline == pytest.approx(explanation.scores[explanation.decided], abs=1e-6)


def image(drop: float, random_drops: list[float]) -> ImageDeletion:
    return ImageDeletion(1, 0.9, [0], drop, np.zeros((len(random_drops), 1), np.int64), np.array(random_drops))


def test_deletion_summary_over_images() -> None:
    results = [image(0.5, [0.1, 0.3]), image(0.3, [0.0, 0.0]), image(0.4, [0.1, 0.1])]
    summary = deletion_summary(results, resamples=200, seed=5)
    assert summary["images"] == 3 and summary["draws"] == 2
    assert summary["top_drop"] == pytest.approx(0.4) and summary["random_drop"] == pytest.approx(0.1)
    assert summary["ratio"] == pytest.approx(4.0)
    assert summary["top_ci"] == list(bootstrap_ci([0.5, 0.3, 0.4], 200, seed=5))
    assert summary["random_ci"] == list(bootstrap_ci([0.2, 0.0, 0.1], 200, seed=5))
    assert deletion_summary([image(0.2, [0.0])])["ratio"] is None  # random drop 0: no ratio
    empty = deletion_summary([])
    assert empty["images"] == 0 and empty["top_drop"] is None and empty["ratio"] is None
