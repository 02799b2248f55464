"""Patches as network input: crop once into a compact uint8 tensor, normalise per batch.

Every mining step (training, evaluation, influence, top activations) sees patches the same way:
`PatchTable` says where the patches are, `crop_table` cuts them into one uint8 tensor (N, S, S),
and `to_input` turns a batch of it into the float, 3-channel, channels_last tensor a torchvision
ResNet expects. Keeping the crops as uint8 costs S*S bytes a patch (16 KiB at 128 px).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .patches import crop_patches
from .windowing import percentile_uint8

__all__ = ["PatchTable", "batches", "crop_table", "resize_uint8", "to_input", "to_uint8"]

# Grayscale patches are standardised with one fixed mean/std, the same at train and mining time.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


@dataclass
class PatchTable:
    """Where the patches are.

    boxes: int (N, 4) (x0, y0, x1, y1) in full-image pixels; all boxes have the same side S.
    image_index: int (N,) index of each patch's image in the caller's image list.
    labels: int64 (N,) class index (or -1 when unknown).
    """

    boxes: np.ndarray
    image_index: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def side(self) -> int:
        return int(self.boxes[0, 2] - self.boxes[0, 0]) if len(self.boxes) else 0

    def subset(self, rows: np.ndarray) -> PatchTable:
        return PatchTable(self.boxes[rows], self.image_index[rows], self.labels[rows])


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """8-bit view of an image: uint8 unchanged (an image already windowed, ``windowing.window_uint8``),
    uint16 scaled by its own 0.5-99.5 percentile window."""
    return percentile_uint8(pixels)


def crop_table(images: Sequence[np.ndarray], table: PatchTable, size: int | None = None) -> torch.Tensor:
    """All patches of `table` as uint8 (N, size, size); `images[i]` is a 2-D uint8/uint16 array.

    Patches are 25% of their image's width, so images of different widths give different sides:
    each is resized (antialiased bilinear) to `size`, by default the first patch's side.
    """
    size = size or table.side
    out = torch.empty((len(table), size, size), dtype=torch.uint8)
    for index in np.unique(table.image_index):
        rows = np.flatnonzero(table.image_index == index)
        crops = torch.from_numpy(np.ascontiguousarray(crop_patches(to_uint8(images[int(index)]), table.boxes[rows])))
        if crops.shape[-1] != size:
            crops = resize_uint8(crops, size)
        out[torch.from_numpy(rows)] = crops
    return out


def resize_uint8(crops: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, s, s) -> uint8 (N, size, size), antialiased bilinear."""
    resized = torch.nn.functional.interpolate(
        crops.unsqueeze(1).float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return resized.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)


def to_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, S, S) -> float32 (B, 3, S, S), standardised, channels_last (faster convolutions on CPU)."""
    x = batch.to(torch.float32).div_(255.0).sub_(PIXEL_MEAN).div_(PIXEL_STD)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering range(n)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
