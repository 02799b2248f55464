"""Whole images of a dataset as arrays for mining/: each image, windowed to 8 bits (``network_input``), resized to one square
network input, with its image-level label. What a whole-image classifier (the hip-fracture classifier)
trains and is evaluated on, where a patch model reads ``patch_data``."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mining.data import to_input, to_uint8

from ..errors import ApplicationError
from ..models import Dataset, Image
from .network_input import network_pixels

__all__ = ["ImageSplit", "image_input", "image_split_load", "resized"]


@dataclass
class ImageSplit:
    """crops: uint8 (N, S, S) the whole images resized; labels: int64 (N,) index into the classes;
    image_ids: their Image keys; metadata: per image, its view and metadata (evaluation breakdowns)."""

    crops: torch.Tensor
    labels: np.ndarray
    image_ids: list[int]
    metadata: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.image_ids)


def resized(pixels: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (size, size): antialiased bilinear, as patches are resized (an image that is not square is
    squeezed; radiographs of one kind share an aspect ratio)."""
    image = torch.from_numpy(np.ascontiguousarray(to_uint8(pixels))).to(torch.float32)[None, None]
    out = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].round_().clamp_(0, 255).to(torch.uint8)


def image_split_load(
    *,
    dataset: Dataset,
    splits: Sequence[str],
    classes: Sequence[str],
    size: int,
    window: str,
    patients: Collection[str] | None = None,
    exclude_patients: Collection[str] = (),
) -> ImageSplit:
    """The labelled images of ``splits`` (those whose label is one of ``classes``), by id; ``patients`` /
    ``exclude_patients`` as in ``patch_data.patch_split_load`` (the validation carve-out); ``window`` the
    grey-level window (``network_input``)."""
    keep = None if patients is None else set(patients)
    drop = set(exclude_patients)
    images = [
        image
        for image in Image.objects.filter(dataset=dataset, split__in=list(splits), label__in=list(classes)).order_by(
            "id"
        )
        if (keep is None or image.patient_id in keep) and image.patient_id not in drop
    ]
    if not images:
        raise ApplicationError(f"dataset {dataset.name!r} has no labelled images in split(s) {', '.join(splits)}")
    index = {name: i for i, name in enumerate(classes)}
    crops = torch.empty((len(images), size, size), dtype=torch.uint8)
    for row, image in enumerate(images):
        crops[row] = resized(network_pixels(image, window), size)
    return ImageSplit(
        crops=crops,
        labels=np.array([index[image.label] for image in images], dtype=np.int64),
        image_ids=[image.pk for image in images],
        metadata=[{"view": image.view, "laterality": image.laterality, **image.metadata} for image in images],
    )


def image_input(pixels: np.ndarray, size: int) -> torch.Tensor:
    """One image as a whole-image classifier's network input: float32 (1, 3, size, size)."""
    return to_input(resized(pixels, size)[None])
