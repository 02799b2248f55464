"""Top activations of every final-layer unit, in one streaming pass over the patches.

``UnitTopK`` is a running statistic in the style of dissect's ``runningstats``: each batch of
features is merged into per-unit state with ``torch.topk`` over the concatenation of the state
and the batch, so nothing larger than one batch's activations is ever held. Per unit it keeps

* the top-N inputs by max activation: score, input id and the input's whole response map for
  that unit, whose argmax is the cell shown (O(units x N x h x w), independent of the number
  of inputs);
* the K = ceil(quantile x total_positions) largest activations over all spatial positions of
  all inputs, whose smallest is the unit's top-``quantile`` threshold (Network Dissection's
  top 0.5%). Because total_positions (inputs x h x w) is known before the pass, this threshold
  is **exact**, not an estimate: it is the K-th largest value of the unit over the dataset. Its
  state grows with the dataset (quantile x positions values a unit), a small fraction of the
  activations.

Both parts merge exactly across shards (the top N of shard top-Ns is the top N of the union, and
likewise for the top K), so a Celery chord can mine shards in parallel and merge their
``state_dict()``s. For that every shard is built with the whole dataset's total_positions.

``run_mining_pass`` drives one pass of a feature extractor returning ``{"features", "logits"}``
and feeds both ``UnitTopK`` and ``influence.InfluenceTally``; ``unit_masks`` turns a unit's kept
response maps into binarised patch-size masks and boxes for the survey.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import batches, to_input
from .influence import TOP_UNITS_PER_INPUT, InfluenceTally, ranking_keys
from .progress import CancelFn, ProgressFn, check_cancel, never_cancelled, no_progress

__all__ = ["MiningResult", "UnitTopK", "heat_tiles", "run_mining_pass", "to_image_box", "unit_masks", "unit_responses"]

TOP_N = 64
QUANTILE = 0.005  # Network Dissection binarises at the unit's top 0.5% activation


def quantile_count(quantile: float, total_positions: int) -> int:
    """K = ceil(quantile x total_positions), at least 1; the slack keeps 0.005 x 16000 at 80, not 81."""
    return max(1, math.ceil(quantile * total_positions - 1e-9))


class UnitTopK:
    """Per-unit top-N inputs and exact top-quantile threshold, merged batch by batch.

    State (U = units, N = top_n, K = quantile_count(quantile, total_positions)), each unit's
    top N sorted by score descending, equal scores by input id ascending:
      scores float32 (U, N), ids int64 (U, N), maps float32 (U, N, h*w) (see response_maps),
      level_values float32 (U, K) unsorted, plus candidates not yet folded into them.
    Slots not yet filled hold score -inf and id -1; ``kept`` says how many are real. Input ids
    must lie in [0, 2**31).
    """

    def __init__(self, num_units: int, top_n: int = TOP_N, quantile: float = QUANTILE, *, total_positions: int):
        if total_positions < 1 or not 0 < quantile <= 1:
            raise ValueError("need total_positions >= 1 and 0 < quantile <= 1")
        self.num_units, self.top_n, self.quantile = num_units, top_n, quantile
        self.total_positions = total_positions
        self.inputs_seen = 0
        self.positions_seen = 0
        self.map_size: tuple[int, int] | None = None  # (h, w), known from the first batch
        self.scores = torch.full((num_units, top_n), -math.inf)
        self.ids = torch.full((num_units, top_n), -1, dtype=torch.int64)
        self.maps = torch.zeros((num_units, top_n, 0))
        self._levels = torch.full((num_units, quantile_count(quantile, total_positions)), -math.inf)
        self._floor = torch.full((num_units, 1), -math.inf)  # (U, 1) smallest of _levels
        self._pending: list[torch.Tensor] = []  # (U, m) candidates for _levels, folded in lazily

    # ------------------------------------------------------------------ results

    @property
    def kept(self) -> int:
        """How many of the top-N slots hold real inputs: min(top_n, inputs seen)."""
        return min(self.top_n, self.inputs_seen)

    @property
    def k_values(self) -> int:
        return self._levels.shape[1]

    @property
    def level_values(self) -> torch.Tensor:
        """float32 (U, K), unsorted: each unit's K largest activations seen so far."""
        self._fold_pending()
        return self._levels

    def thresholds(self) -> torch.Tensor:
        """float32 (U,): each unit's K-th largest activation over all positions seen.

        With fewer than K positions seen (an unfinished or mis-sized pass) it is the smallest seen.
        """
        k = min(self.k_values, self.positions_seen)
        if k == 0:
            return torch.full((self.num_units,), math.inf)
        if k == self.k_values:  # all K slots hold real values: the K-th largest is their minimum
            return self.level_values.min(dim=1).values
        return torch.topk(self.level_values, k, dim=1).values[:, -1]

    def response_maps(self) -> torch.Tensor:
        """float32 (U, N, h, w): each kept input's whole response map for the unit."""
        h, w = self.map_size or (0, 0)
        return self.maps.view(self.num_units, self.top_n, h, w)

    def locations(self) -> torch.Tensor:
        """int64 (U, N, 2): the (h, w) argmax cell (first in row-major order) of each response map."""
        width = self.map_size[1] if self.map_size else 1
        cells = self.maps.argmax(dim=2) if self.maps.shape[2] else torch.zeros_like(self.ids)
        return torch.stack((cells // width, cells % width), dim=-1)

    # ------------------------------------------------------------------ streaming

    def update(self, features: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Merge a batch: features (B, U, h, w), input_ids int64 (B,) global patch indices.

        Returns the per-input max activation float32 (B, U), which the caller needs for influence.
        """
        batch, units, h, w = features.shape
        self._check_shape(units, (h, w))
        ids = torch.as_tensor(input_ids, dtype=torch.int64)
        if len(ids) != batch or (batch and (ids.min() < 0 or ids.max() >= 2**31)):
            raise ValueError("need one input id in [0, 2**31) per input")
        features = features.detach().to(torch.float32)
        max_act = features.amax(dim=(2, 3))  # (B, U); far cheaper than max() with indices
        # (U, B, hw): a view for NCHW and for channels_last features alike.
        by_unit = features.flatten(2).permute(1, 0, 2)
        self._merge_top(max_act.T, ids.unsqueeze(0).expand(units, batch), by_unit)
        self._add_levels(by_unit.reshape(units, -1), max_act)  # (U, B*hw), a view for channels_last
        self.inputs_seen += batch
        self.positions_seen += batch * h * w
        return max_act

    def merge(self, other: UnitTopK) -> None:
        """Add another shard's state; exact, as if one pass had seen both shards' inputs.

        Both must have been built with the same total_positions (the whole dataset's): a shard
        then keeps the dataset-wide K largest of its own values, which is what the merged top K
        can need from it.
        """
        mine = (self.num_units, self.top_n, self.quantile, self.total_positions)
        if (other.num_units, other.top_n, other.quantile, other.total_positions) != mine:
            raise ValueError("can only merge UnitTopK with the same units, top_n, quantile and total_positions")
        if other.map_size is None:
            return
        self._check_shape(other.num_units, other.map_size)
        self._pending.append(other.level_values)
        self._fold_pending()
        self._merge_top(other.scores, other.ids, other.maps)
        self.inputs_seen += other.inputs_seen
        self.positions_seen += other.positions_seen

    def _check_shape(self, units: int, map_size: tuple[int, int]) -> None:
        if units != self.num_units:
            raise ValueError(f"expected {self.num_units} units, got {units}")
        if self.map_size is None:
            self.map_size = map_size
            self.maps = torch.zeros((units, self.top_n, map_size[0] * map_size[1]))
        elif self.map_size != map_size:
            raise ValueError(f"response maps changed size from {self.map_size} to {map_size}")

    def _merge_top(self, scores: torch.Tensor, ids: torch.Tensor, maps: torch.Tensor) -> None:
        """Keep the top N of state + M candidates: scores float32 (U, M), ids (U, M), maps (U, M, hw)."""
        all_scores = torch.cat((self.scores, scores), dim=1)
        all_ids = torch.cat((self.ids, ids), dim=1)
        # One topk over (score desc, id asc) keys: ties resolve the same way in any shard order.
        keep = torch.topk(ranking_keys(all_scores, all_ids), self.top_n, dim=1).indices  # (U, N)
        self.scores = all_scores.gather(1, keep)
        self.ids = all_ids.gather(1, keep)
        self.maps = self._gather_maps(keep, maps)

    def _gather_maps(self, keep: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """(U, N, hw) maps of the kept columns; copies only N maps a unit, never the whole batch."""
        hw = self.maps.shape[2]
        from_old = keep < self.top_n
        old = self.maps.gather(1, keep.clamp(max=self.top_n - 1).unsqueeze(2).expand(-1, -1, hw))
        new = maps.gather(1, (keep - self.top_n).clamp(min=0).unsqueeze(2).expand(-1, -1, hw))
        return torch.where(from_old.unsqueeze(2), old, new)

    def _add_levels(self, values: torch.Tensor, max_act: torch.Tensor) -> None:
        """Offer every position of a batch, values (U, B*hw), to each unit's K largest; max_act (B, U).

        Only values above a unit's current K-th largest (the floor) can enter, and after the first
        batches there are few: each batch contributes just its m largest per unit (m = the most
        any unit has above its floor), and a topk folds the pending candidates into the K values
        only once they add up to K, so a late batch costs one comparison and a small topk.
        """
        if not bool((max_act > self._floor.T).any()):
            return
        values = values.contiguous()  # row-wise comparisons and topk run several times faster
        m = int((values > self._floor).sum(dim=1).max())
        m = min(m, self.k_values)  # more than K from one batch can never all stay
        top = torch.topk(values, m, dim=1, sorted=False).values if m < values.shape[1] else values.clone()
        self._pending.append(top)
        if sum(p.shape[1] for p in self._pending) >= self.k_values:
            self._fold_pending()

    def _fold_pending(self) -> None:
        if not self._pending:
            return
        merged = torch.cat((self._levels, *self._pending), dim=1)
        self._levels = torch.topk(merged, self.k_values, dim=1, sorted=False).values
        self._floor = self._levels.min(dim=1, keepdim=True).values
        self._pending = []

    # ------------------------------------------------------------------ serialisation

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain numbers only, so ``torch.save`` can turn it into bytes for a chord."""
        return {
            "num_units": self.num_units,
            "top_n": self.top_n,
            "quantile": self.quantile,
            "total_positions": self.total_positions,
            "inputs_seen": self.inputs_seen,
            "positions_seen": self.positions_seen,
            "map_size": list(self.map_size) if self.map_size else None,
            "scores": self.scores.clone(),
            "ids": self.ids.clone(),
            "maps": self.maps.clone(),
            "level_values": self.level_values.clone(),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> UnitTopK:
        topk = cls(
            int(state["num_units"]),
            int(state["top_n"]),
            float(state["quantile"]),
            total_positions=int(state["total_positions"]),
        )
        topk.inputs_seen = int(state["inputs_seen"])
        topk.positions_seen = int(state["positions_seen"])
        map_size = state["map_size"]
        topk.map_size = (int(map_size[0]), int(map_size[1])) if map_size else None
        topk.scores = torch.as_tensor(state["scores"]).clone()
        topk.ids = torch.as_tensor(state["ids"]).clone()
        topk.maps = torch.as_tensor(state["maps"]).clone()
        topk._levels = torch.as_tensor(state["level_values"]).clone()
        topk._floor = topk._levels.min(dim=1, keepdim=True).values
        return topk

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> UnitTopK:
        return cls.from_state_dict(torch.load(io.BytesIO(data), weights_only=True))

    def nbytes(self) -> dict[str, int]:
        """Bytes held per part: the top-N part is O(U x N x hw), the level part O(U x K).

        Pending level candidates (at most about K more a unit) count with the level part.
        """
        top = sum(t.element_size() * t.numel() for t in (self.scores, self.ids, self.maps))
        levels = sum(t.element_size() * t.numel() for t in (self._levels, self._floor, *self._pending))
        return {"top_n": top, "levels": levels}


# ---------------------------------------------------------------------- the pass


@dataclass
class MiningResult:
    """topk: per-unit top activations; influence: per-class unit frequencies; probs float32 (N, C)."""

    topk: UnitTopK
    influence: InfluenceTally
    probs: np.ndarray


Patches = torch.Tensor | Iterable[torch.Tensor]


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
    """uint8 (B, S, S) batches of one big tensor (sliced, no copy) or of an iterable of batches."""
    if isinstance(patches, torch.Tensor):
        return (patches[rows] for rows in batches(len(patches), batch_size))
    return patches


def run_mining_pass(
    extractor: nn.Module,
    patches: Patches,
    fc_weight: torch.Tensor | np.ndarray,
    *,
    input_ids: torch.Tensor | np.ndarray | None = None,
    num_inputs: int | None = None,
    dataset_size: int | None = None,
    batch_size: int = 64,
    top_n: int = TOP_N,
    quantile: float = QUANTILE,
    per_image_top: int = TOP_UNITS_PER_INPUT,
    progress: ProgressFn = no_progress,
    cancelled: CancelFn = never_cancelled,
) -> MiningResult:
    """One inference pass collecting top activations, influence counts and class probabilities.

    extractor: module mapping float (B, 3, S, S) to {"features": (B, U, h, w), "logits": (B, C)};
    it is put in eval mode. patches: uint8 (N, S, S), or an iterable of uint8 (B, S, S) batches
    (then ``num_inputs`` is required, batch_size is theirs, and they may be generated lazily so
    the input never has to fit in memory). fc_weight: (C, U). input_ids: int64 (N,) global patch indices
    (default 0..N-1). dataset_size: inputs over all shards of a chord, which sets the quantile's
    K so shard results merge exactly (default: this pass's N). Raises ``Cancelled`` between
    batches when ``cancelled()`` says so.
    """
    total = len(patches) if isinstance(patches, torch.Tensor) else num_inputs
    if total is None:
        raise ValueError("num_inputs is required when patches is an iterable of batches")
    ids = torch.arange(total) if input_ids is None else torch.as_tensor(input_ids, dtype=torch.int64)
    if len(ids) != total:
        raise ValueError(f"{len(ids)} input ids for {total} patches")
    weight = torch.as_tensor(fc_weight, dtype=torch.float32).detach()
    extractor.eval()
    topk: UnitTopK | None = None
    influence = InfluenceTally(weight.shape[0], weight.shape[1], per_image_top)
    probs: list[torch.Tensor] = []
    done = 0
    with torch.inference_mode():
        for batch in _uint8_batches(patches, batch_size):
            check_cancel(cancelled)
            if done + len(batch) > total:
                raise ValueError(f"got more than the {total} patches announced")
            out = extractor(to_input(batch))
            features, logits = out["features"], out["logits"]
            if topk is None:  # h and w are only known once the network has run
                positions = (dataset_size or total) * features.shape[2] * features.shape[3]
                topk = UnitTopK(features.shape[1], top_n, quantile, total_positions=positions)
            with _one_thread():
                max_act = topk.update(features, ids[done : done + len(batch)])
                influence.update(max_act, logits, weight)
                probs.append(torch.softmax(logits.float(), dim=1))
            done += len(batch)
            progress(done, total, "mining top activations")
    if topk is None or done != total:
        raise ValueError(f"expected {total} patches, got {done}")
    return MiningResult(topk, influence, torch.cat(probs).numpy())


# ---------------------------------------------------------------------- masks and boxes


def unit_masks(
    topk: UnitTopK,
    unit: int,
    patch_side: int,
    *,
    thresholds: torch.Tensor | None = None,
    locations: torch.Tensor | None = None,
    responses: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Binarised, upsampled response maps of a unit's kept inputs and their boxes (pass `responses`
    from `unit_responses` when the caller needs them too).

    Returns masks bool (n, S, S): the unit's response map of each kept input (rank order),
    bilinearly upsampled to S = patch_side (align_corners=False) and thresholded ``> threshold``
    (the unit's top-quantile level, as Network Dissection does), and boxes int64 (n, 4)
    (x0, y0, x1, y1), x1/y1 exclusive, in patch pixels: the mask's bounding box, or for an empty
    mask the argmax cell's box scaled to the patch.
    """
    n = topk.kept
    if n == 0:
        return np.zeros((0, patch_side, patch_side), dtype=bool), np.zeros((0, 4), dtype=np.int64)
    # Looping over every unit? Pass thresholds() and locations() computed once: each costs a pass over all units.
    thresholds = topk.thresholds() if thresholds is None else thresholds
    locations = topk.locations() if locations is None else locations
    up = unit_responses(topk, unit, patch_side) if responses is None else responses
    masks = (up > thresholds[unit]).numpy()
    cells = locations[unit, :n].numpy()
    return masks, _mask_boxes(masks, cells, topk.map_size or (1, 1))


def unit_responses(topk: UnitTopK, unit: int, patch_side: int) -> torch.Tensor:
    """A unit's response maps on its kept inputs, float (n, S, S), bilinearly upsampled to S = patch_side
    (align_corners=False): what `unit_masks` thresholds and `heat_tiles` colours."""
    maps = topk.response_maps()[unit, : topk.kept]  # (n, h, w)
    return F.interpolate(maps.unsqueeze(1), size=(patch_side, patch_side), mode="bilinear", align_corners=False)[:, 0]


def heat_tiles(responses: torch.Tensor, peak: float) -> np.ndarray:
    """Response maps (n, S, S) as uint8 heat tiles: 255 at the unit's peak activation, 0 at or below zero."""
    if peak <= 0:
        return np.zeros(tuple(responses.shape), dtype=np.uint8)
    return (responses / peak).clamp_(0, 1).mul_(255).round_().to(torch.uint8).numpy()


def _mask_boxes(masks: np.ndarray, cells: np.ndarray, map_size: tuple[int, int]) -> np.ndarray:
    """Bounding boxes int64 (n, 4) of masks (n, S, S); cells int (n, 2) (h, w) for empty masks."""
    n, side, _ = masks.shape
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (n, S) each
    boxes = np.empty((n, 4), dtype=np.int64)
    boxes[:, 0] = cols.argmax(axis=1)
    boxes[:, 1] = rows.argmax(axis=1)
    boxes[:, 2] = side - cols[:, ::-1].argmax(axis=1)
    boxes[:, 3] = side - rows[:, ::-1].argmax(axis=1)
    empty = ~rows.any(axis=1)
    if empty.any():
        boxes[empty] = _cell_boxes(cells[empty], map_size, side)
    return boxes


def _cell_boxes(cells: np.ndarray, map_size: tuple[int, int], side: int) -> np.ndarray:
    """Patch-pixel boxes int64 (n, 4) of feature cells int (n, 2) (h, w), rounded outwards."""
    h, w = map_size
    y, x = cells[:, 0], cells[:, 1]
    x0, y0 = x * side // w, y * side // h
    x1, y1 = -(-(x + 1) * side // w), -(-(y + 1) * side // h)  # ceiling division
    return np.stack((x0, y0, x1, y1), axis=1).astype(np.int64)


def to_image_box(patch_box: np.ndarray, box_in_patch: np.ndarray, patch_side: int | None = None) -> np.ndarray:
    """Boxes in patch pixels -> full-image pixels.

    patch_box: (4,) or (n, 4) (x0, y0, x1, y1) of the patch in the image; box_in_patch: (4,) or
    (n, 4) in the network input's pixels. patch_side: the input's side when the patch was resized
    for the network (default: the patch's own side, no scaling). Returns int64 of the broadcast shape.
    """
    patch = np.asarray(patch_box, dtype=np.int64)
    inner = np.asarray(box_in_patch, dtype=np.int64)
    origin = np.concatenate((patch[..., :2], patch[..., :2]), axis=-1)
    if patch_side is None:
        return origin + inner
    scale = (patch[..., 2:3] - patch[..., 0:1]) / patch_side
    return origin + np.rint(inner * scale).astype(np.int64)
