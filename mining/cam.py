"""Class maps over a full image: the trained ResNet as a fully convolutional network, CAM, Grad-CAM, SmoothGrad.

DeepMiner (section 2.3) turns the patch classifier into a fully convolutional network (FCN): the global
average pool is removed and the final linear layer is applied as a 1x1 convolution to layer4's map, so a
whole image of any size gives a logit map (B, C, h, w) and, with a softmax over the classes at each
position, a probability map. Because pooling and the final layer are both linear, the mean of the logit map
over positions is exactly the classifier's output on the same input (the network as trained).

Scale: the network saw patches whose side is 25% of the image width (``patches.patch_geometry``) resized to
the training input size S (``patch_params["input_size"]``). :func:`image_input` rescales the whole image by
the same factor ``S / side`` (antialiased bilinear on the 8-bit image, rounded to 8 bits, as ``data.crop_table``
made the crops), so a finding is as many input pixels wide as it was in training and a 12 MP mammogram runs
at about 0.5 MP. All maps here are at the resolution of layer4 (1/32 of that input) unless upsampled.

Maps, for class c with final-layer weights W (C, U) and layer4 activations A (B, U, h, w):

* CAM (Zhou et al. 2016): ``sum_u W[c, u] A[:, u]``, no bias, no ReLU, no normalisation;
* Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_u alpha_u A[:, u])`` with ``alpha_u`` the mean over positions of
  the gradient of the class score w.r.t. ``A[:, u]``; the class score is the classifier's logit for c on the
  whole rescaled input (the mean of the logit map). For this architecture that makes Grad-CAM exactly
  ``ReLU(CAM) / (h * w)``, but it is computed by autograd as the method defines it;
* SmoothGrad (Smilkov et al. 2017): the mean over ``samples`` noisy copies of the *absolute* input gradient of
  the class score (``absolute=False``: the raw, signed gradient), with Gaussian noise of standard deviation
  ``noise_level * (max - min)`` of the input, drawn from a ``torch.Generator`` seeded with ``seed``. Noise and
  gradient are on the grayscale plane of the network input (the three channels are one image copied), so
  the map is (B, h_in, w_in), at input resolution.

Activations come from a functional forward through the ResNet's own submodules (:func:`layer4_map`), which
registers no hooks and keeps no buffer; forward hooks someone else scoped onto those submodules (such as
``causal.units_zeroed``) still apply, so an ablated FCN is ``with units_zeroed(model, units): fcn_forward(...)``.
The model is a torchvision ResNet or any module with the same child names (:data:`BACKBONE`, ``fc``), or
a torchvision DenseNet (``features``, ``classifier``), whose map is ``relu(features(x))`` as its forward
computes before pooling (:func:`feature_map`); "layer4" below stands for that map too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import PIXEL_MEAN, PIXEL_STD, batches, to_uint8
from .devices import to_device
from .networks import eval_mode, model_device
from .patches import PatchParams, patch_geometry
from .precision import FP32, Precision

__all__ = [
    "BACKBONE",
    "CLASSIFIER_LAYER",
    "FEATURE_LAYER",
    "PAPER_PATCHES",
    "SMOOTHGRAD_NOISE",
    "SMOOTHGRAD_SAMPLES",
    "FCNOutput",
    "class_activation_map",
    "classifier_weights",
    "fcn_forward",
    "feature_map",
    "grad_cam",
    "image_input",
    "layer4_map",
    "logit_map",
    "smoothgrad",
    "training_scale",
    "upsample_maps",
]

FEATURE_LAYER = "layer4"
CLASSIFIER_LAYER = "fc"
# torchvision's ResNet.forward up to (not including) avgpool, in call order.
BACKBONE = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", FEATURE_LAYER)
SMOOTHGRAD_SAMPLES = 20
SMOOTHGRAD_NOISE = 0.15  # share of the input's range (the SmoothGrad paper finds 10-20% works best)
SMOOTHGRAD_BATCH = 4  # noisy copies per backward pass; memory grows with it
PAPER_PATCHES = PatchParams()  # the paper's patch geometry (frozen, so one shared default is safe)


# ------------------------------------------------------------------------------------- scale and input


def training_scale(width: int, input_size: int, params: PatchParams = PAPER_PATCHES) -> float:
    """The factor that maps one patch side of an image ``width`` px wide onto ``input_size`` px."""
    if input_size < 1:
        raise ValueError(f"input_size must be at least 1, got {input_size}")
    side, _ = patch_geometry(width, params)
    return input_size / side


def image_input(pixels: np.ndarray, input_size: int, params: PatchParams = PAPER_PATCHES) -> torch.Tensor:
    """A full image as network input at training scale: float32 (1, 3, h, w), channels_last.

    pixels: (H, W) uint8 or uint16 (uint16 windowed to 8 bits by ``data.to_uint8``, as for training).
    ``h, w = floor(H * s), floor(W * s)`` with ``s = training_scale(W, input_size, params)``; the resampling
    uses exactly ``s`` on both axes (as each crop was resized), antialiased bilinear, then rounds to 8 bits
    and standardises as ``data.to_input`` does. Never builds a float tensor larger than one (H, W) plane.
    """
    array = np.asarray(pixels)
    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be a 2-D uint8 or uint16 image, got {array.dtype} {array.shape}")
    scale = training_scale(array.shape[1], input_size, params)
    height, width = (int(np.floor(n * scale)) for n in array.shape)
    if height < 1 or width < 1:
        raise ValueError(f"a {array.shape[0]}x{array.shape[1]} image is empty at training scale {scale:.4g}")
    image = torch.from_numpy(np.ascontiguousarray(to_uint8(array))).to(torch.float32)[None, None]
    if scale != 1.0:
        image = F.interpolate(
            image,
            scale_factor=scale,
            mode="bilinear",
            antialias=True,
            align_corners=False,
            recompute_scale_factor=False,
        )
        image = image.round_().clamp_(0, 255)
    x = image.div_(255.0).sub_(PIXEL_MEAN).div_(PIXEL_STD)
    return x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------------ the FCN


@dataclass
class FCNOutput:
    """One FCN pass. features: float32 (B, U, h, w) layer4; logits, probabilities: (B, C, h, w)."""

    features: torch.Tensor
    logits: torch.Tensor
    probabilities: torch.Tensor


def layer4_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """layer4's output for network input x (B, 3, H, W): float (B, U, ceil(H/32), ceil(W/32)) for a ResNet.

    Calls the children named in :data:`BACKBONE` in order, exactly as ``ResNet.forward`` does before its
    pool; no hooks, no state. Grad mode and the model's mode are the caller's.
    """
    out = x
    for name in BACKBONE:
        out = model.get_submodule(name)(out)
    return out


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The map the final layer pools, for network input x (B, 3, H, W): float (B, U, h, w).

    A ResNet (any module with ``layer4``): :func:`layer4_map`; a torchvision DenseNet: ``relu(features(x))``.
    """
    if hasattr(model, FEATURE_LAYER):
        return layer4_map(model, x)
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):
        return F.relu(features(x))
    raise ValueError(f"{type(model).__name__} is neither a ResNet (layer4) nor a DenseNet (features)")


