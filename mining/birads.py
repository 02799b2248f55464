"""The BI-RADS mammography lexicon (ACR BI-RADS Atlas, 5th edition) plus the normal anatomy
that units of the normal class can be matched against.

Plain data, shared by the Concept data migration (annotator) and the phantom generator (mining),
so a planted finding and the concept an expert picks carry the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATEGORIES", "LEXICON", "LexiconTerm", "by_code"]


@dataclass(frozen=True)
class LexiconTerm:
    code: str  # "<category>.<term>", stable identifier used across the product
    category: str
    term: str
    association: str  # the association with cancer the lexicon implies: normal / benign / suspicious / neutral


# Category code -> human label, in the order the picker shows them.
CATEGORIES: dict[str, str] = {
    "mass_shape": "Mass — shape",
    "mass_margin": "Mass — margin",
    "mass_density": "Mass — density",
    "calc_benign": "Calcifications — typically benign morphology",
    "calc_suspicious": "Calcifications — suspicious morphology",
    "calc_distribution": "Calcifications — distribution",
    "architectural_distortion": "Architectural distortion",
    "asymmetry": "Asymmetries",
    "special_case": "Special cases",
    "associated_feature": "Associated features",
    "composition": "Breast composition",
    "anatomy": "Normal anatomy",
}

_RAW: list[tuple[str, str, str]] = [
    # (category, term, association)
    ("mass_shape", "Oval", "neutral"),
    ("mass_shape", "Round", "neutral"),
    ("mass_shape", "Irregular", "suspicious"),
    ("mass_margin", "Circumscribed", "benign"),
    ("mass_margin", "Obscured", "neutral"),
    ("mass_margin", "Microlobulated", "suspicious"),
    ("mass_margin", "Indistinct", "suspicious"),
    ("mass_margin", "Spiculated", "suspicious"),
    ("mass_density", "High density", "suspicious"),
    ("mass_density", "Equal density", "neutral"),
    ("mass_density", "Low density", "neutral"),
    ("mass_density", "Fat-containing", "benign"),
    ("calc_benign", "Skin", "benign"),
    ("calc_benign", "Vascular", "benign"),
    ("calc_benign", "Coarse or popcorn-like", "benign"),
    ("calc_benign", "Large rod-like", "benign"),
    ("calc_benign", "Round", "benign"),
    ("calc_benign", "Rim", "benign"),
    ("calc_benign", "Dystrophic", "benign"),
    ("calc_benign", "Milk of calcium", "benign"),
    ("calc_benign", "Suture", "benign"),
    ("calc_suspicious", "Amorphous", "suspicious"),
    ("calc_suspicious", "Coarse heterogeneous", "suspicious"),
    ("calc_suspicious", "Fine pleomorphic", "suspicious"),
    ("calc_suspicious", "Fine linear or fine-linear branching", "suspicious"),
    ("calc_distribution", "Diffuse", "benign"),
    ("calc_distribution", "Regional", "neutral"),
    ("calc_distribution", "Grouped", "neutral"),
    ("calc_distribution", "Linear", "suspicious"),
    ("calc_distribution", "Segmental", "suspicious"),
    ("architectural_distortion", "Architectural distortion", "suspicious"),
    ("asymmetry", "Asymmetry", "neutral"),
    ("asymmetry", "Global asymmetry", "benign"),
    ("asymmetry", "Focal asymmetry", "neutral"),
    ("asymmetry", "Developing asymmetry", "suspicious"),
    ("special_case", "Intramammary lymph node", "benign"),
    ("special_case", "Skin lesion", "benign"),
    ("special_case", "Solitary dilated duct", "neutral"),
    ("associated_feature", "Skin retraction", "suspicious"),
    ("associated_feature", "Nipple retraction", "suspicious"),
    ("associated_feature", "Skin thickening", "neutral"),
    ("associated_feature", "Trabecular thickening", "neutral"),
    ("associated_feature", "Axillary adenopathy", "suspicious"),
    ("associated_feature", "Architectural distortion", "suspicious"),
    ("associated_feature", "Calcifications", "neutral"),
    ("composition", "Almost entirely fatty", "normal"),
    ("composition", "Scattered areas of fibroglandular density", "normal"),
    ("composition", "Heterogeneously dense", "normal"),
    ("composition", "Extremely dense", "normal"),
    ("anatomy", "Skin line", "normal"),
    ("anatomy", "Normal vessels", "normal"),
    ("anatomy", "Fibroglandular tissue", "normal"),
    ("anatomy", "Fatty tissue", "normal"),
    ("anatomy", "Pectoral muscle", "normal"),
    ("anatomy", "Nipple", "normal"),
    ("anatomy", "Cooper's ligaments", "normal"),
]


def _slug(term: str) -> str:
    keep = "".join(ch if ch.isalnum() else "_" for ch in term.lower())
    return "_".join(part for part in keep.split("_") if part)


LEXICON: tuple[LexiconTerm, ...] = tuple(
    LexiconTerm(code=f"{cat}.{_slug(term)}", category=cat, term=term, association=assoc) for cat, term, assoc in _RAW
)


def by_code(code: str) -> LexiconTerm:
    """The lexicon term with this code; KeyError names the unknown code."""
    for entry in LEXICON:
        if entry.code == code:
            return entry
    raise KeyError(f"unknown BI-RADS concept code {code!r}")
