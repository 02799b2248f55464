"""Reading a sentence back into fracture descriptors, and judging a generated sentence field by field.

:func:`parse_sentence` inverts ``mining.sentences.fracture_sentence``: it takes a sentence (text, or tokens
from ``textmetrics.tokenize_caption``, so case and punctuation do not matter) and returns the descriptors it
states, or None when it is not a sentence of the grammar. Strictly (the default) the tokens must be exactly
one the grammar renders: "there is", the article the next word calls for, the adjectives in the order
displacement, comminuted, impacted, "fracture of the", a location phrase (an unknown location reads
"proximal femur"), and optionally "with an avulsed fragment"; or the no-fracture sentence. With
``strict=False`` the fields are read by their words wherever they stand (what a reader would take from a
sentence the grammar could not have produced): a fracture unless the sentence starts with "no"; the
first displacement phrase and the first location word found; comminuted, impacted and avulsed fragment
when their words are present.

Content scores (the hip-fracture paper, section 3.2, where a radiologist judged whether each sentence had
the "appropriate location" and "appropriate character"): a generated sentence is parsed back and each field
compared with the truth. ``location`` is correct when the fracture status and the location both match;
``displacement``, ``comminution``, ``impaction`` and ``avulsion`` likewise for their field; ``character`` is
all four of those together. A sentence that does not parse gets every field wrong. The paper judged
fracture cases only: :func:`content_accuracy` skips the truths without a fracture unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from .sentences import (
    DISPLACEMENTS,
    LOCATIONS,
    NECK_LOCATIONS,
    NO_FRACTURE_SENTENCE,
    FractureDescriptors,
    fracture_sentence,
)
from .textmetrics import tokenize_caption

__all__ = [
    "CHARACTER_FIELDS",
    "CONTENT_FIELDS",
    "character_correct",
    "content_accuracy",
    "field_correctness",
    "location_correct",
    "parse_sentence",
    "sentence_from_tokens",
    "sentence_words",
]

CHARACTER_FIELDS = ("displacement", "comminution", "impaction", "avulsion")
CONTENT_FIELDS = ("location", *CHARACTER_FIELDS, "character")
_ATTRIBUTE = {"location": "location", "displacement": "displacement", "comminution": "comminuted",
              "impaction": "impacted", "avulsion": "avulsed_fragment"}  # fmt: skip

_NO_FRACTURE = tuple(tokenize_caption(NO_FRACTURE_SENTENCE))
_DISPLACEMENT_TOKENS = {tuple(d.split()): d for d in DISPLACEMENTS}
_AVULSION = ("with", "an", "avulsed", "fragment")
_UNKNOWN_LOCATION = ("proximal", "femur")


def _location_tokens(location: str) -> tuple[str, ...]:
    if location in NECK_LOCATIONS:
        return (location, "neck", "of", "femur")
    return (location, "region", "of", "the", "femur")


_LOCATION_TOKENS = {_location_tokens(location): location for location in LOCATIONS}

Sentence = str | Sequence[str]


def _tokens(sentence: Sentence) -> tuple[str, ...]:
    return tuple(tokenize_caption(sentence)) if isinstance(sentence, str) else tuple(sentence)


def parse_sentence(sentence: Sentence, *, strict: bool = True) -> FractureDescriptors | None:
    """The descriptors ``sentence`` states (text or tokens), or None when it cannot be read (module doc).

    Strict parsing accepts exactly the sentences ``fracture_sentence`` renders, partial forms included, so
    ``parse_sentence(fracture_sentence(d)) == d`` for every valid or partial ``d``.
    """
    tokens = _tokens(sentence)
    if tokens == _NO_FRACTURE:
        return FractureDescriptors(fracture=False)
    return _parse_fracture(tokens) if strict else _read_fields(tokens)


def _parse_fracture(tokens: tuple[str, ...]) -> FractureDescriptors | None:
    if tokens[:2] != ("there", "is") or len(tokens) < 4:
        return None
    article, rest = tokens[2], tokens[3:]
    if article != ("an" if rest[0][0] in "aeiou" else "a"):
        return None
    displacement = next((d for words, d in _DISPLACEMENT_TOKENS.items() if rest[: len(words)] == words), None)
    if displacement:
        rest = rest[len(displacement.split()) :]
    flags = []
    for word in ("comminuted", "impacted"):
        flags.append(rest[:1] == (word,))
        rest = rest[1:] if flags[-1] else rest
    if rest[:3] != ("fracture", "of", "the"):
        return None
    rest = rest[3:]
    avulsed = rest[-len(_AVULSION) :] == _AVULSION
    place = rest[: -len(_AVULSION)] if avulsed else rest
    if place != _UNKNOWN_LOCATION and place not in _LOCATION_TOKENS:
        return None
    location = _LOCATION_TOKENS.get(place)
    return FractureDescriptors(True, displacement, flags[0], flags[1], location, avulsed)


def _read_fields(tokens: tuple[str, ...]) -> FractureDescriptors | None:
    if not tokens:
        return None
    if tokens[0] == "no":  # "no fracture ...", however it goes on
        return FractureDescriptors(fracture=False)
    displacements = [
        (i, d)
        for i in range(len(tokens))
        for words, d in _DISPLACEMENT_TOKENS.items()
        if tokens[i : i + len(words)] == words
    ]
    return FractureDescriptors(
        fracture=True,
        displacement=min(displacements)[1] if displacements else None,
        comminuted="comminuted" in tokens,
        impacted="impacted" in tokens,
        location=next((t for t in tokens if t in LOCATIONS), None),
        avulsed_fragment="avulsed" in tokens,
    )


def sentence_from_tokens(tokens: Sequence[str]) -> str:
    """Display text for generated tokens: the grammar's own sentence when they parse strictly (capitals
    and punctuation restored), else the words joined, capitalised, with a full stop."""
    parsed = parse_sentence(tokens)
    if parsed is not None:
        return fracture_sentence(parsed)
    text = " ".join(tokens)
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def sentence_words(tokens: Sequence[str]) -> list[tuple[str, int | None]]:
    """``sentence_from_tokens(tokens)`` cut at its spaces, each piece with the index of the generated token
    it shows (None for a piece that is no token of its own), so a page can tie every shown word to its
    attention map. Pieces are matched in order by their ``tokenize_caption`` words."""
    pieces: list[tuple[str, int | None]] = []
    position = 0
    for piece in sentence_from_tokens(tokens).split(" "):
        words = tokenize_caption(piece)
        if words and list(tokens[position : position + len(words)]) == words:
            pieces.append((piece, position))
            position += len(words)
        else:
            pieces.append((piece, None))
    return pieces


def field_correctness(sentence: Sentence, truth: FractureDescriptors, *, strict: bool = True) -> dict[str, bool]:
    """{field: correct} for each of :data:`CONTENT_FIELDS`, judging generated ``sentence`` against ``truth``."""
    parsed = parse_sentence(sentence, strict=strict)
    if parsed is None or parsed.fracture != truth.fracture:
        return dict.fromkeys(CONTENT_FIELDS, False)
    result = {field: getattr(parsed, name) == getattr(truth, name) for field, name in _ATTRIBUTE.items()}
    result["character"] = all(result[field] for field in CHARACTER_FIELDS)
    return result


def location_correct(sentence: Sentence, truth: FractureDescriptors, *, strict: bool = True) -> bool:
    """The paper's "appropriate location": fracture status and location as in ``truth``."""
    return field_correctness(sentence, truth, strict=strict)["location"]


def character_correct(sentence: Sentence, truth: FractureDescriptors, *, strict: bool = True) -> bool:
    """The paper's "appropriate character": displacement, comminution, impaction and avulsion as in ``truth``."""
    return field_correctness(sentence, truth, strict=strict)["character"]


def content_accuracy(
    sentences: Sequence[Sentence],
    truths: Sequence[FractureDescriptors],
    *,
    fractures_only: bool = True,
    strict: bool = True,
) -> dict[str, float | int | None]:
    """The share of sentences with each field correct ({field: share or None when nothing was judged}),
    plus ``count``, the number judged. ``fractures_only``: judge only truths with a fracture (the paper)."""
    if len(sentences) != len(truths):
        raise ValueError(f"{len(sentences)} sentences but {len(truths)} truths")
    judged = [
        field_correctness(sentence, truth, strict=strict)
        for sentence, truth in zip(sentences, truths, strict=True)
        if truth.fracture or not fractures_only
    ]
    shares: dict[str, float | int | None] = {
        field: (sum(row[field] for row in judged) / len(judged) if judged else None) for field in CONTENT_FIELDS
    }
    shares["count"] = len(judged)
    return shares
