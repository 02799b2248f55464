"""Tests for mining.sentences: the grammar over every combination, the paper's example, validation,
and parity with static/annotator/sentences.js (run in Node when it is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mining.sentences import (
    DISPLACEMENTS,
    LOCATIONS,
    NO_FRACTURE_SENTENCE,
    FractureDescriptors,
    all_descriptor_combinations,
    fracture_sentence,
)

SENTENCES_JS = Path(__file__).resolve().parents[2] / "static" / "annotator" / "sentences.js"
ALL = list(all_descriptor_combinations())
ALL_PARTIAL = list(all_descriptor_combinations(partial=True))
FRACTURES = [d for d in ALL_PARTIAL if d.fracture]


def test_the_papers_example() -> None:
    d = FractureDescriptors(True, "moderately displaced", comminuted=True, location="subcapital")
    assert (
        fracture_sentence(d) == "There is a moderately displaced, comminuted fracture of the subcapital neck of femur."
    )


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (
            FractureDescriptors(True, "undisplaced", location="transcervical"),
            "There is an undisplaced fracture of the transcervical neck of femur.",
        ),
        (
            FractureDescriptors(True, "moderately displaced", True, True, "subcapital"),
            "There is a moderately displaced, comminuted, impacted fracture of the subcapital neck of femur.",
        ),
        (
            FractureDescriptors(
                True, "severely displaced", impacted=True, location="basicervical", avulsed_fragment=True
            ),
            "There is a severely displaced, impacted fracture of the basicervical neck of femur with an avulsed fragment.",
        ),
        (
            FractureDescriptors(True, "mildly displaced", location="intertrochanteric"),
            "There is a mildly displaced fracture of the intertrochanteric region of the femur.",
        ),
        (
            FractureDescriptors(True, "undisplaced", True, location="subtrochanteric"),
            "There is an undisplaced, comminuted fracture of the subtrochanteric region of the femur.",
        ),
        # Partial forms: the displacement is left out, a missing location is the proximal femur.
        (
            FractureDescriptors(True, impacted=True, location="subcapital"),
            "There is an impacted fracture of the subcapital neck of femur.",
        ),
        (
            FractureDescriptors(True, comminuted=True, impacted=True),
            "There is a comminuted, impacted fracture of the proximal femur.",
        ),
        (FractureDescriptors(True), "There is a fracture of the proximal femur."),
        (
            FractureDescriptors(True, "", location="", avulsed_fragment=True),
            "There is a fracture of the proximal femur with an avulsed fragment.",
        ),
    ],
)
def test_examples(d: FractureDescriptors, expected: str) -> None:
    assert fracture_sentence(d) == expected


def test_no_fracture_ignores_the_other_fields() -> None:
    assert NO_FRACTURE_SENTENCE == "No fracture was identified on this study."
    assert fracture_sentence(FractureDescriptors(False)) == NO_FRACTURE_SENTENCE
    stale = FractureDescriptors(False, "severely displaced", True, True, "subcapital", True)
    assert fracture_sentence(stale) == NO_FRACTURE_SENTENCE


# --------------------------------------------------------------------------- every combination


def test_combination_counts_and_uniqueness() -> None:
    assert len(ALL) == 1 + 4 * 2 * 2 * 5 * 2
    assert len(ALL_PARTIAL) == 1 + 5 * 2 * 2 * 6 * 2
    assert all(d.validate() == [] for d in ALL)
    assert all(d.validate(partial=True) == [] for d in ALL_PARTIAL)
    assert len({fracture_sentence(d) for d in ALL_PARTIAL}) == len(ALL_PARTIAL)  # every label reads differently


@pytest.mark.parametrize("d", FRACTURES, ids=lambda d: fracture_sentence(d)[9:-1])
def test_grammar_of_every_fracture_sentence(d: FractureDescriptors) -> None:
    sentence = fracture_sentence(d)
    assert sentence.startswith("There is ") and sentence.endswith(".")
    assert sentence.count(".") == 1 and "  " not in sentence and sentence == sentence.strip()
    assert re.fullmatch(r"[A-Za-z ,.]+", sentence)

    head, rest = sentence.split(" fracture of the ")
    words = head.removeprefix("There is ").split(" ", 1)
    article, adjectives = words[0], (words[1].split(", ") if len(words) > 1 else [])
    expected = [
        w for w in (d.displacement, "comminuted" if d.comminuted else None, "impacted" if d.impacted else None) if w
    ]
    assert adjectives == expected  # order, and a comma between every pair of adjectives, none before the noun
    first_word = adjectives[0] if adjectives else "fracture"
    assert article == ("an" if first_word in ("undisplaced", "impacted") else "a")

    place = rest.removesuffix(".").removesuffix(" with an avulsed fragment")
    assert rest.endswith(" with an avulsed fragment.") == d.avulsed_fragment
    if d.location in ("subcapital", "transcervical", "basicervical"):
        assert place == f"{d.location} neck of femur"
    elif d.location:
        assert place == f"{d.location} region of the femur"
    else:
        assert place == "proximal femur"
    for location in LOCATIONS:
        assert (location in sentence) == (location == d.location)
    for displacement in DISPLACEMENTS:
        assert (f" {displacement}" in sentence) == (displacement == d.displacement)


def test_unknown_words_are_refused() -> None:
    with pytest.raises(ValueError, match="displacement"):
        fracture_sentence(FractureDescriptors(True, "slightly displaced", location="subcapital"))
    with pytest.raises(ValueError, match="location"):
        fracture_sentence(FractureDescriptors(True, "undisplaced", location="femoral head"))


# --------------------------------------------------------------------------- dict round trip and validation


def test_dict_round_trip_and_key_order() -> None:
    for d in ALL_PARTIAL:
        as_dict = d.as_dict()
        assert list(as_dict) == ["fracture", "displacement", "comminuted", "impacted", "location", "avulsed_fragment"]
        assert json.loads(json.dumps(as_dict)) == as_dict
        assert FractureDescriptors.from_dict(as_dict) == d


def test_from_dict_ignores_other_keys_and_fills_defaults() -> None:
    metadata = {"fracture": True, "location": "subcapital", "report": "...", "age": 80, "fracture_bbox": [1, 2, 3, 4]}
    assert FractureDescriptors.from_dict(metadata) == FractureDescriptors(True, location="subcapital")
    assert FractureDescriptors.from_dict({"fracture": True, "displacement": ""}).displacement is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, ValueError),
        ({"fracture": "yes"}, TypeError),
        ({"fracture": True, "comminuted": 1}, TypeError),
        ({"fracture": True, "location": 3}, TypeError),
    ],
)
def test_from_dict_refuses_bad_types(data: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        FractureDescriptors.from_dict(data)


def test_validation_errors() -> None:
    unknown = FractureDescriptors(True, "slightly displaced", location="femoral head")
    assert len(unknown.validate()) == 2 and len(unknown.validate(partial=True)) == 2
    assert "unknown displacement 'slightly displaced'" in unknown.validate()[0]

    missing = FractureDescriptors(True, comminuted=True)
    assert missing.validate() == ["a fracture needs a displacement", "a fracture needs a location"]
    assert missing.validate(partial=True) == []

    stray = FractureDescriptors(False, location="subcapital", impacted=True)
    assert stray.validate() == ["no fracture, yet impacted, location set"]
    assert stray.validate(partial=True) == stray.validate()
    assert FractureDescriptors(False).validate() == []


# --------------------------------------------------------------------------- JavaScript parity


@pytest.fixture
def node() -> str:
    """Node.js runs the page's grammar; missing, the parity tests fail rather than skip (CI installs it)."""
    path = shutil.which("node")
    if path is None:
        pytest.fail("Node.js is needed for the JavaScript grammar tests: apt-get install nodejs (make test does)")
    return path


