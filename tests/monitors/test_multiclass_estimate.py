"""Multiclass estimation without labels: per-class scores calibrated one-vs-rest on the
reference, the expected confusion matrix per window, and its band; the monitor keeps the
per-monitor contract; realised metrics come in with late labels."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.baseline.multiclass import AS_IS, ClassCalibration, class_scores
from watchkeeper.monitors.contract import PROPERTIES, Case
from watchkeeper.profiles.task import row_codes
from watchkeeper.run.label_join import pack_codes, unpack_codes
from watchkeeper.stats.multiclass import (
    draw_expected_multiclass,
    expected_confusion,
    multiclass_report,
)

START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
CLASSES = ("low", "mid", "high")


def stream(hours: float, seed: int, *, shift: float = 0.0, rate_per_hour: int = 1_000,
           overconfident: float = 1.6) -> pa.Table:
    """A three-class model in production: labels drawn from softmax(true logits), scores
    an over-confident softmax of the same logits (so init must calibrate them); ``shift``
    moves the inputs (covariate shift: the class mix and the accuracy change)."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate_per_hour * hours)
    ts = np.sort(rng.uniform(START, START + hours * 3600, n))
    x = rng.normal(shift, 1.0, n)
    z = rng.normal(0.0, 1.0, n)
    logits = np.column_stack([-1.5 * x, 0.8 * z, 1.5 * x])
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = np.exp(overconfident * logits)
    scores /= scores.sum(axis=1, keepdims=True)
    label = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    names = np.array(CLASSES, dtype=object)
    return pa.table({
        "id": np.arange(n) + seed * 10_000_000,
        "ts": pa.array((ts * 1e6).astype("int64"), type=pa.timestamp("us", tz="UTC")),
        "x": x, "z": z,
        **{f"proba_{c}": np.round(scores[:, i], 6) for i, c in enumerate(CLASSES)},
        "prediction": names[scores.argmax(axis=1)],
        "label": names[label],
    })


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(stream(24, seed=1), timestamp="ts", target="label", id="id",
                   progress=False)


def monitor(suite: wk.Suite) -> wk.Monitor:
    return next(m for m in suite.monitors if m.type == "estimated_performance")


def test_init_finds_the_class_scores_and_calibrates_them(suite: wk.Suite) -> None:
    task = suite.schema.task
    assert task.type == "multiclass" and task.classes == ["high", "low", "mid"]
    assert task.class_probas == ["proba_high", "proba_low", "proba_mid"]
    cal = task.class_calibration
    assert cal is not None and cal.method == "isotonic"  # the scores are over-confident
    assert cal.test["p_value"] < 0.05
    m = monitor(suite)
    assert set(m.calibration["reference"]) == {"accuracy", "precision", "recall", "f1",
                                               "roc_auc"}
    assert all(v >= 0 for v in m.calibration["shift_sd"].values())


def test_the_estimate_follows_realised_accuracy_under_covariate_shift(suite: wk.Suite) -> None:
    """The scores alone (no labels) say how accuracy moves when the inputs shift; the
    raw, over-confident scores would overstate it."""
    for shift in (0.0, 1.0, -1.5):
        data = stream(8, seed=7, shift=shift)
        w = suite.check(data, window_rows=data.num_rows).windows[0]
        est, real = w.metrics, w.metrics["realised"]
        for name in ("accuracy", "f1", "roc_auc"):
            lo, hi = est["estimated_band"][name]
            assert lo <= real[name] <= hi, (shift, name, est["estimated"][name], real[name])
            assert abs(est["estimation_error"][name]) < 0.02, (shift, name)
        raw = class_scores(data, suite.schema.task.class_probas, 3)
        truth = np.array([suite.schema.task.classes.index(v)
                          for v in data.column("label").to_pylist()])
        assert abs(raw.max(axis=1).mean() - real["accuracy"]) > 0.03  # raw scores are off
        assert real["accuracy"] == pytest.approx((raw.argmax(axis=1) == truth).mean())


