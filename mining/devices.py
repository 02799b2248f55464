"""Which device a worker computes on: ``DEEPMINER_DEVICE`` = auto (CUDA when the worker has a GPU, else
the CPU; the default), cpu, or cuda (refused when there is no GPU, rather than silently slow)."""

from __future__ import annotations

import torch

__all__ = ["DEVICE_CHOICES", "select_device", "to_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def select_device(setting: str = "auto", *, cuda_available: bool | None = None) -> torch.device:
    """The torch device for ``setting`` (one of DEVICE_CHOICES, case-insensitive; "cuda:1" picks a GPU).

    cuda_available: whether a GPU is usable (default: ``torch.cuda.is_available()``). Raises ValueError
    for an unknown setting, or cuda asked for where there is none.
    """
    wanted = (setting or "auto").strip().lower()
    has_cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if wanted == "auto":
        return torch.device("cuda" if has_cuda else "cpu")
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted == "cuda" or wanted.startswith("cuda:"):
        if not has_cuda:
            raise ValueError(f"DEEPMINER_DEVICE={setting} but this worker has no usable CUDA device")
        return torch.device(wanted)
    raise ValueError(f"DEEPMINER_DEVICE must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), got {setting!r}")


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``batch`` on ``device``: unchanged when it is already there (the CPU case); for a GPU copied from
    pinned (page-locked) memory without blocking, so the host prepares the next batch while it travels.

    The caching host allocator keeps the pinned copy alive until the transfer has finished.
    """
    if batch.device == device:
        return batch
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
