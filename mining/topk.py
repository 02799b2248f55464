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
likewise for the top K), so shards can be mined in parallel, by separate processes, and their
``state_dict()``s merged. For that every shard is built with the whole dataset's total_positions.

``pipeline.run_mining_pass`` feeds it batch by batch; ``masks`` turns a unit's kept response maps
into binarised patch-size masks and boxes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .influence import ranking_keys

__all__ = ["QUANTILE", "TOP_N", "UnitTopK", "quantile_count"]

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
        """Tensors and plain numbers only, so ``torch.save`` / ``torch.load(weights_only=True)`` carry it between processes."""
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

    def nbytes(self) -> dict[str, int]:
        """Bytes held per part: the top-N part is O(U x N x hw), the level part O(U x K).

        Pending level candidates (at most about K more a unit) count with the level part.
        """
        top = sum(t.element_size() * t.numel() for t in (self.scores, self.ids, self.maps))
        levels = sum(t.element_size() * t.numel() for t in (self._levels, self._floor, *self._pending))
        return {"top_n": top, "levels": levels}