def test_a_shift_that_costs_accuracy_is_found_without_labels(suite: wk.Suite) -> None:
    data = stream(6, seed=8, shift=0.0).drop(["label"])
    worse = stream(6, seed=9, overconfident=1.6).drop(["label"])
    # rows where the model is unsure: inputs near the boundary between classes
    x = worse.column("x").to_numpy()
    near = worse.filter(pa.array(np.abs(x) < 0.3))
    found = suite.check(near, window_rows=near.num_rows).windows[0].findings
    est = [f for f in found if f.monitor == "estimated_performance"]
    assert {f.metric for f in est} >= {"accuracy"}, [(f.monitor, f.metric) for f in found]
    clean = suite.check(data, window_rows=data.num_rows).windows[0].findings
    assert not [f for f in clean if f.monitor == "estimated_performance"]


def test_a_list_column_of_scores_gives_the_same_estimate(suite: wk.Suite) -> None:
    data = stream(24, seed=1)
    scores = np.column_stack([data.column(f"proba_{c}").to_numpy() for c in
                              ("high", "low", "mid")])
    listed = data.drop([f"proba_{c}" for c in CLASSES]).append_column(
        "proba", pa.array(list(scores), type=pa.list_(pa.float64())))
    other = wk.init(listed, timestamp="ts", target="label", id="id", proba="proba",
                    progress=False)
    assert other.schema.task.class_probas == ["proba"]
    a = monitor(suite).calibration["reference"]
    b = monitor(other).calibration["reference"]
    assert b == pytest.approx(a, abs=1e-9)


def test_without_per_class_scores_init_says_what_to_name_them() -> None:
    from watchkeeper.suite.generate import not_generated

    data = stream(4, seed=2).rename_columns(
        ["id", "ts", "x", "z", "p1", "p2", "p3", "prediction", "label"])
    suite = wk.init(data, target="label", proba=["p1", "p2", "p3"], progress=False)
    reason = not_generated(suite.schema)["estimated_performance"]
    assert "proba_<class>" in reason and "'high'" in reason


def test_the_reason_for_skipping_estimation_survives_a_reload(tmp_path) -> None:
    from watchkeeper.suite.generate import not_generated

    data = stream(4, seed=2).rename_columns(
        ["id", "ts", "x", "z", "p1", "p2", "p3", "prediction", "label"])
    suite = wk.init(data, target="label", proba=["p1", "p2", "p3"], progress=False)
    reason = not_generated(suite.schema)["estimated_performance"]
    suite.save(tmp_path / "s.yaml")
    loaded = wk.load(tmp_path / "s.yaml")
    assert loaded.schema.task.estimation_skipped == reason
    assert not_generated(loaded.schema)["estimated_performance"] == reason
    assert "'high'" in reason


def _listed(data: pa.Table, name: str) -> pa.Table:
    scores = np.column_stack([data.column(f"proba_{c}").to_numpy()
                              for c in sorted(CLASSES)])  # in class order
    return data.drop([f"proba_{c}" for c in CLASSES]).append_column(
        name, pa.array(list(scores), type=pa.list_(pa.float64())))


