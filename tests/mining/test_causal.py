"""mining.causal: scoped unit ablation, per-input probability drops, random draws and bootstrap intervals.

The hand-built network is a random resnet18 whose final layer is zero except fc.weight[1, 3] =
fc.weight[1, 5] = 1, bias 0. Its logits are then (0, s, 0) with s = pooled unit 3 + pooled unit 5, so
p(1 | x) = e^s / (2 + e^s); zeroing unit 3 leaves s = pooled unit 5, zeroing both leaves logits (0, 0, 0)
and p(1 | x) = 1/3 exactly, and zeroing any other unit changes nothing at all.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from mining.causal import (
    bootstrap_ci,
    causal_check,
    class_probabilities,
    class_probability_drop,
    random_unit_draws,
    units_zeroed,
)
from mining.data import to_input
from mining.networks import build_network, feature_extractor

SIDE = 32  # layer4 output 1 x 1
UNITS = (3, 5)


def patches(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8))


def random_resnet(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = build_network("resnet18", num_classes).model
    model.eval()
    return model


@pytest.fixture
def hand_model() -> nn.Module:
    model = random_resnet()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.weight[1, list(UNITS)] = 1.0
    return model


def pooled_features(model: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """float64 (N, 512): layer4's output averaged over space, through the FX extractor (no hooks)."""
    with torch.inference_mode():
        features = feature_extractor(model)(to_input(inputs))["features"]
    return features.mean(dim=(2, 3)).double().numpy()


def p1(s: np.ndarray) -> np.ndarray:
    return np.exp(s) / (2 + np.exp(s))


# ---------------------------------------------------------------------- ablation


def test_zeroing_the_feeding_units_drops_to_the_hand_value(hand_model: nn.Module) -> None:
    x = patches(12)
    f = pooled_features(hand_model, x)
    assert (f[:, 3] + f[:, 5] > 0.01).all()  # so the drops below are real drops
    baseline = class_probabilities(hand_model, x, 1)
    assert baseline.dtype == np.float64 and baseline.shape == (12,)
    np.testing.assert_allclose(baseline, p1(f[:, 3] + f[:, 5]), rtol=1e-6)

    ablated = class_probabilities(hand_model, x, 1, UNITS)
    assert (ablated == 1 / 3).all()  # logits exactly (0, 0, 0)
    drop = class_probability_drop(hand_model, x, 1, list(UNITS), batch_size=5)
    assert drop.dtype == np.float64 and drop.shape == (12,)
    np.testing.assert_allclose(drop, p1(f[:, 3] + f[:, 5]) - 1 / 3, rtol=1e-6)
    # Zeroing one of the two leaves the other's share.
    np.testing.assert_allclose(
        class_probability_drop(hand_model, x, 1, [3]), p1(f[:, 3] + f[:, 5]) - p1(f[:, 5]), rtol=1e-5
    )


def test_zeroing_other_units_changes_nothing(hand_model: nn.Module) -> None:
    x = patches(6)
    others = [0, 1, 2, 4, 6, 7, 100, 511]
    assert (class_probability_drop(hand_model, x, 1, others) == 0).all()
    assert (class_probability_drop(hand_model, x, 1, []) == 0).all()
    # Classes 0 and 2 only see units 3 and 5 through the softmax: zeroing them raises p(0 | x).
    assert (class_probability_drop(hand_model, x, 0, UNITS) < 0).all()


def test_drop_matches_zeroed_features_through_pool_and_fc() -> None:
    model = random_resnet(num_classes=4)
    x = patches(10, seed=1)
    units = [0, 7, 42, 300, 511]
    with torch.inference_mode():
        features = feature_extractor(model)(to_input(x))["features"]
        features[:, units] = 0
        logits = model.fc(features.mean(dim=(2, 3)))
    expected = torch.softmax(logits.double(), dim=1)[:, 2].numpy()
    np.testing.assert_allclose(class_probabilities(model, x, 2, units, batch_size=4), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        class_probability_drop(model, x, 2, units),
        class_probabilities(model, x, 2) - expected,
        atol=1e-6,
    )


def test_float_input_and_batch_size_give_the_same_probabilities(hand_model: nn.Module) -> None:
    x = patches(9)
    from_uint8 = class_probabilities(hand_model, x, 1, [3], batch_size=64)
    np.testing.assert_allclose(class_probabilities(hand_model, to_input(x), 1, [3]), from_uint8, rtol=1e-12)
    np.testing.assert_allclose(class_probabilities(hand_model, x, 1, [3], batch_size=2), from_uint8, rtol=1e-5)
    np.testing.assert_allclose(class_probabilities(hand_model, x.numpy(), 1, [3]), from_uint8, rtol=1e-12)


