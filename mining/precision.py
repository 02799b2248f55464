"""The arithmetic a worker's network runs in: ``DEEPMINER_PRECISION`` = auto (the default), fp32, bf16 or fp16.

auto is bf16 autocast on a GPU that supports it, else fp16 autocast with a gradient scaler on a GPU, and
plain fp32 on the CPU (CPU autocast is slower than fp32 for the convolutions here, except bf16 on recent
cores). A forced bf16 or fp16 also runs on the CPU, which is how the tests check mixed precision without a
GPU. Only the network's forward runs in the low precision: its outputs are cast back to float32 before
they reach a loss, a top-k, a threshold or an IoU, so every statistic is tallied in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

__all__ = ["FP32", "PRECISION_CHOICES", "Precision", "select_precision"]

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` fp32, bf16 or fp16 on a ``device_type`` ("cpu" or "cuda")."""

    name: str = "fp32"
    device_type: str = "cpu"

    def __post_init__(self) -> None:
        if self.name not in ("fp32", *_DTYPES):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.name!r}")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype autocast runs matrix products and convolutions in (float32 for fp32)."""
        return _DTYPES.get(self.name, torch.float32)

    def autocast(self) -> AbstractContextManager[object]:
        """A context running the network's forward in this precision; a no-op for fp32."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16's loss scaler (its small exponent range underflows gradients); a pass-through otherwise."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


FP32 = Precision()


def select_precision(
    setting: str, device: torch.device, *, bf16_supported: Callable[[], bool] | None = None
) -> Precision:
    """The precision for ``setting`` (one of PRECISION_CHOICES, case-insensitive) on ``device``.

    bf16_supported: whether the GPU has bf16 (default ``torch.cuda.is_bf16_supported``), asked only for
    auto on CUDA. Raises ValueError for an unknown setting.
    """
    wanted = (setting or "auto").strip().lower()
    if wanted not in PRECISION_CHOICES:
        raise ValueError(f"DEEPMINER_PRECISION must be one of {', '.join(PRECISION_CHOICES)}, got {setting!r}")
    if wanted == "auto":
        if device.type != "cuda":
            return Precision("fp32", device.type)
        has_bf16 = (bf16_supported or torch.cuda.is_bf16_supported)()
        return Precision("bf16" if has_bf16 else "fp16", "cuda")
    return Precision(wanted, device.type)
