"""mining.sentence_parse: every sentence the grammar renders parses back to its descriptors, and the
paper's content scores (appropriate location, appropriate character) judged field by field."""

from __future__ import annotations

import pytest

from mining.sentence_parse import (
    CONTENT_FIELDS,
    character_correct,
    content_accuracy,
    field_correctness,
    location_correct,
    parse_sentence,
    sentence_from_tokens,
    sentence_words,
)
from mining.sentences import NO_FRACTURE_SENTENCE, FractureDescriptors, all_descriptor_combinations, fracture_sentence
from mining.textmetrics import tokenize_caption

ALL_PARTIAL = list(all_descriptor_combinations(partial=True))
TRUTH = FractureDescriptors(True, "moderately displaced", True, False, "subcapital", False)
TRUTH_TEXT = fracture_sentence(TRUTH)


def test_enumeration_covers_the_grammar() -> None:
    assert len(ALL_PARTIAL) == 241
    assert len({fracture_sentence(d) for d in ALL_PARTIAL}) == 241  # distinct sentences: parsing can invert


@pytest.mark.parametrize("strict", [True, False])
def test_parses_back_every_sentence_the_grammar_produces(strict: bool) -> None:
    for d in ALL_PARTIAL:
        text = fracture_sentence(d)
        assert parse_sentence(text, strict=strict) == d, text
        assert parse_sentence(tokenize_caption(text), strict=strict) == d, text
        assert parse_sentence(text.upper().replace(",", ""), strict=strict) == d, text


def test_sentence_words_ties_every_shown_word_to_its_token() -> None:
    for d in ALL_PARTIAL:  # every sentence the grammar can say: each shown word is one token, in order
        tokens = tokenize_caption(fracture_sentence(d))
        pieces = sentence_words(tokens)
        assert " ".join(text for text, _ in pieces) == fracture_sentence(d)
        assert [index for _, index in pieces] == list(range(len(tokens)))
    # Words the grammar cannot parse are shown joined, capitalised, with a full stop: still one each.
    assert sentence_words(["on", "on", "femur"]) == [("On", 0), ("on", 1), ("femur.", 2)]
    assert sentence_words([]) == [("", None)]


def test_sentence_from_tokens_restores_the_template() -> None:
    for d in ALL_PARTIAL:
        text = fracture_sentence(d)
        assert sentence_from_tokens(tokenize_caption(text)) == text
    assert sentence_from_tokens(["mild", "effusion", "seen"]) == "Mild effusion seen."
    assert sentence_from_tokens([]) == ""


@pytest.mark.parametrize(
    "text",
    [
        "There is an moderately displaced, comminuted fracture of the subcapital neck of femur.",  # article
        "There is a comminuted, moderately displaced fracture of the subcapital neck of femur.",  # order
        "There is a moderately displaced, comminuted fracture of the subcapital region of the femur.",  # phrase
        "There is a moderately displaced, comminuted fracture of the subcapital neck of femur femur.",
        "There is a moderately displaced, comminuted fracture of the neck of femur.",
        "There is a moderately displaced comminuted comminuted fracture of the subcapital neck of femur.",
        "A moderately displaced, comminuted fracture of the subcapital neck of femur.",
        "No fracture was identified.",
        "There is",
        "",
    ],
)
def test_strict_parsing_rejects_what_the_grammar_cannot_say(text: str) -> None:
    assert parse_sentence(text) is None
    if text not in ("", "There is", "No fracture was identified."):
        assert field_correctness(text, TRUTH) == dict.fromkeys(CONTENT_FIELDS, False)


def test_lenient_reading_takes_the_words_wherever_they_stand() -> None:
    text = "There is a comminuted, moderately displaced fracture of the subcapital region of the femur."
    assert parse_sentence(text, strict=False) == TRUTH
    assert field_correctness(text, TRUTH, strict=False) == dict.fromkeys(CONTENT_FIELDS, True)
    assert parse_sentence("No fracture was identified.", strict=False) == FractureDescriptors(False)
    assert parse_sentence("", strict=False) is None


def test_field_correctness_field_by_field() -> None:
    assert field_correctness(TRUTH_TEXT, TRUTH) == dict.fromkeys(CONTENT_FIELDS, True)
    # The paper's most common error: off by one location (subcapital called transcervical).
    off_by_one = fracture_sentence(FractureDescriptors(True, "moderately displaced", True, False, "transcervical"))
    assert field_correctness(off_by_one, TRUTH) == {
        "location": False, "displacement": True, "comminution": True, "impaction": True, "avulsion": True,
        "character": True,
    }  # fmt: skip
    impacted = fracture_sentence(FractureDescriptors(True, "moderately displaced", True, True, "subcapital"))
    assert location_correct(impacted, TRUTH) and not character_correct(impacted, TRUTH)
    assert field_correctness(impacted, TRUTH)["impaction"] is False
    assert field_correctness(NO_FRACTURE_SENTENCE, TRUTH) == dict.fromkeys(CONTENT_FIELDS, False)
    no = FractureDescriptors(False)
    assert field_correctness(NO_FRACTURE_SENTENCE, no) == dict.fromkeys(CONTENT_FIELDS, True)
    assert not location_correct(TRUTH_TEXT, no)


def test_content_accuracy_judges_fractures_only_by_default() -> None:
    no = FractureDescriptors(False)
    off_by_one = fracture_sentence(FractureDescriptors(True, "moderately displaced", True, False, "basicervical"))
    sentences = [TRUTH_TEXT, off_by_one, "gibberish", TRUTH_TEXT]
    truths = [TRUTH, TRUTH, TRUTH, no]
    scores = content_accuracy(sentences, truths)
    assert scores["count"] == 3
    assert scores["location"] == pytest.approx(1 / 3) and scores["character"] == pytest.approx(2 / 3)
    everything = content_accuracy(sentences, truths, fractures_only=False)
    assert everything["count"] == 4 and everything["location"] == pytest.approx(1 / 4)
    assert content_accuracy([], [])["location"] is None
    with pytest.raises(ValueError):
        content_accuracy([TRUTH_TEXT], [])