def classifier_weights(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The final layer's weight (C, U) and bias (C,) (zeros when it has none): ``fc`` of a ResNet,
    ``classifier`` of a DenseNet."""
    name = CLASSIFIER_LAYER if hasattr(model, CLASSIFIER_LAYER) else "classifier"
    fc = model.get_submodule(name)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"{name} must be an nn.Linear, got {type(fc).__name__}")
    bias = fc.bias if fc.bias is not None else torch.zeros(fc.out_features, device=fc.weight.device)
    return fc.weight, bias


def logit_map(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The final layer as a 1x1 convolution: features (B, U, h, w) -> logits (B, C, h, w).

    Differentiable w.r.t. ``features``; features made in inference mode give an inference tensor.
    """
    weight, bias = classifier_weights(model)
    # An inference tensor cannot join a graph, so the weights (which require grad) must not start one.
    with torch.inference_mode(features.is_inference()):
        return F.conv2d(features, weight.to(features.dtype)[:, :, None, None], bias.to(features.dtype))


def fcn_forward(model: nn.Module, x: torch.Tensor, precision: Precision = FP32) -> FCNOutput:
    """The FCN on network input x (B, 3, H, W): layer4 map, logit map and per-position class probabilities.

    Runs in eval mode (restored after) and inference mode on the device of the model's parameters; the
    outputs stay there. ``probabilities`` is the softmax over classes (dim 1) at each position. The backbone
    runs in ``precision`` (``mining.precision``); its map is cast to float32 before the final layer, so every
    output is float32.
    """
    with eval_mode(model), torch.inference_mode():
        with precision.autocast():
            features = feature_map(model, to_device(x, model_device(model)))
        features = features.float()
        logits = logit_map(model, features)
        return FCNOutput(features, logits, torch.softmax(logits, dim=1))


# ---------------------------------------------------------------------------------------- class maps


def _check_class(model: nn.Module, class_index: int) -> None:
    weight, _ = classifier_weights(model)
    if not 0 <= class_index < weight.shape[0]:
        raise ValueError(f"class {class_index} does not exist: the model has {weight.shape[0]} classes")


def class_activation_map(model: nn.Module, features: torch.Tensor, class_index: int) -> torch.Tensor:
    """CAM of ``class_index``: float (B, h, w) ``sum_u W[c, u] * features[:, u]`` (raw: no bias, ReLU or scaling).

    features: layer4's map (B, U, h, w), e.g. ``fcn_forward(...).features``.
    """
    _check_class(model, class_index)
    weight, _ = classifier_weights(model)
    with torch.no_grad():
        return torch.einsum("u,buhw->bhw", weight[class_index].to(features.dtype), features)


def grad_cam(model: nn.Module, features: torch.Tensor, class_index: int) -> torch.Tensor:
    """Grad-CAM of ``class_index``: float (B, h, w) ``ReLU(sum_u alpha_u * features[:, u])``, unnormalised.

    ``alpha`` (B, U) is the mean over positions of d score / d features, the score being the class's logit
    for the whole input (mean of the logit map). Only the final layer lies between layer4 and the score, so
    the gradient needs no backward pass through the backbone; it works on features made in inference mode.
    No gradient is accumulated in the model's parameters.
    """
    _check_class(model, class_index)
    with torch.inference_mode(False), torch.enable_grad():
        acts = features.detach().clone().requires_grad_(True)
        score = logit_map(model, acts)[:, class_index].mean(dim=(1, 2)).sum()
        (grads,) = torch.autograd.grad(score, acts)
    alpha = grads.mean(dim=(2, 3))
    return torch.relu(torch.einsum("bu,buhw->bhw", alpha, acts.detach()))


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    class_index: int,
    samples: int = SMOOTHGRAD_SAMPLES,
    noise_level: float = SMOOTHGRAD_NOISE,
    seed: int = 0,
    absolute: bool = True,
    batch_size: int = SMOOTHGRAD_BATCH,
) -> torch.Tensor:
    """SmoothGrad of ``class_index`` on network input x (B, 3, H, W): float32 (B, H, W), on the CPU.

    The grayscale plane g = x[:, 0] gets ``samples`` noisy copies ``g + sigma_b * z`` with ``z`` =
    ``torch.randn((B * samples, 1, H, W), generator=torch.Generator().manual_seed(seed))`` (rows image-major,
    as ``repeat_interleave`` orders them) and ``sigma_b = noise_level * (max - min)`` of image b's plane;
    each copy goes through the FCN as three equal channels; the map is the mean over copies of
    ``|d score / d g|`` (``absolute=False``: of the signed gradient), score = the class's whole-input logit.
    Eval mode during the call (restored after); ``batch_size`` copies per backward pass.
    """
    _check_class(model, class_index)
    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be at least 1, got {samples} and {batch_size}")
    gray = x.detach().to("cpu", torch.float32)[:, :1].contiguous()
    count = gray.shape[0]
    spread = gray.amax(dim=(1, 2, 3)) - gray.amin(dim=(1, 2, 3))
    sigma = (noise_level * spread).repeat_interleave(samples).view(-1, 1, 1, 1)
    noise = torch.randn((count * samples, *gray.shape[1:]), generator=torch.Generator().manual_seed(seed))
    noisy = gray.repeat_interleave(samples, dim=0) + noise * sigma
    grads = torch.empty_like(noisy)
    device = model_device(model)
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        for rows in batches(len(noisy), batch_size):
            chunk = noisy[rows].to(device).requires_grad_(True)
            features = feature_map(model, chunk.expand(-1, 3, -1, -1))
            score = logit_map(model, features)[:, class_index].mean(dim=(1, 2)).sum()
            (grad,) = torch.autograd.grad(score, chunk)
            grads[rows] = grad.detach().cpu()
    if absolute:
        grads = grads.abs_()
    return grads.view(count, samples, *gray.shape[2:]).mean(dim=1)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps (..., h, w) bilinearly resized (align_corners=False) to ``size`` = (H, W): float32 (..., H, W).

    Each map cell covers an equal share of the output, so a layer4 map upsampled to the image's size
    lies over the image it came from. Unchanged (as float32) when already that size.
    """
    lead = maps.shape[:-2]
    flat = maps.detach().to(torch.float32).reshape(-1, 1, *maps.shape[-2:])
    if tuple(flat.shape[-2:]) == tuple(size):
        return flat.reshape(*lead, *size)
    if flat.device.type != "cpu":
        return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(*lead, *size)
    # The same kernel F.interpolate runs, writing into a NumPy-allocated buffer: NumPy asks the kernel for
    # huge pages on large arrays, so the full-image maps (8 of 2048 x 1024: 64 MB) take a fraction of the
    # page faults a fresh torch allocation does, about half of this call's time on CPU.
    out = torch.from_numpy(np.empty((flat.shape[0], 1, *size), dtype=np.float32))
    torch.ops.aten.upsample_bilinear2d.out(flat, list(size), False, None, None, out=out)
    return out.reshape(*lead, *size)
