"""Which device a worker computes on: ``DEEPMINER_DEVICE`` = auto (CUDA when the worker has a GPU, else
the CPU; the default), cpu, or cuda (refused when there is no GPU, rather than silently slow)."""

from __future__ import annotations

import torch

__all__ = ["DEVICE_CHOICES", "select_device"]

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