def test_an_unnamed_list_column_of_class_scores_is_inferred(suite: wk.Suite) -> None:
    """A list column of floats summing to 1, as long as the classes, is taken as the
    class scores when none is named (init says so): the same suite as naming it."""
    from click.testing import CliRunner

    from watchkeeper.cli import main

    listed = _listed(stream(24, seed=1), "class_scores")
    inferred = wk.init(listed, timestamp="ts", target="label", id="id", progress=False)
    named = wk.init(listed, timestamp="ts", target="label", id="id", proba="class_scores",
                    progress=False)
    task = inferred.schema.task
    assert task.class_probas == ["class_scores"] and task.proba == "class_scores"
    assert any("'class_scores' inferred" in n for n in task.notes)
    assert inferred.schema.columns["class_scores"].role == named.schema.columns[
        "class_scores"].role
    assert [m.id for m in inferred.monitors] == [m.id for m in named.monitors]
    assert monitor(inferred).calibration == monitor(named).calibration
    assert monitor(inferred).calibration["reference"] == pytest.approx(
        monitor(suite).calibration["reference"], abs=1e-9)
    # a vector that does not sum to one, or two that fit, are not taken
    rng = np.random.default_rng(3)
    emb = pa.array(list(rng.random((listed.num_rows, 3))), type=pa.list_(pa.float64()))
    other = wk.init(listed.drop(["class_scores"]).append_column("emb", emb), target="label",
                    progress=False)
    assert other.schema.task.class_probas is None
    two = listed.append_column("copy", listed.column("class_scores"))
    both = wk.init(two, target="label", progress=False)
    assert both.schema.task.class_probas is None
    assert "name one with --proba" in both.schema.task.estimation_skipped
    path = f"{__import__('tempfile').mkdtemp()}/ref.parquet"
    import pyarrow.parquet as pq

    pq.write_table(listed.drop(["ts"]), path)
    out = CliRunner().invoke(main, ["init", path, "--target", "label", "-o",
                                    path.replace(".parquet", ".yaml")])
    assert out.exit_code == 0, out.output
    assert "'class_scores' inferred" in out.output


def test_the_suite_file_round_trips_the_calibration(suite: wk.Suite, tmp_path) -> None:
    suite.save(tmp_path / "s.yaml")
    loaded = wk.load(tmp_path / "s.yaml")
    assert loaded.schema.task.class_calibration == suite.schema.task.class_calibration
    data = stream(3, seed=4, shift=0.8)
    a = suite.check(data, window="1h").windows
    b = loaded.check(data, window="1h").windows
    assert [w.metrics["estimated_band"] for w in a] == [w.metrics["estimated_band"] for w in b]


def test_late_labels_bring_the_realised_metrics_beside_the_estimate(suite: wk.Suite) -> None:
    data = stream(4, seed=5, shift=0.5)
    labels = data.select(["id", "label"])
    unlabeled = data.drop(["label"])
    late = suite.check(unlabeled, window="2h", labels=labels).windows
    at_once = suite.check(data, window="2h").windows
    for w, v in zip(late, at_once, strict=True):
        assert w.metrics["realised"] == pytest.approx(v.metrics["realised"])
        err = w.metrics["estimation_error"]
        assert set(err) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}


def test_prediction_records_keep_the_class_scores(suite: wk.Suite) -> None:
    task = suite.schema.task
    codes = row_codes(stream(1, seed=6), task)
    back = unpack_codes(pack_codes(codes, task), codes.label, task)
    np.testing.assert_array_equal(back.class_bin, codes.class_bin)
    np.testing.assert_array_equal(back.class_p, codes.class_p)


@pytest.fixture(scope="module")
def case(suite: wk.Suite) -> Case:
    windows = suite.check(stream(60, seed=2), window="1h").windows
    bad = [{"ts": "2026-01-01T00:00:01Z", "x": "nan?", "proba_low": None, "proba_mid": 2.0,
            "proba_high": float("inf"), "prediction": 3, "label": "low"},
           {"ts": None, "x": float("inf"), "proba_low": "x", "prediction": None,
            "surprise": [1]}] * 60
    return Case(suite.schema, suite.reference, stream(2, seed=3), bad_rows=bad,
                windows=[w.profile for w in windows],
                span=(datetime.fromtimestamp(START, UTC),
                      datetime.fromtimestamp(START + 7200, UTC)))


@pytest.mark.parametrize("prop", sorted(PROPERTIES))
@pytest.mark.parametrize("monitor_type", ["estimated_performance", "performance"])
def test_contract(suite: wk.Suite, case: Case, monitor_type: str, prop: str) -> None:
    for m in [m for m in suite.monitors if m.type == monitor_type]:
        PROPERTIES[prop](m, case)


