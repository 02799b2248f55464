"""The networks DeepMiner opens up: torchvision ResNets (and DenseNet-121, the hip-fracture paper's
whole-image classifier) with a new final layer, and their checkpoints.

Nothing here downloads: a network starts from random weights (``weights=None``) unless the caller
names a local weights file, a state dict of the same torchvision architecture whose final layer may
have any number of classes (an ImageNet file has 1000); everything but the final layer is loaded,
strictly. A checkpoint is one ``torch.save`` file holding the architecture, the class names, the
patch geometry, the training history and the weights, so a model can be rebuilt from it alone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models
from torchvision.models.feature_extraction import create_feature_extractor

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_FORMAT",
    "RESNETS",
    "UNITS",
    "NetworkInfo",
    "build_network",
    "checkpoint_load",
    "checkpoint_save",
    "eval_mode",
    "feature_extractor",
    "load_weights_file",
    "model_device",
    "network_layers",
]

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121")
# Patch models must be ResNets: mining reads layer4 and fc by name. DenseNet-121 classifies whole images.
RESNETS = ARCHITECTURES[:5]
CHECKPOINT_FORMAT = "deepminer-checkpoint/1"

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
    "resnet101": models.resnet101,
    "resnet152": models.resnet152,
    "densenet121": models.densenet121,
}
# Width of the last feature map (= the final layer's input): basic blocks end in 512 channels,
# bottleneck blocks in 4 * 512, DenseNet-121 in 1024. Known without building the (slow-ish) deep networks.
UNITS: dict[str, int] = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "densenet121": 1024,
}
_SHOWN_KEYS = 5  # how many offending keys an error message lists


@dataclass
class NetworkInfo:
    """A network and what the mining code needs to know about it.

    feature_layer: the last convolutional block, whose ``num_units`` channels are DeepMiner's units;
    its output is float (B, num_units, S/32, S/32) for input (B, 3, S, S) ("layer4" of a ResNet,
    "features" of a DenseNet, whose forward applies a ReLU to it before pooling).
    classifier_layer: the final Linear(num_units, num_classes) on the globally pooled features.
    """

    model: nn.Module
    architecture: str
    num_classes: int
    initialisation: str  # "random", "weights file <path>" or "checkpoint <path>"
    num_units: int
    feature_layer: str = "layer4"
    classifier_layer: str = "fc"


def build_network(architecture: str, num_classes: int, weights_path: str | Path | None = None) -> NetworkInfo:
    """A torchvision ResNet or DenseNet-121 with a fresh Linear(num_units, num_classes) final layer.

    Random weights unless ``weights_path`` names a state dict of the same architecture (see
    :func:`load_weights_file`). Raises ValueError for an unknown architecture or a bad weights file.
    """
    if architecture not in _BUILDERS:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    model = _BUILDERS[architecture](weights=None)  # always None: nothing may be downloaded
    feature_layer, classifier_layer = network_layers(architecture)
    final = model.get_submodule(classifier_layer)
    assert isinstance(final, nn.Linear)
    num_units = final.in_features
    setattr(model, classifier_layer, nn.Linear(num_units, num_classes))
    initialisation = "random"
    if weights_path is not None:
        load_weights_file(model, architecture, weights_path)
        initialisation = f"weights file {weights_path}"
    return NetworkInfo(model, architecture, num_classes, initialisation, num_units, feature_layer, classifier_layer)


def network_layers(architecture: str) -> tuple[str, str]:
    """(feature layer, classifier layer) names of ``architecture``."""
    return ("features", "classifier") if architecture.startswith("densenet") else ("layer4", "fc")


def load_weights_file(model: nn.Module, architecture: str, path: str | Path) -> None:
    """Load every weight of ``path`` except the final layer's into ``model`` (in place).

    The file is a state dict, or a dict holding one under "state_dict" or "model" (a "module."
    prefix from DataParallel is dropped). All keys but the final layer's (fc.* of a ResNet, classifier.*
    of a DenseNet) must match the model's, with the same shapes; otherwise ValueError names the missing,
    unexpected and mis-shaped keys.
    """
    weights = _read_state_dict(Path(path))
    final = network_layers(architecture)[1]
    final_keys = (f"{final}.weight", f"{final}.bias")
    own = {key: value for key, value in model.state_dict().items() if key not in final_keys}
    given = {key: value for key, value in weights.items() if key not in final_keys}
    problems = _key_problems(own, given)
    if problems:
        raise ValueError(f"{path} does not hold {architecture} weights: {'; '.join(problems)}")
    model.load_state_dict(given, strict=False)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ValueError(f"weights file not found: {path}")
    try:
        # weights_only: a weights file is data, never code to unpickle.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a state dict
        raise ValueError(f"{path} is not a readable state dict: {error}") from error
    if isinstance(loaded, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(loaded.get(wrapper), Mapping):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _key_problems(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    misshaped = sorted(k for k in set(own) & set(given) if own[k].shape != given[k].shape)
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
        if keys:
            more = f", … ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else ""
            problems.append(f"{what} keys {', '.join(keys[:_SHOWN_KEYS])}{more}")
    return problems


def checkpoint_save(
    path: str | Path,
    *,
    model: nn.Module,
    architecture: str,
    classes: Sequence[str],
    patch_params: dict,
    epoch: int,
    metrics: dict,
    history: list,
    config: dict,
) -> None:
    """Write a self-describing checkpoint atomically: a reader sees the old file or the new, never half."""
    path = Path(path)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "architecture": architecture,
        "num_classes": len(classes),
        "classes": list(classes),
        "state_dict": {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()},
        "patch_params": dict(patch_params),
        "epoch": int(epoch),
        "metrics": dict(metrics),
        "history": list(history),
        "config": dict(config),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def checkpoint_load(path: str | Path) -> tuple[NetworkInfo, dict[str, Any]]:
    """Rebuild the network a checkpoint describes (random init, then its weights; no download).

    Returns the network, in eval mode, and the checkpoint dict (its "state_dict" included).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a DeepMiner checkpoint ({CHECKPOINT_FORMAT})")
    info = build_network(checkpoint["architecture"], checkpoint["num_classes"])
    info.model.load_state_dict(checkpoint["state_dict"])
    info.model.eval()
    info.initialisation = f"checkpoint {path}"
    return info, checkpoint


def feature_extractor(model: nn.Module) -> nn.Module:
    """The model as a module returning {"features": layer4 output (B, U, h, w), "logits": (B, C)}.

    One forward pass gives both the last convolutional block's activations and the decision,
    with no global hooks (torchvision's FX-based feature extraction).
    """
    return create_feature_extractor(model, {"layer4": "features", "fc": "logits"})


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (batch norm uses and never updates its running statistics), then every module's own
    mode back, so a caller's train/eval settings survive an explanation or an ablation."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
