"""How well one explanation matches what is known about its image, and the summary over a split
(DeepMiner section 3.2), for the hold-out split's batch explanation.

Per image: whether the most influential *named* unit names one of the image's finding concepts (counted
only where the image was classified correctly, as the paper's figure is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models import Explanation, Image, TrainedModel

__all__ = ["evaluation_summary", "image_evaluation"]


def _image_concepts(image: Image) -> set[str]:
    return {concept.code for finding in image.findings.all() for concept in finding.concepts.all()}


def _first_named(explanation: Explanation) -> dict[str, Any] | None:
    return next((u for u in explanation.units if u.get("label") and u.get("influence", 0) > 0), None)


def image_evaluation(*, trained: TrainedModel, image: Image, explanation: Explanation) -> dict[str, Any]:
    correct = bool(image.label) and explanation.decided == image.label
    named = _first_named(explanation)
    concepts = _image_concepts(image)
    hit = None
    if correct and concepts:
        hit = bool(named and named.get("concept") in concepts)
    return {"correct": correct, "named_hit": hit, "first_named": named.get("concept") if named else None}


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def evaluation_summary(evaluations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    hits = [e["named_hit"] for e in evaluations if e.get("named_hit") is not None]
    return {
        "images": len(evaluations),
        "correct": sum(1 for e in evaluations if e.get("correct")),
        "named_hit": {"share": _mean([1.0 if h else 0.0 for h in hits]), "images": len(hits)},
    }
