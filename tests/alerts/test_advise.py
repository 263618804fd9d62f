"""Advice tells a harder mix of inputs from a model that got worse (concept drift).

A model over-confident on one segment and under-confident on the other, calibrated on a
reference where segment and score are independent. In production the over-confident
segment takes the confident rows: neither column's distribution changes (no drift alert),
yet the model is right less often. The label-free estimate (the label model) falls with
the realised metric, so advice puts it down to the mix of inputs, not to the model; when
the labels themselves change, the estimate does not follow and advice says concept drift.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.online.replay import replay

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def make(n: int, seed: int, *, coupled: bool = False, flipped: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    score = _sigmoid(1.7 * x + 0.3 * rng.normal(size=n))
    if coupled:  # same marginals: half "a", same x; but "a" takes the confident rows
        segment = np.where(np.abs(x) > np.median(np.abs(x)), "a", "b")
    else:
        segment = np.where(rng.random(n) < 0.5, "a", "b")
    logit = np.log(score / (1 - score))
    label = (rng.random(n) < _sigmoid(logit * np.where(segment == "a", 0.5, 1.6))).astype(int)
    label = np.where(rng.random(n) < flipped, 1 - label, label)
    return pa.table({"id": np.arange(n), "x": x, "segment": segment, "score": score,
                     "prediction": (score >= 0.5).astype(int), "label": label})


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(make(40_000, seed=1), target="label", prediction="prediction",
                   proba="score", id="id", progress=False)


@pytest.mark.parametrize(("change", "diagnosis"), [
    ({"coupled": True}, "covariate drift"),
    ({"flipped": 0.12}, "concept drift"),
])
def test_a_harder_mix_of_inputs_is_not_called_concept_drift(suite: wk.Suite, change: dict,
                                                            diagnosis: str) -> None:
    windows = [(f"day {i:02d}", T0 + timedelta(days=i),
                make(10_000, seed=10 + i, **(change if i >= 6 else {}))) for i in range(10)]
    run = replay(suite, windows)
    incidents = list(run.manager.incidents.values())
    assert len(incidents) == 1, [list(i.alerts) for i in incidents]
    alerts = list(incidents[0].alerts.values())
    assert not any(a.monitor == "feature_drift" for a in alerts)  # marginals did not move
    performance = [a for a in alerts if a.monitor == "performance"]
    assert any("expected" in a.evidence for a in performance)  # log-loss, Brier: no estimate
    advice = run.advice()[incidents[0].id]
    assert advice.diagnosis == diagnosis, advice.to_text()
    text = " ".join(advice.actions)
    if diagnosis == "covariate drift":
        assert "label-free estimate from the inputs falls with it" in text, text
    else:
        assert "the inputs alone lead one to expect" in text, text