def test_javascript_gives_byte_identical_sentences(node: str) -> None:
    inputs = [d.as_dict() for d in ALL_PARTIAL]
    # Also the shapes a form can send: blanks, and keys left out.
    inputs += [{"fracture": True, "displacement": "", "location": ""}, {"fracture": True}, {"fracture": False}]
    expected = [fracture_sentence(FractureDescriptors.from_dict(d)) for d in inputs]
    script = (
        "globalThis.window = globalThis;"
        f"require({json.dumps(str(SENTENCES_JS))});"
        "const inputs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const api = window.DeepMinerSentences;"
        "process.stdout.write(JSON.stringify({no: api.NO_FRACTURE_SENTENCE, out: inputs.map(api.fractureSentence)}));"
    )
    result = subprocess.run([node, "-e", script], input=json.dumps(inputs), capture_output=True, text=True, check=True)
    got = json.loads(result.stdout)
    assert got["no"] == NO_FRACTURE_SENTENCE
    assert got["out"] == expected


def test_javascript_refuses_unknown_words(node: str) -> None:
    script = (
        f"require({json.dumps(str(SENTENCES_JS))});"
        "try { DeepMinerSentences.fractureSentence({fracture: true, displacement: 'slightly displaced'}); "
        "console.log('no error'); } catch (e) { console.log(e.message); }"
    )
    result = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "unknown displacement 'slightly displaced'"
