"""Templated hip-fracture sentences from a few expert-labelled descriptors (the hip-fracture paper, §2.1).

The paper's template is "There is a [degree of displacement], [+/- comminuted] [+/- impacted] fracture
of the [location] neck of femur [+/- with an avulsed fragment]." and, without a fracture, "No fracture
was identified on this study." This module renders it with a fixed grammar so that every combination,
including a form still being filled in, reads as correct English. ``static/annotator/sentences.js``
implements the same rules for the live sentence in the browser; both must stay byte-identical.

Grammar rules:

1. Adjectives come in the fixed order displacement, comminuted, impacted and are all coordinate
   (each describes the fracture on its own: "comminuted and impacted fracture" reads the same), so
   every pair is separated by a comma and a space, and none is followed by a comma before the noun:
   "a moderately displaced, comminuted, impacted fracture". This generalises the paper's
   "[displacement], [comminuted]" comma to every pair instead of leaving "comminuted impacted".
2. The article is "an" when the word after it starts with a vowel letter, else "a". In this closed
   vocabulary the letter is also the sound ("an undisplaced", "an impacted", "a comminuted",
   "a moderately displaced", "a fracture").
3. Location: the three neck fractures keep the paper's wording, "of the subcapital neck of femur"
   (also transcervical, basicervical). Intertrochanteric and subtrochanteric fractures are not in the
   neck, so they read "of the intertrochanteric region of the femur" and "of the subtrochanteric region
   of the femur".
4. " with an avulsed fragment" goes right before the final full stop.
5. Partial forms (labelling in progress) still render: a missing displacement is left out ("There is
   a comminuted fracture of ...", or "There is a fracture of ..." with no adjective at all), and a
   missing location reads "of the proximal femur", which covers all five locations. An empty string
   counts as missing, as a blank <select> gives one. Without a fracture every other field is ignored
   and the sentence is ``NO_FRACTURE_SENTENCE``.
6. An unknown displacement or location is an error (``ValueError``), never rendered.

``FractureDescriptors.validate()`` reports what a saved label lacks; ``validate(partial=True)`` accepts
a form in progress (missing displacement or location) but never unknown words or descriptors set on a
study without a fracture.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "DISPLACEMENTS",
    "LOCATIONS",
    "NECK_LOCATIONS",
    "NO_FRACTURE_SENTENCE",
    "FractureDescriptors",
    "all_descriptor_combinations",
    "fracture_sentence",
]

DISPLACEMENTS: tuple[str, ...] = ("undisplaced", "mildly displaced", "moderately displaced", "severely displaced")
LOCATIONS: tuple[str, ...] = ("subcapital", "transcervical", "basicervical", "intertrochanteric", "subtrochanteric")
NECK_LOCATIONS: tuple[str, ...] = ("subcapital", "transcervical", "basicervical")  # read "... neck of femur"
NO_FRACTURE_SENTENCE = "No fracture was identified on this study."

_UNKNOWN_LOCATION_PHRASE = "proximal femur"
_BOOL_FIELDS = ("fracture", "comminuted", "impacted", "avulsed_fragment")
_CHOICE_FIELDS = {"displacement": DISPLACEMENTS, "location": LOCATIONS}


@dataclass(frozen=True)
class FractureDescriptors:
    """One hip's descriptors, as an expert labels them. Empty strings are stored as None."""

    fracture: bool
    displacement: str | None = None
    comminuted: bool = False
    impacted: bool = False
    location: str | None = None
    avulsed_fragment: bool = False

    def __post_init__(self) -> None:
        # A blank form field arrives as "": one spelling of "missing" keeps the rules simple.
        for name in _CHOICE_FIELDS:
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FractureDescriptors:
        """Build from the ``as_dict()`` shape. Other keys (e.g. an image's "report" or "age") are
        ignored, so an image's metadata can be passed as it is. ``fracture`` is required; booleans
        must be JSON booleans and choices strings or null (``TypeError`` otherwise)."""
        if "fracture" not in data:
            raise ValueError("descriptors need a 'fracture' key")
        values: dict[str, Any] = {}
        for name in _BOOL_FIELDS:
            if name in data:
                if not isinstance(data[name], bool):
                    raise TypeError(f"{name} must be true or false, got {data[name]!r}")
                values[name] = data[name]
        for name in _CHOICE_FIELDS:
            if name in data:
                if data[name] is not None and not isinstance(data[name], str):
                    raise TypeError(f"{name} must be a string or null, got {data[name]!r}")
                values[name] = data[name]
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values, keys in field order: fracture, displacement, comminuted, impacted,
        location, avulsed_fragment."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self, *, partial: bool = False) -> list[str]:
        """Problems with this label, as messages; empty when valid. ``partial``: a form still being
        filled in, where a fracture may lack its displacement or location for now."""
        errors = [
            f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(choices)}"
            for name, choices in _CHOICE_FIELDS.items()
            if getattr(self, name) is not None and getattr(self, name) not in choices
        ]
        if self.fracture and not partial:
            errors += [f"a fracture needs a {name}" for name in _CHOICE_FIELDS if getattr(self, name) is None]
        if not self.fracture:
            stray = [name for name in (*_CHOICE_FIELDS, *_BOOL_FIELDS[1:]) if getattr(self, name)]
            if stray:
                errors.append(f"no fracture, yet {', '.join(sorted(stray))} set")
        return errors


def fracture_sentence(d: FractureDescriptors) -> str:
    """The templated sentence for ``d`` (see the module docstring for the rules)."""
    if not d.fracture:
        return NO_FRACTURE_SENTENCE
    for name, choices in _CHOICE_FIELDS.items():
        value = getattr(d, name)
        if value and value not in choices:
            raise ValueError(f"unknown {name} {value!r}")
    comminuted = "comminuted" if d.comminuted else None
    impacted = "impacted" if d.impacted else None
    adjectives = [word for word in (d.displacement, comminuted, impacted) if word]
    noun_phrase = ", ".join(adjectives) + " fracture" if adjectives else "fracture"
    avulsion = " with an avulsed fragment" if d.avulsed_fragment else ""
    return f"There is {_article(noun_phrase)} {noun_phrase} of the {_location_phrase(d.location)}{avulsion}."


def all_descriptor_combinations(*, partial: bool = False) -> Iterator[FractureDescriptors]:
    """Every valid label: no fracture, then each displacement x comminuted x impacted x location x
    avulsed fragment (1 + 4*2*2*5*2 = 161). ``partial`` adds forms lacking a displacement and/or a
    location (1 + 5*2*2*6*2 = 241), all of which render."""
    yield FractureDescriptors(fracture=False)
    displacements: tuple[str | None, ...] = (*DISPLACEMENTS, None) if partial else DISPLACEMENTS
    locations: tuple[str | None, ...] = (*LOCATIONS, None) if partial else LOCATIONS
    flags = (False, True)
    for displacement, comminuted, impacted, location, avulsed in itertools.product(
        displacements, flags, flags, locations, flags
    ):
        yield FractureDescriptors(True, displacement, comminuted, impacted, location, avulsed)


def _article(phrase: str) -> str:
    # Vowel letter == vowel sound for every word this grammar can put first (rule 2).
    return "an" if phrase[0] in "aeiou" else "a"


def _location_phrase(location: str | None) -> str:
    if not location:
        return _UNKNOWN_LOCATION_PHRASE
    if location in NECK_LOCATIONS:
        return f"{location} neck of femur"
    return f"{location} region of the femur"
