"""Realised and estimated performance on the ACS employment data, with late labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy.stats import rankdata

import watchkeeper as wk


def exact_auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = rankdata(score)
    pos = label == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.fixture(scope="module")
def suite(acs_suite: wk.Suite) -> wk.Suite:
    return acs_suite  # fitted once per session (conftest.py)


@pytest.fixture(scope="module")
def analysis(acs_analysis: pa.Table) -> pa.Table:
    return acs_analysis


@pytest.fixture(scope="module")
def labels(acs_labels: pa.Table) -> pa.Table:
    return acs_labels


def test_the_task_is_inferred(suite: wk.Suite) -> None:
    task = suite.schema.task
    assert task is not None
    assert (task.type, task.classes, task.target, task.prediction, task.proba, task.id) == (
        "binary", ["0", "1"], "employed", "prediction", "predicted_probability", "id")
    assert [a.column for a in task.attributes] == ["AGEP", "SEX", "RAC1P"]
    types = {m.type for m in suite.monitors}
    assert {"performance", "estimated_performance", "fairness", "label_coverage"} <= types


def test_binned_roc_auc_is_within_0_005_of_the_exact_value(
    suite: wk.Suite, analysis: pa.Table, labels: pa.Table
) -> None:
    result = suite.check(analysis, window_rows=10_000, labels=labels)
    y = labels.column("employed").to_numpy()
    assert np.array_equal(labels.column("id").to_numpy(), analysis.column("id").to_numpy())
    score = analysis.column("predicted_probability").to_numpy()
    worst = 0.0
    for i, w in enumerate(result.windows):
        rows = slice(i * 10_000, i * 10_000 + w.rows)
        exact = exact_auc(score[rows], y[rows])
        worst = max(worst, abs(w.metrics["realised"]["roc_auc"] - exact))
        accuracy = float(np.mean(analysis.column("prediction").to_numpy()[rows] == y[rows]))
        assert w.metrics["realised"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    print(f"largest |binned - exact| ROC-AUC over {len(result.windows)} windows: {worst:.5f}")
    assert worst < 0.005


def test_estimates_do_not_use_labels_and_track_the_realised_values(
    suite: wk.Suite, analysis: pa.Table, labels: pa.Table
) -> None:
    blind = suite.check(analysis, window_rows=10_000)
    told = suite.check(analysis, window_rows=10_000, labels=labels)
    errors = {"accuracy": [], "roc_auc": []}
    for a, b in zip(blind.windows, told.windows, strict=True):
        assert a.metrics["estimated"] == b.metrics["estimated"]
        assert a.metrics["label_coverage"] == 0 and b.metrics["label_coverage"] == 1
        for k in errors:
            errors[k].append(abs(b.metrics["estimation_error"][k]))
    mae = {k: float(np.mean(v)) for k, v in errors.items()}
    print(f"CBPE mean absolute error over 21 windows: {mae}")
    assert mae["accuracy"] < 0.01 and mae["roc_auc"] < 0.01


def test_late_out_of_order_labels_equal_the_batch_computation(
    suite: wk.Suite, analysis: pa.Table, labels: pa.Table
) -> None:
    data = analysis.slice(0, 60_000)
    at_once = suite.check(data, window_rows=7_000, labels=labels)
    late = suite.check(data, window_rows=7_000)
    rng = np.random.default_rng(3)
    order = rng.permutation(60_000 + 5_000)  # 5,000 labels for ids not in this data
    shuffled = labels.take(pa.array(order))
    unmatched = 0
    for part in np.array_split(np.arange(len(order)), 9):
        unmatched += late.add_labels(shuffled.take(pa.array(part)))
    assert unmatched == 5_000 and late.unmatched_labels == 5_000
    for a, b in zip(at_once.windows, late.windows, strict=True):
        for key, tally in a.profile.joint.items():
            if tally.dtype.kind == "i":  # counts: exactly equal
                assert np.array_equal(tally, b.profile.joint[key]), key
            else:  # float sums (log-loss, Brier): equal up to the order of summation
                np.testing.assert_allclose(tally, b.profile.joint[key], rtol=1e-12)
        assert a.metrics["realised"] == pytest.approx(b.metrics["realised"], rel=1e-12)
        assert [f.to_dict() for f in a.findings] == [f.to_dict() for f in b.findings]


def test_a_corrected_label_replaces_the_first(suite: wk.Suite, analysis: pa.Table) -> None:
    data = analysis.slice(0, 2_000)
    ids = data.column("id")
    result = suite.check(data)
    result.add_labels(pa.table({"id": ids, "employed": pa.array([0] * 2_000)}))
    result.add_labels(pa.table({"id": ids, "employed": data.column("prediction")}))
    realised = result.windows[0].metrics["realised"]
    assert realised["labeled"] == 2_000 and realised["accuracy"] == 1.0


def test_concept_drift_is_a_realised_performance_alert_not_an_estimated_one(
    suite: wk.Suite, analysis: pa.Table, labels: pa.Table
) -> None:
    data = analysis.filter(pc.equal(analysis.column("year"), 2016)).slice(0, 10_000)
    truth = labels.filter(pc.is_in(labels.column("id"), data.column("id")))
    y = truth.column("employed").to_numpy().copy()
    flip = np.random.default_rng(0).random(y.size) < 0.3  # 30% of labels change, inputs don't
    y[flip] = 1 - y[flip]
    drifted = truth.set_column(1, "employed", pa.array(y))
    clean = suite.check(data, labels=truth).alerts()
    assert [f for f in clean if f.family in ("performance", "estimated_performance")] == []
    found = suite.check(data, labels=drifted).alerts()
    families = {f.family for f in found}
    assert "performance" in families and "estimated_performance" not in families
    assert {f.metric for f in found if f.family == "performance"} >= {"accuracy", "roc_auc"}


def test_labels_that_stop_arriving(suite: wk.Suite, analysis: pa.Table,
                                   labels: pa.Table) -> None:
    data = analysis.slice(0, 50_000)
    result = suite.check(data, window_rows=5_000, labels=labels.slice(0, 30_000))
    coverage = [w.metrics["label_coverage"] for w in result.windows]
    assert coverage == [1.0] * 6 + [0.0] * 4
    flagged = [i for i, w in enumerate(result.windows)
               if any(f.monitor == "label_coverage" for f in w.findings)]
    assert flagged == [6, 7, 8]  # the newest window may still be waiting for its labels


def test_labels_need_an_id_and_a_target(suite: wk.Suite, analysis: pa.Table) -> None:
    with pytest.raises(wk.DataError, match="labels: need columns"):
        suite.check(analysis.slice(0, 100), labels=pa.table({"id": [1], "y": [0]}))
    unlabeled = wk.init(pa.table({"x": np.arange(100.0) % 7}))
    with pytest.raises(wk.SuiteError, match="labels: need a suite with a target"):
        unlabeled.check(pa.table({"x": [1.0]}), labels=pa.table({"id": [1], "y": [0]}))


def test_multiclass_and_regression_metrics_match_a_direct_computation() -> None:
    rng = np.random.default_rng(1)
    n = 3_000
    y = rng.choice(["a", "b", "c"], n)
    pred = np.where(rng.random(n) < 0.7, y, rng.choice(["a", "b", "c"], n))
    suite = wk.init(pa.table({"id": np.arange(n), "f": rng.normal(size=n), "target": y,
                              "prediction": pred}))
    assert suite.schema.task.type == "multiclass"
    realised = suite.check(pa.table({"id": np.arange(n), "f": rng.normal(size=n),
                                     "target": y, "prediction": pred})).windows[0]
    assert realised.metrics["realised"]["accuracy"] == pytest.approx(np.mean(pred == y))

    x = rng.normal(size=n)
    target = 3 * x + rng.normal(size=n)
    guess = 3 * x
    reg = wk.init(pa.table({"x": x, "target": target, "prediction": guess}))
    assert reg.schema.task.type == "regression"
    m = reg.check(pa.table({"x": x, "target": target, "prediction": guess})).windows[0]
    err = guess - target
    assert m.metrics["realised"]["mae"] == pytest.approx(np.abs(err).mean())
    assert m.metrics["realised"]["rmse"] == pytest.approx(np.sqrt(np.square(err).mean()))
    r2 = 1 - np.square(err).sum() / np.square(target - target.mean()).sum()
    assert m.metrics["realised"]["r2"] == pytest.approx(r2)
    worse = reg.check(pa.table({"x": x, "target": target, "prediction": guess + 2.0}))
    assert {f.metric for f in worse.alerts() if f.family == "performance"} >= {"mae", "rmse"}


def test_regression_error_is_estimated_without_labels() -> None:
    """A loss model of the reference's errors estimates MAE/RMSE under covariate shift."""

    def make(n: int, shift: float, seed: int) -> pa.Table:
        rng = np.random.default_rng(seed)
        x = rng.normal(shift, 1, n)
        noise = np.where(np.abs(x) > 1.5, 3.0, 0.5)  # errors are larger for extreme inputs
        return pa.table({"x": x, "target": 2 * x + rng.normal(0, 1, n) * noise,
                         "prediction": 2 * x})

    suite = wk.init(make(20_000, 0.0, 0))
    assert suite.schema.task.loss_model is not None
    shifted = make(10_000, 1.0, 5)
    blind = suite.check(shifted.drop_columns(["target"]))
    told = suite.check(shifted).windows[0].metrics
    estimate, realised = blind.windows[0].metrics["estimated"], told["realised"]
    assert estimate["mae"] == pytest.approx(realised["mae"], rel=0.05)
    assert estimate["mae"] > 1.4 * suite.check(make(10_000, 0.0, 6)).windows[0].metrics[
        "estimated"]["mae"]
    assert {f.metric for f in blind.alerts() if f.family == "estimated_performance"} >= {"mae"}


