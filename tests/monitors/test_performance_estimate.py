"""Label-free performance estimation (CBPE): calibrate the scores or use them as they are.

Synthetic models whose true P(label | score) is known, so an estimate is compared with the
window's *expected* accuracy (no label noise in the truth), plus exact merging of windows,
and the label model following a change in the mix of rows that standard CBPE misses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.baseline.estimators import CALIBRATION_TEST_ALPHA
from watchkeeper.monitors.estimate import EstimatedPerformance
from watchkeeper.profiles.core import merge
from watchkeeper.stats.metrics import calibration_test, score_means

Truth = Callable[[np.ndarray], np.ndarray]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


CALIBRATED: Truth = lambda s: s  # noqa: E731
OVERCONFIDENT: Truth = lambda s: _sigmoid(0.6 * _logit(s))  # noqa: E731


def make(n: int, truth: Truth, seed: int, shift: float = 0.0) -> tuple[pa.Table, np.ndarray]:
    """A model's scores (a covariate shift moves them), its labels drawn from ``truth`` and
    the expected correctness of each row (P(label == prediction))."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    score = _sigmoid(1.7 * x + 0.3 * rng.normal(size=n))
    label = (rng.random(n) < truth(score)).astype(np.int64)
    prediction = (score >= 0.5).astype(np.int64)
    correct = np.where(prediction == 1, truth(score), 1 - truth(score))
    table = pa.table({"id": np.arange(n), "x": x, "score": score, "prediction": prediction,
                      "label": label})
    return table, correct


def init(reference: pa.Table) -> wk.Suite:
    return wk.init(reference, target="label", prediction="prediction", proba="score", id="id")


def estimator(suite: wk.Suite) -> EstimatedPerformance:
    found = [m for m in suite.monitors if isinstance(m, EstimatedPerformance)]
    assert len(found) == 1
    return found[0]


def isotonic_error(suite: wk.Suite, analysis: pa.Table, correct: np.ndarray) -> float:
    """Accuracy error the isotonic table would have had (it is always fitted; kept here)."""
    from watchkeeper.profiles.task import PERFORMANCE
    from watchkeeper.stats.metrics import calibrate_bins, expected_binary

    ref_tally = suite.reference.joint[PERFORMANCE][:, :2, :2]
    cells = np.column_stack([calibrate_bins(ref_tally[:, p, 1], ref_tally[:, p, :].sum(axis=1))
                             for p in (0, 1)])
    window = suite.check(analysis).windows[0].profile.joint[PERFORMANCE].sum(axis=2)[:, :2]
    return expected_binary(window, cells, positive=1)["accuracy"] - float(correct.mean())


def test_calibrated_scores_are_used_as_they_are(tmp_path: Path) -> None:
    """Isotonic calibration of scores that are already calibrated only adds the noise of the
    reference's labels; the calibration test keeps them, and the estimate is then exact up
    to the score bins."""
    reference, _ = make(40_000, CALIBRATED, seed=1)
    suite = init(reference)
    calibration = estimator(suite).calibration
    test = calibration["calibration_test"]
    assert test["p_value"] >= CALIBRATION_TEST_ALPHA and test["df"] == 20
    assert calibration["method"].startswith("scores used as they are")
    path = tmp_path / "suite.yaml"
    suite.save(path)
    loaded = wk.load(path)
    for seed, shift in ((2, 0.0), (3, 0.5), (4, -0.7)):
        analysis, correct = make(20_000, CALIBRATED, seed=seed, shift=shift)
        window = suite.check(analysis).windows[0]
        error = window.metrics["estimated"]["accuracy"] - float(correct.mean())
        assert abs(error) < 3e-4, (shift, error)
        assert loaded.check(analysis).windows[0].metrics["estimated"] == window.metrics[
            "estimated"]
    # the isotonic table on the same reference is off by the reference's label noise
    assert abs(isotonic_error(suite, analysis, correct)) > abs(error)


def test_miscalibrated_scores_are_calibrated() -> None:
    reference, _ = make(40_000, OVERCONFIDENT, seed=5)
    suite = init(reference)
    calibration = estimator(suite).calibration
    assert calibration["calibration_test"]["p_value"] < 1e-6
    assert calibration["method"].startswith("isotonic")
    for seed, shift in ((6, 0.0), (7, 0.5), (8, -0.7)):
        analysis, correct = make(20_000, OVERCONFIDENT, seed=seed, shift=shift)
        estimate = suite.check(analysis).windows[0].metrics["estimated"]["accuracy"]
        score = analysis.column("score").to_numpy()
        as_they_are = float(np.mean(np.maximum(score, 1 - score)))
        assert abs(as_they_are - correct.mean()) > 0.05  # the raw scores would be far off
        assert abs(estimate - correct.mean()) < 0.005, (shift, estimate - correct.mean())


