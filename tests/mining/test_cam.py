"""mining.cam: the FCN, CAM, Grad-CAM and SmoothGrad, on hand-built networks and against the field's code.

The hand-built network is ResNet-shaped with every block the identity, so layer4's map *is* the input
(B, U, h, w) and its maps are sums of chosen small integers, exact in float32. The reference checks run
one random resnet18 (seed 0) through pytorch-grad-cam (CAM as its ``BaseCAM`` with the final layer's
weights as the channel weights, and ``GradCAM``) and Captum (``LayerActivation``, ``NoiseTunnel`` over
``Saliency`` with torch's global generator seeded like ours, so both draw the same noise).
"""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from captum.attr import LayerActivation, NoiseTunnel, Saliency
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torch.nn import functional as F

from mining.cam import (
    BACKBONE,
    class_activation_map,
    classifier_weights,
    fcn_forward,
    grad_cam,
    image_input,
    layer4_map,
    logit_map,
    smoothgrad,
    training_scale,
    upsample_maps,
)
from mining.causal import units_zeroed
from mining.data import resize_uint8, to_input, to_uint8
from mining.networks import build_network

TOL = 1e-5

# The identity network's fc: 3 classes x 2 units.
WEIGHT = [[1.0, -1.0], [2.0, 0.0], [0.0, 0.0]]
BIAS = [0.0, 1.0, -1.0]
# Its input, = layer4's map: 2 units over a 2 x 2 grid.
UNIT0 = [[1.0, 2.0], [0.0, -1.0]]
UNIT1 = [[3.0, 0.0], [1.0, 1.0]]