def test_a_regressors_label_coverage_counts_labels_not_predictions() -> None:
    """Half the predictions missing (a model outage) is a missing-value matter: the labels
    still cover every row, and the error metrics use the rows that have both."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=6_000)
    reference = pa.table({"x": x, "target": 2 * x + rng.normal(size=6_000),
                          "prediction": 2 * x})
    suite = wk.init(reference, target="target", prediction="prediction")
    prediction = (2 * x).copy()
    prediction[::2] = np.nan
    window = suite.check(reference.set_column(2, "prediction", pa.array(prediction)))
    realised = window.windows[0].metrics["realised"]
    assert (realised["labeled"], realised["scored"]) == (6_000, 3_000)
    assert window.windows[0].metrics["label_coverage"] == 1.0
    assert not [f for f in window.alerts() if f.monitor == "label_coverage"]
    # a regression tally stored before "labels" existed reads back with the old meaning
    from watchkeeper.profiles.core import Profile
    from watchkeeper.profiles.task import REGRESSION

    stored = window.windows[0].profile.to_dict()
    joint = stored["joint"][REGRESSION]
    old = np.zeros(int(np.prod(joint["shape"])))
    old[np.asarray(joint.get("at") or [], dtype=int)] = joint["values"]
    stored["joint"][REGRESSION] = {"shape": [7], "at": list(range(7)),
                                   "values": [float(v) for v in old[:7]]}
    upgraded = Profile.from_dict(stored).joint[REGRESSION]
    assert upgraded.shape == (8,) and upgraded[7] == upgraded[0] == 3_000


def test_confusion_matrix_is_reported(suite: wk.Suite, analysis: pa.Table,
                                      labels: pa.Table) -> None:
    w = suite.check(analysis.slice(0, 1_000), labels=labels).windows[0]
    confusion = w.metrics["confusion"]
    assert confusion["classes"] == ["0", "1"]
    assert np.asarray(confusion["matrix"]).sum() == 1_000


def test_the_suite_with_a_task_round_trips(suite: wk.Suite, tmp_path) -> None:
    suite.save(tmp_path / "a.yaml")
    wk.load(tmp_path / "a.yaml").save(tmp_path / "b.yaml")
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()
