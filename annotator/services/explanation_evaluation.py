"""How well one explanation matches what is known about its image, and the summary over a split
(DeepMiner section 3.2), computed by the hold-out split's batch explanation.

Per image, from the explanation as it is made (``mining.explain.Explanation``, its layer4 features kept):
  * greedy matching (``mining.evaluation.explanation_scores``, GloVe 6B 50-d) of the names of the most
    influential unit and of the top 8 against the image's description: its report text where the dataset
    has one, else its findings' concept names. Names are those the units go by (consensus, experts'
    majority, else the mining suggestion); the summary says how many were the experts';
  * whether the most influential *named* unit names one of the image's finding concepts, counted only
    where the image was classified correctly (as the paper's figure is);
  * the deletion check (``mining.evaluation.explanation_deletion``): the decided class's image-level score
    drop with the top 8 units zeroed, against random sets of 8 (seeded per image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mining.causal import bootstrap_ci
from mining.evaluation import ImageDeletion, deletion_summary, explanation_deletion, explanation_scores
from mining.explain import Explanation as Explained
from mining.explain import tissue_cells

from ..models import Image
from ..selectors.explanations import UnitName, concept_name

__all__ = ["evaluation_summary", "image_description", "image_evaluation"]

DELETION_SEED = 0


def image_description(image: Image) -> tuple[str, str]:
    """(text, where it came from): the report, else the findings' concept names (prefetch findings__concepts)."""
    report = str((image.metadata or {}).get("report") or "").strip()
    if report:
        return report, "report"
    names = [concept_name(c) for finding in image.findings.all() for c in finding.concepts.all()]
    return ", ".join(names), "findings"


def image_evaluation(
    *,
    image: Image,
    result: Explained,
    names: dict[int, UnitName],
    model: Any,
    normal_class: int,
    tissue: np.ndarray | None,
) -> tuple[dict[str, Any], ImageDeletion]:
    """The image's evaluation record (stored on its Explanation) and its deletion check."""
    decided = result.classes[result.decided]
    correct = bool(image.label) and decided == image.label
    concepts = {c.code for finding in image.findings.all() for c in finding.concepts.all()}
    named = next((u for u in result.units if u.label and u.influence > 0), None)
    first_concept = names[named.unit].concept if named is not None and named.unit in names else ""
    hit = bool(first_concept and first_concept in concepts) if correct and concepts else None
    text, source = image_description(image)
    scores = explanation_scores([u.label for u in result.units], text)
    cells = None
    if tissue is not None and result.features is not None:
        cells = tissue_cells(tissue, (int(result.features.shape[2]), int(result.features.shape[3])))
    deletion = explanation_deletion(
        model, result, seed=[DELETION_SEED, image.pk], normal_class=normal_class, cells=cells
    )
    record = {
        "correct": correct,
        "named_hit": hit,
        "first_named": first_concept or None,
        "description": source,
        "greedy_top1": None if scores.top1 is None else round(scores.top1, 5),
        "greedy_top8": None if scores.top8 is None else round(scores.top8, 5),
        "expert_named": sum(1 for u in result.units if u.source in ("consensus", "experts")),
        "deletion_drop": round(deletion.drop, 6),
        "deletion_random_drop": round(deletion.random_drop, 6),
    }
    return record, deletion


def _mean_ci(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "ci": None, "images": 0}
    low, high = bootstrap_ci(np.asarray(values, dtype=np.float64), seed=DELETION_SEED)
    return {"mean": round(float(np.mean(values)), 4), "ci": [round(low, 4), round(high, 4)], "images": len(values)}


def evaluation_summary(records: Sequence[dict[str, Any]], deletions: Sequence[ImageDeletion]) -> dict[str, Any]:
    hits = [r["named_hit"] for r in records if r.get("named_hit") is not None]
    deleted = deletion_summary(deletions, seed=DELETION_SEED)
    sources = sorted({r["description"] for r in records})
    return {
        "images": len(records),
        "correct": sum(1 for r in records if r.get("correct")),
        "named_hit": {"share": round(sum(hits) / len(hits), 4) if hits else None, "images": len(hits)},
        "greedy": {
            "description": " / ".join(sources),
            "top1": _mean_ci([r["greedy_top1"] for r in records if r.get("greedy_top1") is not None]),
            "top8": _mean_ci([r["greedy_top8"] for r in records if r.get("greedy_top8") is not None]),
            "expert_named_share": round(sum(r["expert_named"] for r in records) / (8 * len(records)), 4)
            if records
            else None,
        },
        "deletion": {
            "images": deleted["images"],
            "draws": deleted["draws"],
            "top": {"mean": deleted["top_drop"], "ci": deleted["top_ci"]},
            "random": {"mean": deleted["random_drop"], "ci": deleted["random_ci"]},
            "ratio": deleted["ratio"],
        },
    }
