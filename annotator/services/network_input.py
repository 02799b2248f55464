"""The 8-bit pixels a network sees of a stored image or upload (``mining.windowing``): its stored PNG
through the window the model was trained with. Training now uses ``WINDOW_VOI`` (the DICOM's own VOI
where the file carried one) and records it in the model's ``patch_params["window"]``; a model trained
before that records nothing and keeps the percentile window it was trained with."""

from __future__ import annotations

import numpy as np

from mining.windowing import WINDOW_PERCENTILE, WINDOW_VOI, window_uint8

from ..files import read_png
from ..models import Dataset, Image, TrainedModel, UploadedImage
from .renditions import image_voi

__all__ = ["TRAINING_WINDOW", "model_window", "network_pixels", "store_window", "windowed"]

TRAINING_WINDOW = WINDOW_VOI


def model_window(trained: TrainedModel) -> str:
    """The window ``trained``'s inputs had (the percentile window for models that record none)."""
    return str(trained.patch_params.get("window") or WINDOW_PERCENTILE)


def network_pixels(item: Image | UploadedImage, window: str) -> np.ndarray:
    """uint8 (H, W), writable: ``item``'s stored pixels under ``window``."""
    return windowed(read_png(item.file.name), item, window)


def windowed(pixels: np.ndarray, item: Image | UploadedImage, window: str) -> np.ndarray:
    """uint8 (H, W), writable: ``pixels`` (``item``'s stored pixels, already read) under ``window``."""
    return np.array(window_uint8(pixels, image_voi(item), window))


def store_window(dataset: Dataset, window: str) -> str:
    """The window a patch store of ``dataset`` is kept under for crops in ``window``: the percentile one
    when no image of the dataset carries a VOI (both windows give the same bytes there, so one store
    serves models of either)."""
    if window == WINDOW_PERCENTILE or not dataset.images.filter(metadata__dicom__has_key="voi").exists():
        return WINDOW_PERCENTILE
    return window