class IdentityResNet(nn.Module):
    """ResNet-shaped: every child of BACKBONE is the identity, then fc on the pooled map."""

    def __init__(self, weight: list[list[float]], bias: list[float]) -> None:
        super().__init__()
        for name in BACKBONE:
            setattr(self, name, nn.Identity())
        self.fc = nn.Linear(len(weight[0]), len(weight))
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(weight))
            self.fc.bias.copy_(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(layer4_map(self, x).mean(dim=(2, 3)))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # These networks are tiny: on a shared machine, OpenMP's spinning threads cost more than they give.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def identity_net() -> IdentityResNet:
    return IdentityResNet(WEIGHT, BIAS).eval()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_network("resnet18", 3).model.eval()


def hand_features() -> torch.Tensor:
    return torch.tensor([UNIT0, UNIT1])[None]  # (1, 2, 2, 2)


def network_input(height: int, width: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    gray = torch.randint(0, 256, (1, height, width), generator=gen, dtype=torch.uint8)
    return to_input(gray)


# ------------------------------------------------------------------------------ hand-built network


def test_cam_is_the_weighted_sum_of_layer4_maps(identity_net: IdentityResNet) -> None:
    features = fcn_forward(identity_net, hand_features()).features
    assert torch.equal(features, hand_features())
    # class 0: unit0 - unit1; class 1: 2 * unit0; class 2: all zero. No bias.
    assert class_activation_map(identity_net, features, 0).tolist() == [[[-2.0, 2.0], [-1.0, -2.0]]]
    assert class_activation_map(identity_net, features, 1).tolist() == [[[2.0, 4.0], [0.0, -2.0]]]
    assert class_activation_map(identity_net, features, 2).tolist() == [[[0.0, 0.0], [0.0, 0.0]]]
    with pytest.raises(ValueError, match="class 3 does not exist"):
        class_activation_map(identity_net, features, 3)


def test_probability_map_is_the_softmax_at_each_position(identity_net: IdentityResNet) -> None:
    out = fcn_forward(identity_net, hand_features())
    expected_logits = [[[-2.0, 2.0], [-1.0, -2.0]], [[3.0, 5.0], [1.0, -1.0]], [[-1.0, -1.0], [-1.0, -1.0]]]
    assert out.logits[0].tolist() == expected_logits
    assert logit_map(identity_net, out.features)[0].tolist() == expected_logits  # inference-mode features too
    for i in range(2):
        for j in range(2):
            z = [math.exp(expected_logits[c][i][j]) for c in range(3)]
            expected = [v / sum(z) for v in z]
            assert out.probabilities[0, :, i, j].tolist() == pytest.approx(expected, abs=1e-7)
    # The mean of the logit map is the classifier on the pooled map (the network as trained).
    assert out.logits.mean(dim=(2, 3))[0].tolist() == [-0.75, 2.0, -1.0]
    assert identity_net(hand_features())[0].tolist() == [-0.75, 2.0, -1.0]


def test_grad_cam_is_relu_cam_over_positions_here(identity_net: IdentityResNet) -> None:
    # d mean(logit map of c) / d A[u, i, j] = W[c, u] / (h w), so alpha = W[c] / 4 and Grad-CAM = ReLU(CAM) / 4.
    features = fcn_forward(identity_net, hand_features()).features  # made in inference mode
    assert grad_cam(identity_net, features, 0).tolist() == [[[0.0, 0.5], [0.0, 0.0]]]
    assert grad_cam(identity_net, features, 1).tolist() == [[[0.5, 1.0], [0.0, 0.0]]]
    assert all(p.grad is None for p in identity_net.parameters())


def test_smoothgrad_of_a_linear_network_is_its_weight(identity_net: IdentityResNet) -> None:
    # Input (1, 3, 2, 2) with equal channels: units 0 and 1 both see the plane g, so the class-1 score is
    # mean(2 g) and d score / d g = 2 / 4 at every pixel and for every noise draw; class 0's is 0.
    x = torch.ones(1, 3, 2, 2)
    x[:, :, 0, 0] = -1.0
    twounit = IdentityResNet([[1.0, -1.0, 0.0], [2.0, 0.0, 0.0]], [0.0, 0.0])
    assert smoothgrad(twounit, x, 1, samples=3).tolist() == [[[0.5, 0.5], [0.5, 0.5]]]
    assert smoothgrad(twounit, x, 0, samples=3, absolute=False).tolist() == [[[0.0, 0.0], [0.0, 0.0]]]


# --------------------------------------------------------------------------- the FCN on a resnet18


def test_a_one_cell_map_gives_exactly_the_classifier(resnet: nn.Module) -> None:
    x = network_input(32, 32)  # layer4 is 1 x 1
    out = fcn_forward(resnet, x)
    assert out.probabilities.shape == (1, 3, 1, 1)
    with torch.inference_mode():
        expected = torch.softmax(resnet(x), dim=1)
    assert torch.allclose(out.probabilities[:, :, 0, 0], expected, atol=1e-6)


def test_logit_map_mean_is_the_classifier_on_a_larger_input(resnet: nn.Module) -> None:
    x = network_input(96, 64)
    out = fcn_forward(resnet, x)
    assert out.features.shape == (1, 512, 3, 2) and out.logits.shape == (1, 3, 3, 2)
    with torch.inference_mode():
        expected = resnet(x)
    assert torch.allclose(out.logits.mean(dim=(2, 3)), expected, atol=TOL)


def test_units_zeroed_applies_to_the_fcn(resnet: nn.Module) -> None:
    x = network_input(64, 64)
    with units_zeroed(resnet, [3, 7]):
        features = fcn_forward(resnet, x).features
    assert float(features[:, [3, 7]].abs().max()) == 0.0
    assert float(fcn_forward(resnet, x).features[:, [3, 7]].abs().max()) > 0.0


def test_fcn_restores_the_models_mode(resnet: nn.Module) -> None:
    resnet.train()
    try:
        fcn_forward(resnet, network_input(32, 32))
        assert resnet.training and resnet.layer1.training
    finally:
        resnet.eval()


# ----------------------------------------------------------------------------------- training scale


def test_image_at_scale_one_is_the_plain_network_input() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (40, 64), dtype=np.uint8)
    assert training_scale(64, 16) == 1.0  # side = 25% of 64 = 16
    x = image_input(pixels, 16)
    assert torch.equal(x, to_input(torch.from_numpy(pixels)[None]))


def test_image_is_rescaled_as_the_patches_were() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (256, 512), dtype=np.uint8)
    x = image_input(pixels, 64)  # side 128 -> scale 1/2
    assert x.shape == (1, 3, 128, 256)
    crop = torch.from_numpy(np.ascontiguousarray(pixels[64:192, 128:256]))[None]
    patch = to_input(resize_uint8(crop, 64))
    inside = x[:, :, 32:96, 64:128]
    # The antialiasing kernel reaches past a crop's edge only in its outer pixels.
    assert torch.equal(inside[..., 4:-4, 4:-4], patch[..., 4:-4, 4:-4])


def test_deep_images_are_windowed_like_training_and_never_run_full_size() -> None:
    pixels = np.random.default_rng(0).integers(0, 4096, (3000, 2000), dtype=np.uint16)
    x = image_input(pixels, 128)  # side 500 -> scale 0.256
    assert x.shape == (1, 3, 768, 512)
    small = image_input(to_uint8(pixels), 128)
    assert torch.equal(x, small)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        image_input(pixels.astype(np.float32), 128)


