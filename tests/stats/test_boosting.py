"""Boosted oblivious trees (the label model's core): what they learn, and what they keep."""

from __future__ import annotations

import numpy as np
import pytest

from watchkeeper.stats.boosting import ObliviousBoosting, intercept


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def test_unordered_levels_are_grouped_by_their_effect() -> None:
    """Six levels whose effects are not monotone in their codes: ordering them by the base
    model's residual lets a few threshold splits recover every level's rate."""
    rng = np.random.default_rng(1)
    n = 60_000
    level = rng.integers(0, 6, n)
    effect = np.array([0.8, -0.9, 0.1, -0.4, 1.2, -0.1])
    base = rng.normal(0, 1, n)
    y = (rng.random(n) < _sigmoid(base + effect[level])).astype(float)
    model = ObliviousBoosting.fit(level[:, None], [6], base, y, seed=0)
    assert model.trees > 0
    learned = model.margin(np.arange(6)[:, None])
    assert np.abs(learned - effect).max() < 0.15, learned - effect


def test_inputs_without_signal_keep_the_base_margin() -> None:
    rng = np.random.default_rng(2)
    n = 40_000
    codes = rng.integers(0, 10, (n, 5))
    base = rng.normal(0, 1.5, n)
    y = (rng.random(n) < _sigmoid(base)).astype(float)
    model = ObliviousBoosting.fit(codes, [10] * 5, base, y, seed=0)
    # held-out log-loss stops the rounds early; what is kept moves no row much
    assert model.trees <= 20
    assert np.abs(model.margin(codes)).max() < 0.1


def test_an_interaction_of_two_inputs_is_learned() -> None:
    """Right only where both inputs are high: additive models cannot, depth-2 trees can."""
    rng = np.random.default_rng(3)
    n = 60_000
    codes = rng.integers(0, 8, (n, 3))
    both = (codes[:, 0] >= 4) & (codes[:, 1] >= 4)
    y = (rng.random(n) < np.where(both, 0.8, 0.3)).astype(float)
    model = ObliviousBoosting.fit(codes, [8] * 3, np.zeros(n), y, seed=0)
    p = model.predict(codes, np.zeros(n))
    assert abs(p[both].mean() - 0.8) < 0.02 and abs(p[~both].mean() - 0.3) < 0.02


def test_a_stored_model_predicts_the_same_bits() -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    codes = rng.integers(0, 5, (n, 2))
    y = (rng.random(n) < _sigmoid(codes[:, 0] - 2.0)).astype(float)
    model = ObliviousBoosting.fit(codes, [5, 5], np.zeros(n), y, seed=0)
    again = ObliviousBoosting.from_dict(model.to_dict())
    assert model.trees > 0
    np.testing.assert_array_equal(again.margin(codes), model.margin(codes))
    empty = ObliviousBoosting.from_dict(ObliviousBoosting.empty(2).to_dict())
    assert empty.trees == 0 and not empty.margin(codes).any()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="do not agree"):
        ObliviousBoosting.fit(np.zeros((10, 2), int), [3], np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="depth"):
        ObliviousBoosting.fit(np.zeros((10, 1), int), [3], np.zeros(10), np.zeros(10), depth=9)


def test_the_intercept_restores_the_mean_and_survives_edge_cases() -> None:
    rng = np.random.default_rng(5)
    margin = rng.normal(2.0, 1.0, 10_000)
    target = _sigmoid(margin - 0.3)  # probabilities as the target, not labels
    shift = intercept(margin, target)
    assert abs(_sigmoid(margin + shift).mean() - target.mean()) < 1e-5
    assert intercept(np.zeros(0), np.zeros(0)) == 0.0
    assert intercept(np.zeros(10), np.ones(10)) > 5  # all right: a large, finite shift