def _cells(score: np.ndarray, label: np.ndarray, bins: int = 50) -> tuple[np.ndarray, ...]:
    edges = np.quantile(score, np.linspace(0, 1, bins + 1)[1:-1])
    cell = np.searchsorted(edges, score) * 2 + (score >= 0.5)

    def per_cell(w: np.ndarray | None) -> np.ndarray:
        return np.bincount(cell, weights=w, minlength=2 * bins).reshape(bins, 2)

    return (per_cell(label.astype(float)), per_cell(score), per_cell(score * (1 - score)),
            per_cell(None))


def test_the_calibration_test_has_its_size_and_power() -> None:
    rng = np.random.default_rng(11)
    rejected = 0
    reps = 300
    for _ in range(reps):
        score = rng.beta(0.7, 0.7, 5_000)
        rejected += calibration_test(*_cells(score, rng.random(score.size) < score))[
            "p_value"] < 0.05
    assert 0.02 <= rejected / reps <= 0.09  # about 5% false rejections of calibrated scores
    score = rng.beta(0.7, 0.7, 20_000)
    for truth in (lambda s: _sigmoid(0.85 * _logit(s)), lambda s: _sigmoid(_logit(s) + 0.15)):
        assert calibration_test(*_cells(score, rng.random(score.size) < truth(score)))[
            "p_value"] < 0.01
    # scores of exactly 0 or 1 with the other label are not calibrated, whatever the rest
    out = calibration_test(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]]),
                           np.array([[0.0, 0.0]]), np.array([[3.0, 0.0]]))
    assert out["p_value"] == 0.0


def test_score_means_fill_empty_cells_from_their_neighbours() -> None:
    sums = np.array([[0.1, 0.0], [0.0, 0.0], [0.9, 1.6]])
    rows = np.array([[1, 0], [0, 0], [3, 2]])
    assert score_means(sums, rows).tolist() == [[0.1, 0.8], [0.2, 0.8], [0.3, 0.8]]


@pytest.mark.parametrize("truth", [CALIBRATED, OVERCONFIDENT], ids=["as-is", "isotonic"])
def test_windows_merge_exactly(truth: Truth) -> None:
    """A window's estimate depends only on its tallies (counts, and sums of probabilities on
    a 2^-20 grid, exact in float64): estimating merged windows
    gives exactly the estimate (and band) of the rows checked as one window."""
    suite = init(make(20_000, truth, seed=12)[0])
    analysis, _ = make(9_000, truth, seed=13, shift=0.3)
    monitor = estimator(suite)
    parts = suite.check(analysis, window_rows=2_000).windows
    whole = suite.check(analysis).windows[0]
    merged = merge(*(w.profile for w in parts))
    assert monitor.measure(merged)["estimated"] == whole.metrics["estimated"]
    assert monitor.measure(merged)["estimated_band"] == whole.metrics["estimated_band"]


def make_segments(n: int, seed: int, share_a: float) -> tuple[pa.Table, np.ndarray]:
    """A model over-confident for segment "a" and under-confident for "b", calibrated only
    on the reference's 50/50 mix of the two: P(label | score) moves with the mix, while
    P(label | score, segment) stays."""
    rng = np.random.default_rng(seed)
    segment = np.where(rng.random(n) < share_a, "a", "b")
    x = rng.normal(0.0, 1.0, n)
    score = _sigmoid(1.7 * x + 0.3 * rng.normal(size=n))
    truth = _sigmoid(_logit(score) * np.where(segment == "a", 0.5, 1.6))
    label = (rng.random(n) < truth).astype(np.int64)
    prediction = (score >= 0.5).astype(np.int64)
    correct = np.where(prediction == 1, truth, 1 - truth)
    table = pa.table({"id": np.arange(n), "x": x, "segment": segment, "score": score,
                      "prediction": prediction, "label": label})
    return table, correct


