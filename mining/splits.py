"""Patient-level train / test / hold-out splits (DeepMiner: 80 / 10 / 10, one patient never straddles splits).

Each patient gets a seeded pseudo-random key (SHA-256 of ``"<seed>:<patient id>"``); patients are
sorted by key and cut at the split sizes. So the assignment depends on the seed and on the set of
patients only -- never on their order, on Python's hash randomisation or on a global RNG -- and
the split sizes are exact (largest-remainder rounding), not merely expected.

Each split has one role: train fits the network, with a seeded patient-level validation carve-out of
the training patients (`carve_validation`) to pick the best epoch; test gives the CNN metrics and is
where units are mined; hold-out is kept for evaluating the explanations only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

__all__ = ["SPLITS", "assign_splits", "carve_validation", "split_sizes", "validation_size"]

SPLITS: tuple[str, str, str] = ("train", "test", "holdout")


def assign_splits(
    patient_ids: Iterable[str], seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, str]:
    """Map every distinct patient id to "train", "test" or "holdout" in the given proportions."""
    patients = sorted(set(patient_ids), key=lambda pid: (_key(seed, pid), pid))
    sizes = split_sizes(len(patients), fractions)
    result: dict[str, str] = {}
    start = 0
    for split, size in zip(SPLITS, sizes, strict=True):
        for pid in patients[start : start + size]:
            result[pid] = split
        start += size
    return result


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of ``n`` patients go to each split: floors, then the leftovers to the largest
    remainders (ties to the earlier split), so the sizes sum to ``n`` and are as exact as can be."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    wanted = [f * n for f in fractions]
    sizes = [math.floor(w) for w in wanted]
    by_remainder = sorted(range(3), key=lambda i: (-(wanted[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes[0], sizes[1], sizes[2]


def carve_validation(patient_ids: Iterable[str], fraction: float = 0.1, seed: int = 0) -> set[str]:
    """The validation carve-out of the training patients: ``validation_size`` of the distinct ids,
    chosen like `assign_splits` (seeded keys, so independent of order and repeats) but with keys of
    their own, so the carve-out is not tied to how the patients were split in the first place."""
    patients = sorted(set(patient_ids), key=lambda pid: (_key(seed, pid, salt="validation"), pid))
    return set(patients[: validation_size(len(patients), fraction)])


def validation_size(n: int, fraction: float) -> int:
    """How many of ``n`` training patients validate: ``fraction`` of them rounded as `split_sizes`
    does, but at least one patient on each side when there are two or more."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie strictly between 0 and 1, got {fraction}")
    size = split_sizes(n, (1 - fraction, fraction, 0.0))[1]
    return min(max(size, 1), n - 1) if n >= 2 else 0


def _key(seed: int, patient_id: str, salt: str = "") -> bytes:
    text = f"{seed}:{patient_id}" if not salt else f"{salt}:{seed}:{patient_id}"
    return hashlib.sha256(text.encode()).digest()
