"""mining.explain: the image-level rule, the influential units and the explanation text, on a hand-built network.

The network is ResNet-shaped with every block the identity except layer4, which averages 4 x 4 cells of the
input plane and makes 4 units ``relu(g * v + o)`` of the cell's value v. The image is 8 x 16 (patch side 4 =
the input size, so training scale is 1) and black (v = -2) but for one white 4 x 4 block (v = 2) in cell
(0, 2). Units per cell, lesion / elsewhere: u0 = relu(v + 2): 4 / 0; u1 = relu(2 - v): 0 / 4;
u2 = relu(v / 2 + 1): 2 / 0; u3 = 1 / 1. Final layer (normal, benign, malignant) = (u1, u2, u0 + u2 / 2), no
bias, so the lesion cell's logits are (0, 2, 5) and every other cell's (4, 0, 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from mining.cam import BACKBONE, fcn_forward, image_input, upsample_maps
from mining.explain import (
    InfluentialUnit,
    decide,
    explain_image,
    explanation_text,
    image_level_auc,
    image_scores,
    tissue_cells,
)
from mining.influence import top_units, unit_influence
from mining.networks import build_network

CLASSES = ("normal", "benign", "malignant")
GAIN = [1.0, -1.0, 0.5, 0.0]
OFFSET = [2.0, 2.0, 1.0, 1.0]
FC = [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.5, 0.0]]
NAMES = {
    0: ("spiculated margin (mass margin)", "consensus"),
    1: ("skin line (normal anatomy)", "experts"),
    2: ("fine pleomorphic calcifications (calcification morphology)", "suggested"),
}
LESION_Z = 1 + math.exp(2) + math.exp(5)  # the lesion cell's softmax denominator
OTHER_Z = math.exp(4) + 2


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()  # tiny networks: OpenMP's spinning costs more than it gives
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CellNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for name in BACKBONE[:-1]:
            setattr(self, name, nn.Identity())
        units = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            units.weight.zero_()
            units.weight[:, 0, 0, 0] = torch.tensor(GAIN)
            units.bias.copy_(torch.tensor(OFFSET))
            self.fc.weight.copy_(torch.tensor(FC))
        self.layer4 = nn.Sequential(nn.AvgPool2d(4), units, nn.ReLU())


@pytest.fixture
def net() -> CellNet:
    return CellNet().eval()


def lesion_image() -> np.ndarray:
    pixels = np.zeros((8, 16), dtype=np.uint8)
    pixels[0:4, 8:12] = 255
    return pixels


# ------------------------------------------------------------------------------------------ decision


def test_decision_and_image_level_scores(net: CellNet) -> None:
    result = explain_image(net, lesion_image(), classes=CLASSES, input_size=4, size=(2, 4))
    assert result.input_shape == (8, 16) and result.probability_maps.shape == (3, 2, 4)
    expected = [1 / LESION_Z, math.exp(2) / LESION_Z, math.exp(5) / LESION_Z]  # normal: min; others: max
    assert result.scores.tolist() == pytest.approx(expected, abs=1e-7)
    assert result.decided == 2
    assert result.probability_maps[:, 1, 0].tolist() == pytest.approx([math.exp(4) / OTHER_Z, 1 / OTHER_Z, 1 / OTHER_Z])


def test_a_tissue_mask_keeps_the_background_from_deciding(net: CellNet) -> None:
    tissue = np.zeros((8, 16), dtype=bool)
    tissue[4:8] = True  # the lower row of cells only: no lesion there
    tissue[2:4, 0:4] = True  # cell (0, 0) half tissue: counts (inclusive, as for patches)
    cells = tissue_cells(tissue, (2, 4))
    assert cells.tolist() == [[True, False, False, False], [True, True, True, True]]
    result = explain_image(net, lesion_image(), classes=CLASSES, input_size=4, tissue=tissue)
    assert result.decided == 0
    assert result.scores.tolist() == pytest.approx([math.exp(4) / OTHER_Z, 1 / OTHER_Z, 1 / OTHER_Z], abs=1e-7)


def test_image_scores_rule_on_a_batch() -> None:
    p = torch.tensor([[0.9, 0.2], [0.05, 0.1], [0.05, 0.7]])  # (C=3, h=1, w=2) after the view
    batch = torch.stack([p.view(3, 1, 2), p.flip(0).view(3, 1, 2)])
    scores = image_scores(batch)
    assert scores.shape == (2, 3)
    assert scores[0].tolist() == pytest.approx([0.2, 0.1, 0.7])
    assert scores[1].tolist() == pytest.approx([0.05, 0.1, 0.9])
    assert image_scores(batch, normal_class=2)[0].tolist() == pytest.approx([0.9, 0.1, 0.05])
    assert decide([0.3, 0.5, 0.5]) == 1  # ties to the lower index


def test_image_level_auc() -> None:
    y_true = np.array([0, 2, 2, 0, 0])
    scores = np.array([[0.9, 0.1, 0.1], [0.2, 0.1, 0.9], [0.3, 0.3, 0.6], [0.8, 0.2, 0.7], [0.7, 0.1, 0.2]])
    auc = image_level_auc(y_true, scores, CLASSES)
    assert auc == {"normal": 1.0, "benign": None, "malignant": pytest.approx(5 / 6)}


# -------------------------------------------------------------------------------- units and maps


def test_influential_units_and_their_maps(net: CellNet) -> None:
    result = explain_image(net, lesion_image(), classes=CLASSES, input_size=4, unit_names=NAMES, size=(2, 4))
    # Toward malignant: max activations (4, 4, 2, 1) x weights (1, 0, 0.5, 0) = (4, 0, 1, 0); ties to the lower unit.
    assert [u.unit for u in result.units] == [0, 2, 1, 3]
    assert [u.influence for u in result.units] == [4.0, 1.0, 0.0, 0.0]
    assert [u.max_activation for u in result.units] == [4.0, 2.0, 4.0, 1.0]
    assert result.units[0].activation_map.tolist() == [[0, 0, 4, 0], [0, 0, 0, 0]]
    assert result.units[2].activation_map.tolist() == [[4, 4, 0, 4], [4, 4, 4, 4]]
    assert (result.units[0].label, result.units[0].source) == NAMES[0]
    assert result.units[3].label is None and result.units[3].name == "layer4:3"
    # CAM of malignant: u0 + u2 / 2 = 5 at the lesion, 0 elsewhere.
    assert result.method == "cam" and result.class_map.tolist() == [[0, 0, 5, 0], [0, 0, 0, 0]]


def test_grad_cam_and_smoothgrad_class_maps(net: CellNet) -> None:
    grad = explain_image(net, lesion_image(), classes=CLASSES, input_size=4, method="gradcam", size=(2, 4))
    assert grad.class_map.tolist() == [[0, 0, 5 / 8, 0], [0, 0, 0, 0]]  # ReLU(CAM) / positions
    smooth = explain_image(net, lesion_image(), classes=CLASSES, input_size=4, method="smoothgrad")
    assert smooth.class_map.shape == (8, 16) and smooth.class_map.min() >= 0
    with pytest.raises(ValueError, match="method must be one of"):
        explain_image(net, lesion_image(), classes=CLASSES, input_size=4, method="lime")


def test_maps_default_to_the_image_size(net: CellNet) -> None:
    result = explain_image(net, lesion_image(), classes=CLASSES, input_size=4)
    assert result.class_map.shape == (8, 16) and result.units[0].activation_map.shape == (8, 16)
    small = torch.tensor([[0.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert np.array_equal(result.units[0].activation_map, upsample_maps(small, (8, 16)).numpy())


def test_a_resnet18_explanation_matches_mining_influence() -> None:
    torch.manual_seed(0)
    model = build_network("resnet18", 3).model.eval()
    pixels = np.random.default_rng(0).integers(0, 4096, (200, 256), dtype=np.uint16)
    result = explain_image(model, pixels, classes=CLASSES, input_size=64, size=(50, 64))
    assert result.input_shape == (200, 256) and result.probability_maps.shape == (3, 7, 8)
    assert len(result.units) == 8 and result.units[0].activation_map.shape == (50, 64)
    features = fcn_forward(model, image_input(pixels, 64)).features
    influence = unit_influence(features.amax(dim=(2, 3)), model.fc.weight.detach())[0, result.decided]
    assert [u.unit for u in result.units] == top_units(influence, 8).tolist()


def test_global_pooling_gives_the_whole_image_classifiers_own_output() -> None:
    """A network trained on whole images decides as it was trained: softmax(fc(avgpool(layer4))), which is
    exactly what model(x) returns on the image resized to the training input."""
    from mining.patches import PatchParams

    torch.manual_seed(1)
    model = build_network("resnet18", 2).model.eval()
    pixels = np.random.default_rng(1).integers(0, 255, (128, 128), dtype=np.uint8)
    whole = PatchParams(side_fraction=1.0)
    result = explain_image(
        model, pixels, classes=("no_fracture", "fracture"), input_size=64, params=whole, pooling="global"
    )
    with torch.no_grad():
        expected = torch.softmax(model(image_input(pixels, 64, whole)).double(), dim=1)[0].numpy()
    assert result.input_shape == (64, 64)
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        explain_image(model, pixels, classes=("a", "b"), input_size=64, params=whole, pooling="median")


# ------------------------------------------------------------------------------------------------ text


def unit(index: int, influence: float, label: str | None = None, source: str | None = None) -> InfluentialUnit:
    return InfluentialUnit(index, influence, 1.0, np.zeros((1, 1), dtype=np.float32), label, source)


def test_text_names_confirmed_and_marks_suggested(net: CellNet) -> None:
    result = explain_image(net, lesion_image(), classes=CLASSES, input_size=4, unit_names=NAMES)
    # Unit 1 has a name but no influence toward malignant, so it is not given as a reason.
    assert result.text == (
        "Malignant (0.95). Most influential: unit layer4:0 — spiculated margin (mass margin); "
        "unit layer4:2 — fine pleomorphic calcifications (calcification morphology) (suggested, not confirmed)."
    )


def test_text_without_named_units(net: CellNet) -> None:
    result = explain_image(net, lesion_image(), classes=CLASSES, input_size=4)
    assert result.text == "Malignant (0.95). None of the 4 most influential units has an expert name yet."


def test_text_names_at_most_five_in_influence_order() -> None:
    units = [unit(10 + i, 8.0 - i, f"concept {i}", "experts" if i % 2 else "consensus") for i in range(8)]
    units[1] = unit(11, 7.0)  # unnamed: skipped, the next named ones move up
    text = explanation_text(CLASSES, 1, [0.2, 0.913, 0.4], units)
    assert text == (
        "Benign (0.91). Most influential: unit layer4:10 — concept 0; unit layer4:12 — concept 2; "
        "unit layer4:13 — concept 3; unit layer4:14 — concept 4; unit layer4:15 — concept 5."
    )
    assert explanation_text(CLASSES, 0, [0.5, 0.3, 0.2], units[:1], limit=5) == (
        "Normal (0.50). Most influential: unit layer4:10 — concept 0."
    )


def test_unknown_label_source_is_refused(net: CellNet) -> None:
    with pytest.raises(ValueError, match="source must be one of"):
        explain_image(net, lesion_image(), classes=CLASSES, input_size=4, unit_names={0: ("x", "majority")})
    with pytest.raises(ValueError, match="2 class names"):
        explain_image(net, lesion_image(), classes=("a", "b"), input_size=4)
