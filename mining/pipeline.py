"""The two mining passes, and the glue between their results and what the product stores.

``run_mining_pass`` (the first) drives a feature extractor returning ``{"features", "logits"}`` over the
patches and feeds ``topk.UnitTopK`` (top patches, exact thresholds) and ``influence.InfluenceTally``;
``run_dissection_pass`` (the second, once the thresholds are known) feeds
``dissection.ConceptIoUTally`` with every patch, as Network Dissection does. ``patch_concept_masks`` and
``mask_sprite`` give the concept masks per patch and the mask sprites that are stored with the units. Tensors and arrays in, tensors and arrays out: the services
do the file and database I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import batches, to_input
from .devices import to_device
from .dissection import ConceptIoUTally
from .influence import TOP_UNITS_PER_INPUT, InfluenceTally
from .networks import model_device
from .patch_store import PatchStore, gather
from .precision import FP32, Precision
from .progress import CancelFn, ProgressFn, check_cancel, never_cancelled, no_progress
from .topk import QUANTILE, TOP_N, UnitTopK

__all__ = ["ConceptsFn", "MiningResult", "mask_sprite", "patch_concept_masks", "run_dissection_pass", "run_mining_pass"]


# ---------------------------------------------------------------------- the pass


@dataclass
class MiningResult:
    """topk: per-unit top activations; influence: per-class unit frequencies over the images (finished);
    probs float32 (N, C) per patch."""

    topk: UnitTopK
    influence: InfluenceTally
    probs: np.ndarray


Patches = torch.Tensor | PatchStore | Iterable[torch.Tensor]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the per-batch statistics on one intra-op thread, then restore the caller's setting.

    They are many small ops; with 2+ threads each waits on an OpenMP barrier, which made them
    2-5x slower on the 2-core machines here (worse under load) than on one thread, where they
    cost about 1% of a resnet18 batch. The setting is process-wide, so it is held only briefly.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _uint8_batches(patches: Patches, batch_size: int) -> Iterable[torch.Tensor]:
    """uint8 (B, S, S) batches of one big tensor (sliced, no copy), of a patch store (read in order, ahead
    when it has loader workers) or of an iterable of batches."""
    if isinstance(patches, (torch.Tensor, PatchStore)):
        return gather(patches, list(batches(len(patches), batch_size)))
    return patches


def _count(patches: Patches, num_inputs: int | None) -> int:
    total = len(patches) if isinstance(patches, (torch.Tensor, PatchStore)) else num_inputs
    if total is None:
        raise ValueError("num_inputs is required when patches is an iterable of batches")
    return total


def run_mining_pass(
    extractor: nn.Module,
    patches: Patches,
    fc_weight: torch.Tensor | np.ndarray,
    *,
    input_ids: torch.Tensor | np.ndarray | None = None,
    image_index: torch.Tensor | np.ndarray | None = None,
    num_inputs: int | None = None,
    dataset_size: int | None = None,
    batch_size: int = 64,
    top_n: int = TOP_N,
    quantile: float = QUANTILE,
    per_image_top: int = TOP_UNITS_PER_INPUT,
    progress: ProgressFn = no_progress,
    cancelled: CancelFn = never_cancelled,
    precision: Precision = FP32,
) -> MiningResult:
    """One inference pass collecting top activations, influence counts and class probabilities.

        extractor: module mapping float (B, 3, S, S) to {"features": (B, U, h, w), "logits": (B, C)};
        it is put in eval mode. patches: uint8 (N, S, S) (a tensor or a ``PatchStore``), or an iterable of uint8 (B, S, S) batches
        (then ``num_inputs`` is required, batch_size is theirs, and they may be generated lazily so
        the input never has to fit in memory). fc_weight: (C, U). input_ids: int64 (N,) global patch indices
        (default 0..N-1). image_index: int64 (N,) the image of each patch, an image's patches adjacent
    (default: every patch its own image); influence is counted per image, over the image's patches. dataset_size: inputs over all shards of a sharded pass, which sets the quantile's
        K so shard results merge exactly (default: this pass's N). precision: the forward's autocast
        (``mining.precision``); features and logits are cast to float32 before anything is tallied.
        Raises ``Cancelled`` between batches when ``cancelled()`` says so.
    """
    total = _count(patches, num_inputs)
    ids = torch.arange(total) if input_ids is None else torch.as_tensor(input_ids, dtype=torch.int64)
    if len(ids) != total:
        raise ValueError(f"{len(ids)} input ids for {total} patches")
    images = torch.arange(total) if image_index is None else torch.as_tensor(image_index, dtype=torch.int64)
    if len(images) != total:
        raise ValueError(f"{len(images)} image indices for {total} patches")
    weight = torch.as_tensor(fc_weight, dtype=torch.float32).detach()
    extractor.eval()
    device = model_device(extractor)
    topk: UnitTopK | None = None
    influence = InfluenceTally(weight, per_image_top)
    probs: list[torch.Tensor] = []
    done = 0
    with torch.inference_mode():
        for batch in _uint8_batches(patches, batch_size):
            check_cancel(cancelled)
            if done + len(batch) > total:
                raise ValueError(f"got more than the {total} patches announced")
            # The network runs on its device (a GPU worker's); the tallies stay on the CPU (a no-op there).
            with precision.autocast():
                out = extractor(to_input(to_device(batch, device)))
            features, logits = out["features"].float().cpu(), out["logits"].cpu()
            if topk is None:  # h and w are only known once the network has run
                positions = (dataset_size or total) * features.shape[2] * features.shape[3]
                topk = UnitTopK(features.shape[1], top_n, quantile, total_positions=positions)
            with _one_thread():
                max_act = topk.update(features, ids[done : done + len(batch)])
                influence.update(max_act, images[done : done + len(batch)])
                probs.append(torch.softmax(logits.float(), dim=1))
            done += len(batch)
            progress(done, total, "mining top activations")
    if topk is None or done != total:
        raise ValueError(f"expected {total} patches, got {done}")
    return MiningResult(topk, influence.finish(), torch.cat(probs).numpy())


# A patch's concept masks, asked for by position in the pass: (start, stop) -> one code -> bool (S, S) map a patch.
ConceptsFn = Callable[[int, int], Sequence[Mapping[str, np.ndarray]]]


def run_dissection_pass(
    extractor: nn.Module,
    patches: Patches,
    thresholds: torch.Tensor,
    concepts: ConceptsFn,
    side: int,
    *,
    num_inputs: int | None = None,
    batch_size: int = 64,
    progress: ProgressFn = no_progress,
    cancelled: CancelFn = never_cancelled,
    precision: Precision = FP32,
) -> ConceptIoUTally:
    """The second pass: every unit's Network Dissection IoU sums with every concept over all the patches.

    extractor and patches as for `run_mining_pass` (the same patches in the same order); thresholds:
    float (U,) from the first pass; concepts(start, stop): the concept masks (side x side) of patches
    start..stop-1 of this pass; precision: as for `run_mining_pass` (the IoUs are of float32 maps).
    Raises ``Cancelled`` between batches when ``cancelled()`` says so.
    """
    total = _count(patches, num_inputs)
    tally = ConceptIoUTally(thresholds, side)
    extractor.eval()
    device = model_device(extractor)
    done = 0
    with torch.inference_mode():
        for batch in _uint8_batches(patches, batch_size):
            check_cancel(cancelled)
            with precision.autocast():
                features = extractor(to_input(to_device(batch, device)))["features"]
            features = features.float().cpu()
            with _one_thread():
                tally.update(features, concepts(done, done + len(batch)))
            done += len(batch)
            progress(done, total, "matching units with concepts over every patch")
    if done != total:
        raise ValueError(f"expected {total} patches, got {done}")
    return tally


# ---------------------------------------------------------------------- what is stored with the units


def patch_concept_masks(
    findings: Sequence[tuple[np.ndarray, Sequence[str]]], box: Sequence[int], size: int
) -> dict[str, np.ndarray]:
    """Each concept's mask inside one patch, at the network's input size.

    findings: (bool (H, W) mask, concept codes) of the patch's image; box: (x0, y0, x1, y1).
    Returns code -> bool (size, size); concepts absent from the patch are left out.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    result: dict[str, np.ndarray] = {}
    for mask, codes in findings:
        crop = mask[y0:y1, x0:x1]
        if not crop.any():
            continue
        if crop.shape != (size, size):
            resized = F.interpolate(torch.from_numpy(crop)[None, None].float(), size=(size, size), mode="nearest")
            crop = resized[0, 0].numpy() > 0.5
        for code in codes:
            result[code] = result[code] | crop if code in result else crop.copy()
    return result


def mask_sprite(masks: np.ndarray, columns: int = 8) -> np.ndarray:
    """Tiles (n, S, S) masks (bool, or uint8 response maps) row-major into one (rows*S, columns*S) image
    of the same dtype; tile i is rank i + 1."""
    n, side, _ = masks.shape
    rows = max(1, -(-n // columns))
    sheet = np.zeros((rows * columns, side, side), dtype=masks.dtype)
    sheet[:n] = masks
    return sheet.reshape(rows, columns, side, side).transpose(0, 2, 1, 3).reshape(rows * side, columns * side)