def test_the_hook_is_scoped_and_the_model_unchanged(hand_model: nn.Module) -> None:
    x = to_input(patches(4))
    hand_model.train()  # batch norm in train mode would update its running statistics
    state = {k: v.clone() for k, v in hand_model.state_dict().items()}
    hand_model.eval()
    with torch.inference_mode():
        before = hand_model(x)
    hand_model.train()
    hand_model.layer1.eval()  # a mixed mode must come back as it was, too

    class_probability_drop(hand_model, x, 1, UNITS)
    causal_check(hand_model, {1: x}, {1: list(UNITS)}, 512, draws=2, bootstrap=10)

    assert len(hand_model.layer4._forward_hooks) == 0
    assert hand_model.training and not hand_model.layer1.training and hand_model.layer2.training
    assert all(torch.equal(v, state[k]) for k, v in hand_model.state_dict().items())
    hand_model.eval()
    with torch.inference_mode():
        assert torch.equal(hand_model(x), before)


def test_units_zeroed_context_removes_its_hook_on_error(hand_model: nn.Module) -> None:
    x = to_input(patches(3))
    with torch.inference_mode():
        before = hand_model(x)
        with units_zeroed(hand_model, UNITS) as zeroed:
            assert len(hand_model.layer4._forward_hooks) == 1
            assert torch.equal(zeroed(x), torch.zeros_like(before))
        assert len(hand_model.layer4._forward_hooks) == 0
        with pytest.raises(RuntimeError, match="inside"), units_zeroed(hand_model, UNITS):
            raise RuntimeError("inside")
        assert len(hand_model.layer4._forward_hooks) == 0
        assert torch.equal(hand_model(x), before)


def test_bad_units_classes_and_inputs_raise(hand_model: nn.Module) -> None:
    x = patches(2)
    with pytest.raises(ValueError, match="512 channels"):
        class_probabilities(hand_model, x, 1, [512])
    assert len(hand_model.layer4._forward_hooks) == 0
    with pytest.raises(ValueError, match=">= 0"):
        class_probabilities(hand_model, x, 1, [-1])
    with pytest.raises(ValueError, match="class 3"):
        class_probabilities(hand_model, x, 3)
    with pytest.raises(ValueError, match="uint8"):
        class_probabilities(hand_model, x[0], 1)
    with pytest.raises(ValueError, match="batch_size"):
        class_probabilities(hand_model, x, 1, batch_size=0)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        causal_check(hand_model, {1: x}, {1: [3, 8]}, 8)


# ---------------------------------------------------------------------- random draws


def test_random_draws_are_distinct_sorted_and_seeded() -> None:
    draws = random_unit_draws(512, 20, 5, seed=7)
    assert draws.shape == (5, 20) and draws.dtype == np.int64
    for row in draws:
        assert len(set(row.tolist())) == 20 and (np.diff(row) > 0).all()
        assert row.min() >= 0 and row.max() < 512
    assert len({tuple(row) for row in draws.tolist()}) == 5
    assert np.array_equal(random_unit_draws(512, 20, 5, seed=7), draws)
    assert not np.array_equal(random_unit_draws(512, 20, 5, seed=8), draws)
    # All units are candidates, the selected ones included: over many draws every unit turns up.
    assert set(random_unit_draws(10, 3, 200, seed=0).ravel().tolist()) == set(range(10))
    assert random_unit_draws(4, 4, 2).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    with pytest.raises(ValueError):
        random_unit_draws(4, 5, 1)


# ---------------------------------------------------------------------- bootstrap


def test_bootstrap_matches_scipy_percentile_on_the_same_resamples() -> None:
    values = np.random.default_rng(1).exponential(size=37)
    lo, hi = bootstrap_ci(values, 500, 0.95, seed=11)
    reference = stats.bootstrap(
        (values,), np.mean, n_resamples=500, method="percentile", confidence_level=0.95, rng=np.random.default_rng(11)
    ).confidence_interval
    assert (lo, hi) == pytest.approx((reference.low, reference.high), rel=1e-12)


def test_bootstrap_by_brute_force() -> None:
    values = np.array([0.1, 0.4, -0.2, 0.9, 0.3])
    rng = np.random.default_rng(3)
    means = []
    for _ in range(200):
        picks = rng.integers(0, 5, 5)
        means.append(sum(values[i] for i in picks) / 5)
    means.sort()
    # Linear-interpolated 2.5th and 97.5th percentiles of 200 sorted means: positions 4.975 and 194.025.
    lo = means[4] + 0.975 * (means[5] - means[4])
    hi = means[194] + 0.025 * (means[195] - means[194])
    assert bootstrap_ci(values, 200, 0.95, seed=3) == pytest.approx((lo, hi), rel=1e-12)


def test_bootstrap_contains_the_mean_and_narrows_with_more_inputs() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (10, 100, 1000):
        values = rng.normal(0.2, 0.1, n)
        lo, hi = bootstrap_ci(values, 1000, seed=0)
        assert lo < values.mean() < hi
        widths.append(hi - lo)
    assert widths[0] > 2 * widths[1] > 4 * widths[2]
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert bootstrap_ci(np.random.default_rng(2).random(30), seed=4) == bootstrap_ci(
        np.random.default_rng(2).random(30), seed=4
    )
    with pytest.raises(ValueError):
        bootstrap_ci([])


