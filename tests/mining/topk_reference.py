"""A brute-force reference for ``mining.topk.UnitTopK``: everything held at once, sorted.

Shared by the tests of the statistic, of the mining pass and of the unit masks.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from mining.topk import UnitTopK, quantile_count


def stream(
    features: torch.Tensor, ids: torch.Tensor, batch_size: int, dataset_size: int | None = None, **kwargs: Any
) -> UnitTopK:
    """UnitTopK fed `features` (N, U, h, w) in batches; kwargs: top_n, quantile."""
    n, units, h, w = features.shape
    topk = UnitTopK(units, total_positions=(dataset_size or n) * h * w, **kwargs)
    for start in range(0, n, batch_size):
        topk.update(features[start : start + batch_size], ids[start : start + batch_size])
    return topk


def brute_force(features: torch.Tensor, ids: torch.Tensor, top_n: int, quantile: float) -> dict[str, torch.Tensor]:
    """Everything held at once: per unit sort all inputs by (max desc, id asc); sort all positions."""
    n, units, h, w = features.shape
    flat = features.flatten(2)
    scores = flat.amax(dim=2)  # (N, U)
    kept = min(top_n, n)
    out: dict[str, list] = {"scores": [], "ids": [], "cells": [], "maps": [], "thresholds": []}
    k = quantile_count(quantile, n * h * w)
    for u in range(units):
        order = sorted(range(n), key=lambda i: (-float(scores[i, u]), int(ids[i])))[:kept]
        out["scores"].append(scores[order, u])
        out["ids"].append(ids[order])
        cells = flat[order, u].argmax(dim=1)  # first maximum in row-major order
        out["cells"].append(torch.stack((cells // w, cells % w), dim=-1))
        out["maps"].append(features[order, u])
        out["thresholds"].append(torch.sort(flat[:, u].reshape(-1), descending=True).values[k - 1])
    return {name: torch.stack(values) for name, values in out.items()}


def assert_matches(topk: UnitTopK, expected: dict[str, torch.Tensor]) -> None:
    n = topk.kept
    assert torch.equal(topk.scores[:, :n], expected["scores"])
    assert torch.equal(topk.ids[:, :n], expected["ids"])
    assert torch.equal(topk.locations()[:, :n], expected["cells"])
    assert torch.equal(topk.response_maps()[:, :n], expected["maps"])
    assert torch.equal(topk.thresholds(), expected["thresholds"])


def random_features(n: int, units: int = 5, h: int = 3, w: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, units, h, w, generator=torch.Generator().manual_seed(seed))


def through_bytes(topk: UnitTopK) -> UnitTopK:
    """``topk`` after ``torch.save`` and ``torch.load(weights_only=True)`` of its state, as a shard's state
    travels to the merge."""
    buffer = io.BytesIO()
    torch.save(topk.state_dict(), buffer)
    buffer.seek(0)
    return UnitTopK.from_state_dict(torch.load(buffer, weights_only=True))