def test_the_sampling_band_covers_label_draws() -> None:
    """The tally's covariance is the one of labels drawn from the probabilities: the 95%
    band of the accuracy covers about 95% of simulated windows."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet([2, 1, 1], 2_000)
    pred = np.where(rng.random(2_000) < 0.8, p.argmax(axis=1), rng.integers(0, 3, 2_000))
    estimate = np.zeros((4, 1 + 3 + 9))
    for j in range(3):
        q = p[pred == j]
        estimate[j] = [len(q), *q.sum(axis=0), *(q[:, :, None] * q[:, None, :]).sum(0).ravel()]
    draws = draw_expected_multiclass(estimate, None, 2_000, rng)["accuracy"]
    lo, hi = np.quantile(draws, [0.025, 0.975])
    real = []
    for _ in range(400):
        y = (rng.random(2_000)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
        real.append((y == pred).mean())
    inside = np.mean((np.array(real) >= lo) & (np.array(real) <= hi))
    assert 0.9 <= inside <= 0.99
    expected = multiclass_report(expected_confusion(estimate))["accuracy"]
    assert expected == pytest.approx(np.mean(real), abs=0.003)


def test_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import f1_score, precision_score, recall_score

    rng = np.random.default_rng(1)
    y, pred = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    pred[:200] = y[:200]
    confusion = np.zeros((4, 5))
    np.add.at(confusion, (y, pred), 1)
    m = multiclass_report(confusion)
    assert m["precision"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert m["recall"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"))


def test_calibrated_scores_are_kept_as_they_are() -> None:
    rng = np.random.default_rng(2)
    p = rng.dirichlet([1, 1, 1], 5_000)
    y = (rng.random(5_000)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    cal = ClassCalibration.fit(p, y)
    assert cal.method == AS_IS
    np.testing.assert_allclose(cal.predict(p), p / p.sum(axis=1, keepdims=True))
    over = p ** 3 / (p ** 3).sum(axis=1, keepdims=True)
    fitted = ClassCalibration.fit(over, y)
    assert fitted.method == "isotonic"
    # calibrated: the mean probability of the true class matches how often it is the label
    q = fitted.predict(over)
    assert abs(q[np.arange(5_000), y].mean() - (q ** 2).sum(axis=1).mean()) < 0.01
    with pytest.raises(ValueError, match="edges"):
        ClassCalibration.from_dict({"method": "as_is", "edges": [[0.3, 0.2]]})


def test_class_score_columns_are_matched_by_a_shared_prefix() -> None:
    from watchkeeper.baseline.multiclass import match_class_scores

    table = pa.table({f"proba_{c}": [0.3, 0.4] for c in
                      ("never_married", "married", "formerly_married")} | {"score": [1, 2]})
    found, how = match_class_scores(table, table.column_names,
                                    ["formerly_married", "married", "never_married"])
    assert found == ["proba_formerly_married", "proba_married", "proba_never_married"], how
    found, how = match_class_scores(table, table.column_names, ["married", "single"])
    assert found is None and "'single'" in how and "'married'" not in how


def test_realised_roc_auc_from_the_binned_tally_is_close_to_the_exact_one(
        suite: wk.Suite) -> None:
    from sklearn.metrics import roc_auc_score

    data = stream(6, seed=11, shift=0.7)
    w = suite.check(data, window_rows=data.num_rows).windows[0]
    classes = suite.schema.task.classes
    scores = np.column_stack([data.column(f"proba_{c}").to_numpy() for c in classes])
    exact = roc_auc_score(data.column("label").to_pylist(), scores, multi_class="ovr",
                          average="macro", labels=classes)
    assert w.metrics["realised"]["roc_auc"] == pytest.approx(exact, abs=0.003)


def test_a_malformed_calibration_in_the_suite_file_is_an_error_naming_it(
        suite: wk.Suite) -> None:
    from watchkeeper.baseline.task import Task
    from watchkeeper.errors import SuiteError

    d = suite.schema.task.to_dict()
    assert Task.from_dict(d).class_calibration == suite.schema.task.class_calibration
    broken = {**d, "class_calibration": {**d["class_calibration"], "values": [[0.5]]}}
    with pytest.raises(SuiteError, match=r"task\.class_calibration"):
        Task.from_dict(broken)
    with pytest.raises(SuiteError, match=r"task\.class_probas"):
        Task.from_dict({**d, "class_probas": ["a", "b"]})
