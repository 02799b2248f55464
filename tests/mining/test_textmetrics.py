"""mining.textmetrics: BLEU against nltk and sacrebleu, CIDEr-D against pycocoevalcap, on the same tokens.

Corpora are random draws from the template grammar's sentences (so n-grams are shared, as between a
generator's output and its references) with words dropped or swapped, one to three references each, plus
hand-made edge cases (a hypothesis shorter than every reference, one word long, empty).
"""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu
from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
from pycocoevalcap.cider.cider_scorer import CiderScorer

from mining import evaluation
from mining.sentences import all_descriptor_combinations, fracture_sentence
from mining.textmetrics import bleu_scores, cider_d, corpus_bleu, greedy_matching, tokenize_caption

SENTENCES = [tokenize_caption(fracture_sentence(d)) for d in all_descriptor_combinations(partial=True)]


def _perturbed(tokens: list[str], rng: random.Random) -> list[str]:
    out = list(tokens)
    for _ in range(rng.randint(0, 3)):
        if len(out) > 1 and rng.random() < 0.5:
            del out[rng.randrange(len(out))]
        else:
            out[rng.randrange(len(out))] = rng.choice(rng.choice(SENTENCES))
    return out


def random_corpus(seed: int, size: int = 40) -> tuple[list[list[str]], list[list[list[str]]]]:
    rng = random.Random(seed)
    hypotheses, references = [], []
    for _ in range(size):
        truth = rng.choice(SENTENCES)
        hypotheses.append(_perturbed(truth, rng))
        references.append([truth] + [_perturbed(truth, rng) for _ in range(rng.randint(0, 2))])
    return hypotheses, references


def test_tokenize_caption() -> None:
    text = "There is a moderately displaced, comminuted fracture of the sub-capital neck of femur. It's 2 cm."
    assert tokenize_caption(text) == [
        "there", "is", "a", "moderately", "displaced", "comminuted", "fracture", "of", "the",
        "sub-capital", "neck", "of", "femur", "it's", "2", "cm",
    ]  # fmt: skip
    assert tokenize_caption("") == [] and tokenize_caption(None) == []


def test_bleu_by_hand() -> None:
    # Hypothesis 5 words, references 6 and 4: the closest is 4 (|5-4| = 1 < |5-6|), so r = 4 < c = 5: BP = 1.
    hyp = ["the", "cat", "sat", "on", "mat"]
    refs = [["the", "cat", "sat", "on", "the", "mat"], ["a", "cat", "on", "mat"]]
    # unigrams 5/5; bigrams the-cat, cat-sat, sat-on match, on-mat matches ref 2: 4/4; trigrams 2/3; 4-grams 1/2.
    expected = [1.0, 1.0, (2 / 3) ** (1 / 3), ((2 / 3) * (1 / 2)) ** (1 / 4)]
    assert bleu_scores([hyp], [refs]) == pytest.approx(expected, rel=1e-12)
    # Shorter than its reference: BP = exp(1 - 6/3); a repeated word is clipped to its count in the reference.
    short = ["the", "the", "the"]
    assert corpus_bleu([short], [[refs[0]]], n=1) == pytest.approx(math.exp(1 - 6 / 3) * 2 / 3, rel=1e-12)
    assert bleu_scores([["dog"]], [[refs[0]]]) == [0.0, 0.0, 0.0, 0.0]
    assert bleu_scores([[]], [[refs[0]]]) == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", range(5))
def test_bleu_equals_nltk(seed: int) -> None:
    hypotheses, references = random_corpus(seed)
    ours = bleu_scores(hypotheses, references)
    for n in range(1, 5):
        theirs = nltk_corpus_bleu(references, hypotheses, weights=(1 / n,) * n)
        assert ours[n - 1] == pytest.approx(theirs, rel=1e-12), n


@pytest.mark.parametrize("seed", range(5))
def test_bleu_equals_sacrebleu(seed: int) -> None:
    hypotheses, references = random_corpus(seed)
    # sacrebleu takes reference streams: give every hypothesis three references (the corpus's, repeated).
    streams = [[" ".join(refs[i % len(refs)]) for refs in references] for i in range(3)]
    triple = [[refs[i % len(refs)] for i in range(3)] for refs in references]
    ours = bleu_scores(hypotheses, triple)
    for n in range(1, 5):
        metric = sacrebleu.BLEU(tokenize="none", smooth_method="none", max_ngram_order=n, effective_order=False)
        theirs = metric.corpus_score([" ".join(h) for h in hypotheses], streams).score / 100
        assert ours[n - 1] == pytest.approx(theirs, rel=1e-12), n


def _pycocoevalcap_cider_d(hypotheses: list[list[str]], references: list[list[list[str]]]) -> tuple[float, list]:
    scorer = CiderScorer(n=4, sigma=6.0)
    for hyp, refs in zip(hypotheses, references, strict=True):
        scorer += (" ".join(hyp), [" ".join(ref) for ref in refs])
    score, scores = scorer.compute_score()
    return float(score), list(scores)


@pytest.mark.parametrize("seed", range(5))
def test_cider_d_equals_pycocoevalcap(seed: int) -> None:
    hypotheses, references = random_corpus(seed)
    # Edge cases: a one-word and an empty hypothesis (their "length" is the bigram count), an exact match.
    hypotheses += [["fracture"], [], list(references[0][0])]
    references += [references[1], references[2], references[0]]
    score, scores = cider_d(hypotheses, references)
    theirs, their_scores = _pycocoevalcap_cider_d(hypotheses, references)
    assert score == pytest.approx(theirs, rel=1e-12)
    assert list(scores) == pytest.approx(their_scores, rel=1e-12, abs=1e-15)


def test_cider_d_rewards_consensus() -> None:
    hypotheses, references = random_corpus(7)
    exact = [refs[0] for refs in references]
    assert cider_d(exact, references)[0] > cider_d(hypotheses, references)[0] > 0


def test_metrics_reject_strings_and_missing_references() -> None:
    with pytest.raises(TypeError):
        bleu_scores(["there is"], [[["there", "is"]]])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        cider_d([["there"]], [[]])
    with pytest.raises(ValueError):
        bleu_scores([["there"]], [])


def test_greedy_matching_is_the_explanations_score() -> None:
    assert greedy_matching is evaluation.greedy_matching