# ---------------------------------------------------------------------- the check


def test_causal_check_by_hand(hand_model: nn.Module) -> None:
    x = patches(16)
    f = pooled_features(hand_model, x)
    full = p1(f[:, 3] + f[:, 5])
    result = causal_check(hand_model, {0: x[:5], 1: x}, {0: [0, 1], 1: list(UNITS)}, 8, draws=6, seed=0, bootstrap=300)
    assert sorted(result) == [0, 1]

    entry = result[1]
    assert entry["inputs"] == 16 and entry["draws"] == 6
    selected = full - 1 / 3
    assert entry["selected_drop"] == pytest.approx(selected.mean(), rel=1e-6)
    # Each random pair of units 0..7 drops p(1 | x) by the share of units 3 and 5 it holds.
    draws = entry["random_units"]
    assert draws == random_unit_draws(8, 2, 6, [0, 1, 0]).tolist()
    kept = [[f[:, u] if u not in draw else 0.0 for u in UNITS] for draw in draws]
    per_input = np.mean([full - p1(a + b) for a, b in kept], axis=0)
    assert entry["random_drop"] == pytest.approx(per_input.mean(), rel=1e-5, abs=1e-9)
    assert entry["selected_ci"] == pytest.approx(list(bootstrap_ci(selected, 300, 0.95, [0, 1, 1])), rel=1e-5)
    assert entry["random_ci"] == pytest.approx(list(bootstrap_ci(per_input, 300, 0.95, [0, 1, 1])), rel=1e-5, abs=1e-9)
    lo, hi = entry["selected_ci"]
    assert lo <= entry["selected_drop"] <= hi
    assert any(3 in draw for draw in draws)  # seed 0: some draws hit unit 3, so the random drop is > 0
    assert entry["ratio"] == pytest.approx(entry["selected_drop"] / entry["random_drop"])
    assert entry["ratio"] > 10

    # Units 0 and 1 do not feed class 1's logit, so zeroing them moves no class probability.
    assert result[0]["selected_drop"] == 0 and result[0]["selected_ci"] == [0.0, 0.0]
    # Its random draws hit unit 3 or 5, which raises p(0 | x): a negative random drop leaves no ratio.
    assert result[0]["random_drop"] < 0 and result[0]["ratio"] is None
    assert all(isinstance(v, float) for v in (entry["selected_drop"], entry["random_drop"], *entry["random_ci"]))


def test_selected_units_beat_random_units(hand_model: nn.Module) -> None:
    x = patches(10)
    result = causal_check(hand_model, {1: x}, {1: list(UNITS)}, 512, draws=5, seed=0, bootstrap=200)[1]
    assert result["selected_drop"] > 0.05
    assert result["random_drop"] < result["selected_drop"] / 10
    assert result["selected_ci"][0] > result["random_ci"][1]
    # Seed 0 draws neither unit 3 nor 5 out of 512: a random drop of exactly 0, which leaves no ratio.
    assert not any(u in draw for draw in result["random_units"] for u in UNITS)
    assert result["random_drop"] == 0 and result["random_ci"] == [0.0, 0.0] and result["ratio"] is None


def test_causal_check_is_deterministic_and_per_class(hand_model: nn.Module) -> None:
    x = patches(8)
    inputs = {0: x[:4], 1: x}
    selected = {0: [0, 3, 9], 1: [3, 5, 11]}
    first = causal_check(hand_model, inputs, selected, 16, draws=3, seed=5, bootstrap=100)
    assert causal_check(hand_model, inputs, selected, 16, draws=3, seed=5, bootstrap=100) == first
    # A class's numbers do not depend on the other classes.
    assert causal_check(hand_model, {1: x}, {1: [3, 5, 11]}, 16, draws=3, seed=5, bootstrap=100)[1] == first[1]
    other = causal_check(hand_model, inputs, selected, 16, draws=3, seed=6, bootstrap=100)
    assert other[1]["random_units"] != first[1]["random_units"]
    assert other[1]["selected_drop"] == first[1]["selected_drop"]
    for draw in first[1]["random_units"]:
        assert len(set(draw)) == 3 and all(0 <= u < 16 for u in draw)


def test_class_without_inputs_reports_none(hand_model: nn.Module) -> None:
    result = causal_check(hand_model, {1: patches(0)}, {1: [3], 2: [5]}, 512, draws=2)
    for c in (1, 2):
        entry = result[c]
        assert entry["inputs"] == 0 and entry["draws"] == 2 and len(entry["random_units"]) == 2
        assert all(entry[k] is None for k in ("selected_drop", "selected_ci", "random_drop", "random_ci", "ratio"))
