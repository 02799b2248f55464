"""mining.wordvectors: the tokenizer, lookups that skip unknown words, and the installed GloVe 6B 50-d files."""

from __future__ import annotations

import numpy as np
import pytest

from mining.wordvectors import GLOVE_DIM, STOP_WORDS, WordVectors, glove, tokenize


def test_tokenize_lowercases_splits_on_non_letters_and_drops_stop_words() -> None:
    text = "Irregular MASS with spiculated margins; BI-RADS 4 (no skin thickening) in the UOQ."
    assert tokenize(text) == ["irregular", "mass", "spiculated", "margins", "bi", "rads", "skin", "thickening", "uoq"]
    assert tokenize("spiculated margin (mass margin)") == ["spiculated", "margin", "mass", "margin"]  # repeats kept
    assert tokenize(None) == [] and tokenize("") == [] and tokenize("of the, a") == []
    assert {"mass", "margin", "oval", "calcifications", "density"}.isdisjoint(STOP_WORDS)


def test_lookup_skips_unknown_words_and_keeps_order() -> None:
    words = WordVectors(["a", "b", "a"], np.array([[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]))
    assert len(words) == 2 and "b" in words and "c" not in words and words.dim == 2
    found = words.lookup(["b", "c", "a", "b"])
    assert found.dtype == np.float32 and found.tolist() == [[0, 2], [1, 0], [0, 2]]  # the first "a" wins
    assert words.lookup(["c"]).shape == (0, 2)
    with pytest.raises(ValueError, match="words for a matrix"):
        WordVectors(["a"], np.zeros((2, 2)))


def test_glove_is_read_from_the_installed_package_once() -> None:
    vectors = glove()
    assert glove() is vectors  # one load per process
    assert len(vectors) == 400_000 and vectors.dim == GLOVE_DIM
    assert isinstance(vectors.matrix, np.memmap) and vectors.matrix.dtype == np.float32
    assert all(w in vectors for w in ("mass", "margin", "calcifications", "circumscribed", "oval", "skin"))
    the = vectors.lookup(["the"])[0]
    assert np.array_equal(the, vectors.matrix[vectors.index["the"]]) and vectors.index["the"] == 0