def test_label_model_follows_a_change_in_the_mix_of_rows(tmp_path: Path) -> None:
    """Standard CBPE assumes P(label | score) is as in the reference; when the mix of
    segments changes, it is not, and only the label model (P(label | score, inputs))
    follows. Each window is compared with its expected accuracy."""
    suite = init(make_segments(40_000, seed=21, share_a=0.5)[0])
    model = suite.schema.task.label_model
    assert model is not None and model.trees.trees > 0
    monitor = estimator(suite)
    # calibrated in the large: on the reference, expected = realised accuracy
    reference = make_segments(40_000, seed=21, share_a=0.5)[0]
    right = np.mean(reference.column("prediction").to_numpy() == reference.column(
        "label").to_numpy())
    assert abs(monitor.calibration["reference"]["accuracy"] - right) < 1e-4
    path = tmp_path / "suite.yaml"
    suite.save(path)
    loaded = wk.load(path)
    from watchkeeper.profiles.task import PERFORMANCE
    from watchkeeper.stats.metrics import expected_binary

    for seed, share_a in ((22, 0.5), (23, 0.9), (24, 0.1)):
        analysis, correct = make_segments(20_000, seed=seed, share_a=share_a)
        window = suite.check(analysis).windows[0]
        error = window.metrics["estimated"]["accuracy"] - float(correct.mean())
        counts = window.profile.joint[PERFORMANCE].sum(axis=2)[:, :2]
        standard = expected_binary(counts, np.asarray(monitor.calibration["calibration"]),
                                   positive=1)["accuracy"] - float(correct.mean())
        assert abs(error) < 0.004, (share_a, error)
        if share_a != 0.5:
            assert abs(standard) > 0.02, (share_a, standard)  # standard CBPE is far off
        assert loaded.check(analysis).windows[0].metrics["estimated"] == window.metrics[
            "estimated"]


