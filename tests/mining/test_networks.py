"""mining.networks: ResNets with a new final layer, weights files, checkpoints, feature extraction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models

from mining.networks import (
    ARCHITECTURES,
    UNITS,
    build_network,
    checkpoint_load,
    checkpoint_save,
    feature_extractor,
)
from mining.patches import CLASSES


@pytest.mark.parametrize("architecture", ["resnet18", "resnet50"])
def test_network_has_the_tables_units_and_a_new_final_layer(architecture: str) -> None:
    info = build_network(architecture, num_classes=3)
    assert info.num_units == UNITS[architecture]
    assert info.model.fc.weight.shape == (3, info.num_units)
    assert (info.initialisation, info.feature_layer, info.classifier_layer) == ("random", "layer4", "fc")


def test_units_table_covers_every_architecture() -> None:
    # Basic-block ResNets end in 512 channels, bottleneck ones in 2048 (resnet34/101/152 are
    # not built here: slow, and torchvision's own tests cover their shapes).
    assert set(UNITS) == set(ARCHITECTURES)
    assert [UNITS[a] for a in ARCHITECTURES] == [512, 512, 2048, 2048, 2048, 1024]


def test_densenet121_gets_a_new_classifier_and_loads_a_weights_file_but_its_classifier(tmp_path: Path) -> None:
    torch.manual_seed(2)
    imagenet = models.densenet121(weights=None).state_dict()  # classifier: 1000 classes
    torch.save(imagenet, tmp_path / "densenet.pth")
    info = build_network("densenet121", 2, weights_path=tmp_path / "densenet.pth")
    assert (info.num_units, info.feature_layer, info.classifier_layer) == (1024, "features", "classifier")
    assert info.model.classifier.weight.shape == (2, 1024) and UNITS["densenet121"] == 1024
    loaded = info.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in imagenet.items() if not k.startswith("classifier."))
    # A ResNet's file is not a DenseNet's: every mismatch is named.
    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="does not hold densenet121 weights: missing keys features"):
        build_network("densenet121", 2, weights_path=tmp_path / "resnet.pth")
    # A checkpoint rebuilds it exactly.
    checkpoint_save(
        tmp_path / "d.pt",
        model=info.model,
        architecture="densenet121",
        classes=["no_fracture", "fracture"],
        patch_params={"input_size": 64, "whole_image": True},
        epoch=1,
        metrics={},
        history=[],
        config={},
    )
    again, _ = checkpoint_load(tmp_path / "d.pt")
    x = torch.randn(2, 3, 64, 64)
    info.model.eval()
    assert torch.equal(again.model(x), info.model(x))


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        build_network("vgg16", 3)


def _imagenet_resnet18(path: Path, wrap: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = models.resnet18(weights=None).state_dict()  # fc: 1000 classes, as an ImageNet file
    saved = {"state_dict": {f"module.{k}": v for k, v in state.items()}} if wrap else state
    torch.save(saved, path)
    return state


@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "wrapped-dataparallel"])
def test_weights_file_loads_everything_but_the_final_layer(tmp_path: Path, wrap: bool) -> None:
    path = tmp_path / "imagenet.pth"
    state = _imagenet_resnet18(path, wrap)
    info = build_network("resnet18", 3, weights_path=path)
    loaded = info.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert loaded["fc.weight"].shape == (3, 512)
    assert info.initialisation == f"weights file {path}"


def test_weights_of_another_architecture_are_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"does not hold resnet18 weights: unexpected keys layer1\.2\."):
        build_network("resnet18", 3, weights_path=path)


def test_weights_with_missing_or_misshaped_keys_are_named(tmp_path: Path) -> None:
    state = models.resnet18(weights=None).state_dict()
    del state["layer4.1.bn2.bias"]
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys layer4\.1\.bn2\.bias; wrong shape keys conv1\.weight"):
        build_network("resnet18", 3, weights_path=tmp_path / "bad.pth")


def test_missing_or_unreadable_weights_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weights file not found"):
        build_network("resnet18", 3, weights_path=tmp_path / "nope.pth")
    (tmp_path / "text.pth").write_text("not a state dict")
    with pytest.raises(ValueError, match="not a readable state dict"):
        build_network("resnet18", 3, weights_path=tmp_path / "text.pth")


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    info = build_network("resnet18", 3)
    info.model.train()
    info.model(torch.randn(4, 3, 64, 64))  # move BatchNorm's running statistics off their defaults
    info.model.eval()
    path = tmp_path / "models" / "model.pt"
    history = [{"epoch": 1, "val_auc": {"malignant": 0.9, "benign": None}}]
    checkpoint_save(
        path,
        model=info.model,
        architecture="resnet18",
        classes=CLASSES,
        patch_params={"side_fraction": 0.25},
        epoch=1,
        metrics={"val_auc": 0.9},
        history=history,
        config={"lr": 1e-3},
    )
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind
    loaded, checkpoint = checkpoint_load(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), info.model(x))
    assert (loaded.architecture, loaded.num_classes, loaded.num_units) == ("resnet18", 3, 512)
    assert checkpoint["classes"] == list(CLASSES)
    assert (checkpoint["history"], checkpoint["epoch"], checkpoint["config"]) == (history, 1, {"lr": 1e-3})


def test_checkpoint_load_refuses_a_plain_state_dict(tmp_path: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a DeepMiner checkpoint"):
        checkpoint_load(tmp_path / "plain.pt")


def test_feature_extractor_gives_last_block_and_logits_in_one_pass() -> None:
    torch.manual_seed(0)
    model = build_network("resnet18", 3).model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        out = feature_extractor(model)(x)
        assert out["features"].shape == (2, 512, 2, 2)
        torch.testing.assert_close(out["logits"], model(x))
