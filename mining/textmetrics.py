"""Text metrics for generated sentences: corpus BLEU-1..4, CIDEr-D and the greedy matching score.

All metrics take *pre-tokenised* text: a hypothesis is a list of tokens, its references a list of token
lists. :func:`tokenize_caption` is the one tokenizer the captioner is trained on and the metrics are scored
on: lowercase, words are runs of letters and digits (an inner hyphen or apostrophe kept), punctuation
dropped, as the COCO caption evaluation's tokenizer leaves it. "There is a moderately displaced, comminuted
fracture." -> ["there", "is", "a", "moderately", "displaced", "comminuted", "fracture"].

BLEU (Papineni et al. 2002), corpus level, as ``nltk.translate.bleu_score.corpus_bleu`` and ``sacrebleu``
compute it without smoothing. For each order n the clipped n-gram matches (an n-gram counts at most as often
as in the reference where it is most frequent) and the hypothesis n-grams are summed over the corpus,
``p_n = matches_n / total_n``. ``c`` is the total hypothesis length, ``r`` the sum over hypotheses of the
reference length closest to each (a tie goes to the shorter); the brevity penalty is 1 if ``c > r``, else
``exp(1 - r / c)`` (0 when ``c = 0``). BLEU-N = ``BP * exp(sum_{n<=N} log(p_n) / N)`` (uniform weights,
cumulative: BLEU-4 uses orders 1-4, as the captioning papers report it), and 0 when any ``p_n`` is 0.
Scores are fractions in [0, 1]; the papers print them x100.

CIDEr-D (Vedantam et al. 2015), exactly as the COCO caption evaluation's scorer (``pycocoevalcap`` 1.2's
``cider.cider_scorer.CiderScorer``, which is the CIDEr-D variant). n-grams of orders 1..4 per sentence;
document frequency ``df(g)`` = the number of images whose references (any of them) contain g, over the
corpus being scored; each sentence becomes, per order, the vector ``tf(g) * (log(N_images) - log(max(1,
df(g))))``. Against each reference, order n scores ``sum_g min(v_h(g), v_r(g)) * v_r(g) / (|v_h| |v_r|)``
(the clipping; 0 when either norm is 0) times the Gaussian length penalty ``exp(-delta^2 / (2 sigma^2))``,
sigma = 6. ``delta`` is the difference of the two sentences' *bigram* counts, which is the difference of
their lengths unless one has fewer than two words (the reference code counts lengths that way; kept for
identical scores). An image scores 10 x the mean over orders of the mean over its references; the corpus
score is the mean over images.

Greedy matching (``mining.evaluation.greedy_matching``, re-exported): mean best cosine similarity of word
vectors in both directions; it tokenises with ``mining.wordvectors.tokenize`` (stop words dropped), not this
module's tokenizer, because function words would match each other at cosine 1.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .evaluation import greedy_matching

__all__ = [
    "CIDER_N",
    "CIDER_SIGMA",
    "bleu_scores",
    "cider_d",
    "corpus_bleu",
    "greedy_matching",
    "tokenize_caption",
]

CIDER_N = 4
CIDER_SIGMA = 6.0
_CIDER_SCALE = 10.0
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")

Tokens = Sequence[str]


def tokenize_caption(text: str | None) -> list[str]:
    """Lowercased words of ``text``, punctuation dropped (module docstring). None or "" gives []."""
    return _WORD.findall(text.lower()) if text else []


def _ngrams(tokens: Tokens, n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check_corpus(hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    for tokens in (*hypotheses, *(ref for refs in references for ref in refs)):
        if isinstance(tokens, str):
            raise TypeError("sentences must be token lists (see tokenize_caption), not strings")


def bleu_scores(hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]], max_n: int = 4) -> list[float]:
    """Corpus BLEU-1 .. BLEU-``max_n`` (cumulative, uniform weights) in [0, 1] (module docstring).

    hypotheses: one token list per image; references: per image, one or more token lists.
    """
    _check_corpus(hypotheses, references)
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_length = ref_length = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        hyp_length += len(hyp)
        ref_length += min((len(ref) for ref in refs), key=lambda length: (abs(length - len(hyp)), length))
        for n in range(1, max_n + 1):
            counts = _ngrams(hyp, n)
            most: Counter[tuple[str, ...]] = Counter()
            for ref in refs:
                most |= _ngrams(ref, n)  # elementwise max: the clip
            matches[n - 1] += sum(min(count, most[gram]) for gram, count in counts.items())
            totals[n - 1] += max(0, len(hyp) - n + 1)
    if hyp_length == 0:
        return [0.0] * max_n
    penalty = 1.0 if hyp_length > ref_length else math.exp(1.0 - ref_length / hyp_length)
    scores, log_sum = [], 0.0
    for n in range(max_n):
        if matches[n] == 0:
            scores.extend([0.0] * (max_n - n))  # a zero precision zeroes every longer BLEU too
            break
        log_sum += math.log(matches[n] / totals[n])
        scores.append(penalty * math.exp(log_sum / (n + 1)))
    return scores


def corpus_bleu(hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]], n: int = 4) -> float:
    """Corpus BLEU-``n`` in [0, 1]; see :func:`bleu_scores`."""
    return bleu_scores(hypotheses, references, n)[n - 1]


def _tfidf(
    tokens: Tokens, log_images: float, df: Counter[tuple[str, ...]], n: int
) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
    """Per order: the tf-idf vector, its norm; and the sentence's bigram count (its CIDEr "length")."""
    vectors: list[dict[tuple[str, ...], float]] = []
    for order in range(1, n + 1):
        counts = _ngrams(tokens, order)
        vectors.append({g: tf * (log_images - math.log(max(1.0, df[g]))) for g, tf in counts.items()})
    norms = [math.sqrt(sum(v * v for v in vector.values())) for vector in vectors]
    return vectors, norms, max(0, len(tokens) - 1)


def cider_d(
    hypotheses: Sequence[Tokens],
    references: Sequence[Sequence[Tokens]],
    n: int = CIDER_N,
    sigma: float = CIDER_SIGMA,
) -> tuple[float, np.ndarray]:
    """CIDEr-D of a corpus: (the mean over images, float64 (N,) per image) (module docstring).

    Document frequencies come from ``references`` itself, so the score of one image depends on the corpus.
    """
    _check_corpus(hypotheses, references)
    df: Counter[tuple[str, ...]] = Counter()
    for refs in references:
        df.update({g for ref in refs for order in range(1, n + 1) for g in _ngrams(ref, order)})
    log_images = math.log(len(references)) if references else 0.0
    scores = np.zeros(len(hypotheses))
    for index, (hyp, refs) in enumerate(zip(hypotheses, references, strict=True)):
        vec_h, norm_h, len_h = _tfidf(hyp, log_images, df, n)
        total = np.zeros(n)
        for ref in refs:
            vec_r, norm_r, len_r = _tfidf(ref, log_images, df, n)
            penalty = math.exp(-((len_h - len_r) ** 2) / (2 * sigma**2))
            for order in range(n):
                value = sum(
                    min(v, vec_r[order].get(g, 0.0)) * vec_r[order].get(g, 0.0) for g, v in vec_h[order].items()
                )
                if norm_h[order] != 0 and norm_r[order] != 0:
                    value /= norm_h[order] * norm_r[order]
                total[order] += value * penalty
        scores[index] = total.mean() / len(refs) * _CIDER_SCALE  # the reference code's order of operations
    return (float(scores.mean()) if len(scores) else 0.0), scores