def test_without_labeled_rows_enough_there_is_no_label_model() -> None:
    reference, _ = make(800, CALIBRATED, seed=25)
    suite = init(reference)
    assert suite.schema.task.label_model is None
    assert "no label model" in estimator(suite).calibration["method"]
    analysis, correct = make(5_000, CALIBRATED, seed=26)
    estimate = suite.check(analysis).windows[0].metrics["estimated"]["accuracy"]
    assert abs(estimate - correct.mean()) < 0.02


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: m.update(base=[[0.2, 1.7]]), "[0, 1]"),
        (lambda m: m["trees"].update(leaves="bm90IGZsb2F0cw=="), "leaves"),
        (lambda m: m["trees"]["order"].pop(), "permutation"),
        (lambda m: m["trees"].update(inputs=[[99, 0, 0, 0]] * len(m["trees"]["inputs"])),
         "inputs"),
        (lambda m: m.pop("base"), "malformed"),
    ],
)
def test_a_broken_label_model_is_refused_naming_it(tmp_path: Path, edit, problem: str) -> None:
    import yaml

    from watchkeeper.suite import file as suitefile

    path = tmp_path / "suite.yaml"
    init(make_segments(5_000, seed=27, share_a=0.5)[0]).save(path)
    doc = suitefile.parse(path.read_text(), "suite")  # the label model inline, as format 1
    edit(doc["task"]["label_model"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(wk.SuiteError) as info:
        wk.load(path)
    assert "task.label_model" in str(info.value) and problem in str(info.value), info.value


def test_the_label_model_takes_odd_rows_in_its_stride() -> None:
    """Unseen segments, a missing input column, NaN scores and unknown predictions are
    scored (unseen and missing values have bins of their own), never an exception."""
    suite = init(make_segments(20_000, seed=28, share_a=0.5)[0])
    analysis, _ = make_segments(2_000, seed=29, share_a=0.5)
    segment = np.asarray(analysis.column("segment").to_pylist(), dtype=object)
    segment[:300] = "never seen"
    score = analysis.column("score").to_numpy().copy()
    score[300:400] = np.nan
    prediction = analysis.column("prediction").to_numpy().astype(object)
    prediction[400:450] = None
    odd = (analysis.drop_columns(["x", "segment", "score", "prediction"])
           .append_column("segment", pa.array(segment.tolist()))
           .append_column("score", pa.array(score))
           .append_column("prediction", pa.array(prediction.tolist(), pa.int64())))
    window = suite.check(odd).windows[0]
    assert all(np.isfinite(v) for v in window.metrics["estimated"].values())
    assert suite.schema.task.label_model is not None


def _no_label_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard CBPE (the calibration table alone): the estimator that a change in the mix
    of segments makes wrong, with an error the sampling band knows nothing of."""
    import watchkeeper.baseline.estimators as estimators

    monkeypatch.setattr(estimators, "LABEL_MODEL_MIN_ROWS", 10**9)


@pytest.mark.slow
def test_the_band_covers_the_estimators_error_under_a_shift(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of the reference that differ in their mix of segments show the estimator's
    own error at init; the band carries it, so on shifted windows it covers the truth
    (each window's expected metrics), where the sampling band alone does not."""
    _no_label_model(monkeypatch)
    suite = init(make_segments(20_000, seed=31, share_a=0.5)[0])
    assert suite.schema.task.label_model is None
    monitor = estimator(suite)
    extra = monitor.calibration["shift_sd"]
    assert set(extra) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert extra["accuracy"] > 0.005
    sampling_only = EstimatedPerformance(calibration={
        k: v for k, v in monitor.calibration.items() if k != "shift_sd"})
    sampling_only.bind(suite.schema)
    covered = missed_before = 0
    for seed, share_a in ((32, 0.9), (33, 0.1), (34, 0.8), (35, 0.2)):
        analysis, correct = make_segments(20_000, seed=seed, share_a=share_a)
        window = suite.check(analysis).windows[0]
        lo, hi = window.metrics["estimated_band"]["accuracy"]
        truth = float(correct.mean())
        covered += lo <= truth <= hi
        before = sampling_only.measure(window.profile)["estimated_band"]["accuracy"]
        missed_before += not before[0] <= truth <= before[1]
        assert hi - lo < 0.25  # wider, not useless
    assert covered == 4
    assert missed_before >= 3


def test_on_unshifted_data_the_band_stays_near_the_sampling_band() -> None:
    """Calibrated scores and no shift: the estimator's own error is about nil, so what the
    band adds is the noise of measuring that on a dozen reference chunks, no more."""
    suite = init(make(20_000, CALIBRATED, seed=36)[0])
    monitor = estimator(suite)
    assert all(0.0 <= v < 0.015 for v in monitor.calibration["shift_sd"].values()), \
        monitor.calibration["shift_sd"]
    sampling_only = EstimatedPerformance(calibration={
        k: v for k, v in monitor.calibration.items() if k != "shift_sd"})
    sampling_only.bind(suite.schema)
    analysis, _ = make(20_000, CALIBRATED, seed=37)
    window = suite.check(analysis).windows[0]
    band = window.metrics["estimated_band"]["accuracy"]
    before = sampling_only.measure(window.profile)["estimated_band"]["accuracy"]
    assert band[0] <= before[0] and before[1] <= band[1]
    assert band[1] - band[0] < 3 * (before[1] - before[0])


def test_a_suite_without_shift_sd_keeps_the_sampling_band(tmp_path: Path) -> None:
    """A suite file calibrated before ``shift_sd`` existed loads, and its band is the
    sampling band it always had."""
    import yaml

    from watchkeeper.suite import file as suitefile

    suite = init(make(5_000, CALIBRATED, seed=38)[0])
    path = tmp_path / "suite.yaml"
    suite.save(path)
    doc = suitefile.parse(path.read_text(), str(path))  # artefacts inline, as format 1 had
    for m in doc["monitors"]:
        if m["type"] == "estimated_performance":
            del m["calibration"]["shift_sd"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    old = wk.load(path)
    analysis, _ = make(3_000, CALIBRATED, seed=39, shift=0.4)
    band = old.check(analysis).windows[0].metrics["estimated_band"]
    from watchkeeper.profiles.task import PERFORMANCE
    from watchkeeper.stats.metrics import bootstrap_expected_binary

    window = old.check(analysis).windows[0].profile
    counts = window.joint[PERFORMANCE].sum(axis=2)[:, :2]
    monitor = estimator(old)
    sampling = bootstrap_expected_binary(
        counts, monitor._table(window.joint, counts), positive=1,
        rng=np.random.default_rng([int(counts.sum()), 17]))
    assert band == {k: (max(sampling[k][0], 0.0), min(sampling[k][1], 1.0)) for k in band}


def test_an_estimate_alerts_only_when_its_band_clears_the_threshold() -> None:
    """A drop of the estimate past the threshold alerts while its band is past it too; the
    same window with an estimator known to err by more than the drop does not."""
    suite = init(make(20_000, CALIBRATED, seed=40)[0])
    monitor = estimator(suite)
    analysis, _ = make(20_000, CALIBRATED, seed=41)
    score = analysis.column("score").to_numpy()
    uncertain = analysis.filter(pa.array(np.abs(score - 0.5) < 0.2))  # a drop in accuracy
    window = suite.check(uncertain).windows[0].profile
    monitor.calibration["shift_sd"] = dict.fromkeys(monitor.calibration["shift_sd"], 0.0)
    found = [f for f in monitor.evaluate(window, suite.reference) if f.metric == "accuracy"]
    assert found, "the sampling band alone clears the threshold"
    f = found[0]
    lo, hi = f.evidence["band"]
    assert hi < f.threshold and lo <= f.value <= hi and "95% band" in f.message
    monitor.calibration["shift_sd"] = dict.fromkeys(monitor.calibration["shift_sd"], 0.1)
    assert monitor.evaluate(window, suite.reference) == []
