"""What a training run needs to go on after its last finished epoch as if it had never stopped.

``train`` hands a :class:`TrainingState` to its ``on_epoch`` callback after every epoch and takes one back
as ``resume``: the weights, the optimiser's moments, the loop's generator (sampling order, augmentation)
and torch's global RNG, the optimiser step that sets the learning rate, the history and the best epoch so
far. Resuming with it gives the model, history and best epoch an uninterrupted seeded run gives.

``to_bytes`` / ``from_bytes`` are its file form (``torch.save`` of tensors, numbers, strings and lists
only, so it loads with ``weights_only=True``: a state file is data, never code to unpickle).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

__all__ = ["STATE_FORMAT", "TrainingState"]

STATE_FORMAT = "deepminer-training-state/1"


@dataclass
class TrainingState:
    """After epoch ``epoch`` (1-based) of a run of ``config`` (``asdict(TrainConfig)``), at optimiser step
    ``step`` of ``steps_per_epoch`` a epoch.

    model / optimizer: state dicts (CPU tensors); generator / torch_rng: uint8 RNG states; history: one
    record per finished epoch (see ``TrainResult``); best_state: the best epoch's weights, None when it is
    this epoch (they are ``model`` then); best_val_probs: float32 (M, C) of the best epoch; scaler: the
    GradScaler's state (empty unless fp16).
    """

    config: dict[str, Any]
    epoch: int
    step: int
    steps_per_epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    generator: torch.Tensor
    torch_rng: torch.Tensor
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_auc: float | None
    best_state: dict[str, torch.Tensor] | None
    best_val_probs: np.ndarray
    scaler: dict[str, Any] = field(default_factory=dict)  # fp16's loss scale and its growth tracker; else {}

    def to_bytes(self) -> bytes:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # asdict would deep-copy the weights
        data["best_val_probs"] = torch.from_numpy(np.ascontiguousarray(self.best_val_probs))
        buffer = io.BytesIO()
        torch.save({"format": STATE_FORMAT, **data}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingState:
        """Raises ValueError for bytes that are not a training state."""
        try:
            loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a file that is not its own
            raise ValueError(f"not a readable training state: {error}") from error
        if not isinstance(loaded, dict) or loaded.pop("format", None) != STATE_FORMAT:
            raise ValueError(f"not a training state ({STATE_FORMAT})")
        loaded["best_val_probs"] = loaded["best_val_probs"].numpy()
        return cls(**loaded)

    def best_weights(self) -> dict[str, torch.Tensor]:
        return self.model if self.best_state is None else self.best_state
