"""The regressor's loss model: expected errors per row from binned inputs, without labels."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.baseline.estimators import LossModel
from watchkeeper.baseline.task import Task
from watchkeeper.stats.boosting import ObliviousBoosting


def regression(n: int, shift: float, seed: int, offset: float = 0.0) -> pa.Table:
    """y = 2x + noise whose sd grows with |x| and with group b: a model (2x) whose error
    shifts when x or the group mix does."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    group = np.where(rng.random(n) < 0.3 + 0.4 * (shift > 0), "b", "a")
    sd = 0.5 + np.abs(x) * np.where(group == "b", 1.5, 0.5)
    return pa.table({"x": x, "group": group,
                     "target": offset + 2 * x + rng.normal(0, 1, n) * sd,
                     "prediction": offset + 2 * x})


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(regression(20_000, 0.0, 0), target="target", prediction="prediction",
                   progress=False)


def test_estimate_follows_a_known_shift_of_the_error(suite: wk.Suite) -> None:
    shifted = regression(8_000, 1.0, 5)
    blind = suite.check(shifted.drop_columns(["target"])).windows[0].metrics
    realised = suite.check(shifted).windows[0].metrics["realised"]
    same = suite.check(regression(8_000, 0.0, 6)).windows[0].metrics["estimated"]
    for k in ("mae", "rmse"):
        assert blind["estimated"][k] == pytest.approx(realised[k], rel=0.05)
        assert blind["estimated"][k] > 1.3 * same[k]  # the shift is seen, not averaged away
        lo, hi = blind["estimated_band"][k]
        assert lo < blind["estimated"][k] < hi


def test_the_loss_model_is_boosted_depth_wise_and_reads_back(suite: wk.Suite) -> None:
    model = suite.schema.task.loss_model
    assert model is not None and model.coef is None
    assert all(not t.oblivious and t.trees >= 100 for t in model.trees)
    again = LossModel.from_dict(model.to_dict())
    table = regression(2_000, 0.5, 9)
    np.testing.assert_array_equal(again.predict(table), model.predict(table))
    bad = model.to_dict()
    bad["trees"] = bad["trees"][:1]
    with pytest.raises(ValueError, match="one entry per output"):
        LossModel.from_dict(bad)


def test_mape_is_estimated_only_for_labels_of_one_sign() -> None:
    positive = wk.init(regression(10_000, 0.0, 1, offset=30.0), target="target",
                       prediction="prediction", progress=False)
    model = positive.schema.task.loss_model
    assert model is not None and model.mape
    window = positive.check(regression(5_000, 1.0, 2, offset=30.0)).windows[0].metrics
    assert window["estimated"]["mape"] == pytest.approx(window["realised"]["mape"], rel=0.1)
    assert "mape" in window["estimated_band"]
    crossing = wk.init(regression(10_000, 0.0, 1), target="target", prediction="prediction",
                       progress=False)
    assert not crossing.schema.task.loss_model.mape
    metrics = crossing.check(regression(2_000, 0.0, 3)).windows[0].metrics
    assert "mape" not in metrics["estimated"]
    assert np.isfinite(metrics["realised"]["mape"])  # realised: rows whose label is not 0


def test_a_ridge_loss_model_of_an_earlier_version_still_scores(suite: wk.Suite) -> None:
    """A suite written before the boosted loss model (ridge coefficients per bin) loads and
    estimates as before, without a band; a truncated one is a clear SuiteError."""
    document = copy.deepcopy(suite.to_dict())  # to_dict shares the monitors' dicts
    task = document["schema"]["task"] if "schema" in document else document["task"]
    bins = {"x": [-1.0, 0.0, 1.0], "prediction": [0.0]}
    task["loss_model"] = {
        "edges": bins, "levels": {}, "intercept": [1.0, 2.0],
        "coef": {"x": {"abs": [0.5, 0.0, 0.0, 0.5, 0.0], "sq": [1.0, 0.0, 0.0, 1.0, 0.0]},
                 "prediction": {"abs": [0.0, 0.0, 0.0], "sq": [0.0, 0.0, 0.0]}}}
    for m in document["monitors"]:
        if m.get("type") == "estimated_performance":
            for key in ("sampling_cv", "shift_sd"):
                m.get("calibration", {}).pop(key, None)
    old = wk.Suite.from_dict(document)
    assert old.schema.task.loss_model.coef is not None
    table = pa.table({"x": np.array([-2.0, 0.5, 2.0]), "group": ["a", "a", "b"],
                      "prediction": np.zeros(3)})
    np.testing.assert_allclose(old.schema.task.loss_model.predict(table),
                               [[1.5, 3.0], [1.0, 2.0], [1.5, 3.0]])
    metrics = old.check(table).windows[0].metrics
    assert metrics["estimated"]["mae"] == pytest.approx(4 / 3)
    assert "estimated_band" not in metrics
    task["loss_model"]["coef"]["x"]["abs"] = [0.5]
    with pytest.raises(wk.SuiteError, match="loss_model"):
        wk.Suite.from_dict(document)


def test_depth_wise_trees_fit_an_interaction() -> None:
    """y depends on a XOR b: no single split helps an oblivious level on average, each
    node of a depth-wise tree splits its own cell."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, size=(20_000, 2))
    y = np.where(codes[:, 0] == codes[:, 1], 1.0, 3.0) + rng.normal(0, 0.1, 20_000)
    model = ObliviousBoosting.fit(codes, [2, 2], np.full(20_000, 2.0), y, loss="squared",
                                  oblivious=False, depth=2, ordered=[True, True])
    cells = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_allclose(2.0 + model.margin(cells), [1.0, 3.0, 3.0, 1.0], atol=0.05)
    again = ObliviousBoosting.from_dict(model.to_dict())
    np.testing.assert_array_equal(again.margin(cells), model.margin(cells))


def test_loss_model_needs_labeled_rows() -> None:
    table = pa.table({"x": np.arange(40.0), "target": np.arange(40.0),
                      "prediction": np.arange(40.0) + 1})
    task = Task("regression", target="target", prediction="prediction")
    assert LossModel.fit(table, task, {"x": [0.0, 20.0, 39.0]}) is None


def test_a_regressors_suite_file_round_trips(suite: wk.Suite, tmp_path: Path) -> None:
    path = tmp_path / "regressor.yaml"
    suite.save(path)
    again = wk.load(path)
    table = regression(3_000, 0.7, 11).drop_columns(["target"])
    before, after = (s.check(table).windows[0].metrics for s in (suite, again))
    assert after["estimated"] == before["estimated"]
    assert after["estimated_band"] == before["estimated_band"]