def test_upsample_maps() -> None:
    maps = torch.arange(8.0).view(2, 2, 2)
    assert torch.equal(upsample_maps(maps, (2, 2)), maps)
    big = upsample_maps(maps, (8, 6))
    assert big.shape == (2, 8, 6) and big.dtype == torch.float32
    assert float(big[0, 0, 0]) == 0.0 and float(big[1, -1, -1]) == 7.0


def test_upsample_maps_is_bit_identical_to_interpolate() -> None:
    # upsample_maps writes into a NumPy buffer (for speed); the values must be F.interpolate's exactly,
    # channels_last layer4 maps (as fcn_forward gives them) and odd scales included.
    maps = torch.rand(1, 16, 7, 5).contiguous(memory_format=torch.channels_last)[0, [3, 1, 8]]
    for size in [(224, 160), (333, 517), (7, 9)]:
        expected = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        assert torch.equal(upsample_maps(maps, size), expected)


# ------------------------------------------------------------------------- the field's implementations


class WeightCAM(BaseCAM):
    """CAM in pytorch-grad-cam's own terms: the channel weights are the final layer's row of the class."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, [model.layer4], uses_gradients=False)

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layers: list[nn.Module],
        targets: list[ClassifierOutputTarget],
        activations: np.ndarray,
        grads: np.ndarray | None,
    ) -> np.ndarray:
        return np.stack([self.model.fc.weight[t.category].detach().numpy() for t in targets])


@pytest.mark.parametrize("class_index", [0, 2])
def test_cam_matches_pytorch_grad_cam(resnet: nn.Module, class_index: int) -> None:
    x = network_input(128, 96)
    targets = [ClassifierOutputTarget(class_index)]
    with WeightCAM(resnet) as reference:
        reference(input_tensor=x, targets=targets)
        activations = reference.activations_and_grads.activations[0].numpy()
        raw = reference.get_cam_image(x, resnet.layer4, targets, activations, None)
    ours = class_activation_map(resnet, fcn_forward(resnet, x).features, class_index)
    assert np.abs(fcn_forward(resnet, x).features.numpy() - activations).max() < TOL
    assert np.abs(ours.numpy() - raw).max() < TOL


@pytest.mark.parametrize("class_index", [0, 1])
def test_grad_cam_matches_pytorch_grad_cam(resnet: nn.Module, class_index: int) -> None:
    x = network_input(128, 96)
    targets = [ClassifierOutputTarget(class_index)]
    with GradCAM(model=resnet, target_layers=[resnet.layer4]) as reference:
        shown = reference(input_tensor=x, targets=targets)  # ReLU, min-max scaled, resized to the input
        grads = reference.activations_and_grads.gradients[0].numpy()
        activations = reference.activations_and_grads.activations[0].numpy()
        weights = reference.get_cam_weights(x, resnet.layer4, targets, activations, grads)
        raw = reference.get_cam_image(x, resnet.layer4, targets, activations, grads)
    features = fcn_forward(resnet, x).features
    ours = grad_cam(resnet, features, class_index)
    assert np.abs(ours.numpy() - np.maximum(raw, 0)).max() < TOL
    # Its channel weights are the gradients the FCN's head gives (= W[c] / positions here).
    assert np.abs(weights[0] - resnet.fc.weight[class_index].detach().numpy() / 12).max() < 1e-7
    scaled = scale_cam_image(ours.numpy())  # the package's own min-max
    assert np.abs(upsample_maps(torch.from_numpy(scaled), (128, 96)).numpy() - shown).max() < TOL


def test_layer_activations_match_captum(resnet: nn.Module) -> None:
    x = network_input(96, 160)
    reference = LayerActivation(resnet, resnet.layer4).attribute(x)
    assert torch.allclose(fcn_forward(resnet, x).features, reference, atol=TOL)


@pytest.mark.parametrize("absolute", [True, False])
def test_smoothgrad_matches_captum_noise_tunnel(resnet: nn.Module, absolute: bool) -> None:
    resnet.zero_grad(set_to_none=True)  # pytorch-grad-cam's backward() leaves gradients behind
    x = network_input(64, 48)
    gray = x[:, :1].contiguous()
    sigma = 0.15 * float(gray.max() - gray.min())
    torch.manual_seed(7)  # captum draws from the global generator; ours from Generator().manual_seed(7)
    tunnel = NoiseTunnel(Saliency(lambda g: resnet(g.expand(-1, 3, -1, -1))))
    reference = tunnel.attribute(gray, nt_type="smoothgrad", nt_samples=6, stdevs=sigma, target=2, abs=absolute)
    ours = smoothgrad(resnet, x, 2, samples=6, noise_level=0.15, seed=7, absolute=absolute, batch_size=4)
    assert ours.shape == (1, 64, 48)
    assert torch.allclose(ours, reference[:, 0], atol=TOL)
    again = smoothgrad(resnet, x, 2, samples=6, noise_level=0.15, seed=7, absolute=absolute, batch_size=6)
    assert torch.allclose(again, ours, atol=1e-6)  # the batching does not change the noise
    assert not torch.allclose(smoothgrad(resnet, x, 2, samples=6, seed=8, absolute=absolute), ours, atol=TOL)
    assert all(p.grad is None for p in resnet.parameters())


# ------------------------------------------------------------------------------------------ DenseNet


@pytest.fixture(scope="module")
def densenet() -> nn.Module:
    """DenseNet-121 (the hip-fracture paper's classifier), seeded random weights, two classes."""
    torch.manual_seed(3)
    return build_network("densenet121", 2).model.eval()


def test_a_densenets_map_and_head_are_its_own_forward(densenet: nn.Module) -> None:
    x = network_input(96, 64)
    out = fcn_forward(densenet, x)
    with torch.inference_mode():
        expected_map = F.relu(densenet.features(x))
        expected = densenet(x)
    assert out.features.shape == (1, 1024, 3, 2) and torch.allclose(out.features, expected_map, atol=TOL)
    # The mean of the logit map is the classifier on the pooled map: the whole-image decision.
    assert torch.allclose(out.logits.mean(dim=(2, 3)), expected, atol=TOL)
    weight, bias = classifier_weights(densenet)
    assert weight is densenet.classifier.weight and bias is densenet.classifier.bias


def test_smoothgrad_of_a_densenet_matches_captum_noise_tunnel(densenet: nn.Module) -> None:
    x = network_input(64, 64)
    gray = x[:, :1].contiguous()
    sigma = 0.15 * float(gray.max() - gray.min())
    torch.manual_seed(7)
    tunnel = NoiseTunnel(Saliency(lambda g: densenet(g.expand(-1, 3, -1, -1))))
    reference = tunnel.attribute(gray, nt_type="smoothgrad", nt_samples=4, stdevs=sigma, target=1, abs=True)
    ours = smoothgrad(densenet, x, 1, samples=4, noise_level=0.15, seed=7, batch_size=4)
    assert torch.allclose(ours, reference[:, 0], atol=TOL)


# ----------------------------------------------------------------------------------------- memory


def _hooks(model: nn.Module) -> int:
    count = 0
    for module in model.modules():
        count += len(module._forward_hooks) + len(module._forward_pre_hooks)
        count += len(module._backward_hooks) + len(module._backward_pre_hooks)
    return count


def _live_tensors() -> int:
    gc.collect()
    # type(), not isinstance(): isinstance would ask lazy module proxies for their __class__ (and warn).
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


def small_convnet() -> nn.Module:
    """ResNet-shaped (the children FCN code calls), convolutional and batch-normed, small enough to run fast."""
    torch.manual_seed(0)
    model = nn.Module()
    model.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    model.bn1 = nn.BatchNorm2d(8)
    model.relu = nn.ReLU()
    model.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    widths = (8, 8, 16, 32, 64)  # layer1 keeps the stem's width and stride, the others halve the map
    for i, name in enumerate(BACKBONE[4:]):
        conv = nn.Conv2d(widths[i], widths[i + 1], 3, stride=1 if i == 0 else 2, padding=1)
        setattr(model, name, nn.Sequential(conv, nn.ReLU()))
    model.fc = nn.Linear(64, 3)
    return model.eval()


def _one_image(model: nn.Module, pixels: np.ndarray) -> None:
    x = image_input(pixels, 8)  # scale 1/2: (1, 3, 24, 32)
    out = fcn_forward(model, x)
    class_activation_map(model, out.features, 1)
    grad_cam(model, out.features, 2)
    smoothgrad(model, x, 0, samples=2, batch_size=2)


def test_no_memory_growth_and_no_hooks_over_200_images() -> None:
    model = small_convnet()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64), dtype=np.uint8) for _ in range(4)]
    global_hooks = (len(nn.modules.module._global_forward_hooks), len(nn.modules.module._global_backward_hooks))
    for pixels in images:  # warm up torch's caches
        _one_image(model, pixels)
    tensors_before = _live_tensors()
    tracemalloc.start()
    try:
        _one_image(model, images[0])
        start, _ = tracemalloc.get_traced_memory()
        for i in range(200):
            _one_image(model, images[i % 4])
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _live_tensors() == tensors_before
    assert end - start < 64 * 1024  # Python-side growth over 200 images: none beyond allocator noise
    assert _hooks(model) == 0
    assert (len(nn.modules.module._global_forward_hooks), len(nn.modules.module._global_backward_hooks)) == global_hooks
