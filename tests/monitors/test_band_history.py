"""The estimated-performance band widened by the errors of earlier labelled windows.

A simulated change of P(label | inputs) with known truth: the label-free estimate is then
off by more than its init-time band allows, and once earlier windows' labels are in, a
window's band covers its realised metric. Only earlier windows may inform a window.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.monitors.estimate import (
    BAND_AT_INIT,
    ESTIMATED,
    MIN_LABELLED_WINDOWS,
    LabelledError,
    history_band,
    labelled_error,
)
from watchkeeper.run.check import CheckResult
from watchkeeper.stats.metrics import error_band

WINDOW = 2_000


def rows(n: int, seed: int, label_shift: float = 0.0, first_id: int = 0, *,
         sharpness: float = 1.0, spread: float = 1.0) -> pa.Table:
    """Scores of a model and labels drawn from P(label) = sigmoid(sharpness · logit(score)
    − shift): otherwise than 1 and 0, the scores no longer say how often the label is
    positive. ``spread``: the sd of the input (less: more rows with unsure scores)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, spread, n)
    score = 1 / (1 + np.exp(-(1.7 * x + 0.3 * rng.normal(size=n))))
    truth = 1 / (1 + np.exp(-(sharpness * np.log(score / (1 - score)) - label_shift)))
    return pa.table({"id": np.arange(first_id, first_id + n), "x": x, "score": score,
                     "prediction": (score >= 0.5).astype(np.int64),
                     "label": (rng.random(n) < truth).astype(np.int64)})


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(rows(6_000, seed=1), target="label", prediction="prediction",
                   proba="score", id="id", progress=False)


@pytest.fixture(scope="module")
def drifted() -> pa.Table:
    """Eight windows after P(label | inputs) changed (fewer positives than scored)."""
    return rows(8 * WINDOW, seed=2, label_shift=1.0, first_id=10**6)


def check(suite: wk.Suite, table: pa.Table, labelled: bool = True) -> CheckResult:
    data = table.drop_columns(["label"])
    labels = table.select(["id", "label"]) if labelled else None
    return suite.check(data, labels=labels, window_rows=WINDOW, progress=False)


def estimated_findings(findings: list) -> list[dict]:
    return [f.to_dict() for f in findings if f.monitor == "estimated_performance"]


def covers(band: list[float] | tuple[float, float], value: float) -> bool:
    return band[0] <= value <= band[1]


def test_after_labelled_windows_the_band_covers_a_change_of_the_label_relation(
        suite: wk.Suite, drifted: pa.Table) -> None:
    result = check(suite, drifted)
    later = result.windows[MIN_LABELLED_WINDOWS:]
    assert [w.metrics["estimated_band_method"] for w in result.windows[
        :MIN_LABELLED_WINDOWS]] == [BAND_AT_INIT] * MIN_LABELLED_WINDOWS
    assert all(w.metrics["estimated_band_method"].startswith("history") for w in later)
    init_misses = 0
    for w in later:
        realised = w.metrics["realised"]
        for k in ESTIMATED:
            assert covers(w.metrics["estimated_band"][k], realised[k]), (w.label, k)
            init_misses += not covers(w.metrics["estimated_band_init"][k], realised[k])
            # the band only widens, and still holds the estimate
            lo, hi = w.metrics["estimated_band"][k]
            ilo, ihi = w.metrics["estimated_band_init"][k]
            assert lo <= ilo and hi >= ihi and lo <= w.metrics["estimated"][k] <= hi
        assert w.metrics["estimated_error_mean"]["precision"] < -0.05  # seen: too optimistic
    # the init band alone misses most of them: the estimator's error is not sampling noise
    assert init_misses > len(later) * len(ESTIMATED) / 2


def test_a_false_alert_stops_once_labels_show_the_estimate_too_low(suite: wk.Suite) -> None:
    """More rows with unsure scores lower the estimate past its threshold, but the labels
    now follow the inputs more closely than the scores say: the realised metrics hold up.
    With the init band the estimate alerts in every window; once earlier windows' labels
    show the estimate too low, a window's band reaches back over the threshold."""
    table = rows(8 * WINDOW, seed=4, first_id=10**6, sharpness=4.0, spread=0.4)
    result = check(suite, table)
    alerted = [bool(estimated_findings(w.findings)) for w in result.windows]
    monitor = next(m for m in suite.monitors if m.type == "estimated_performance")
    on_init = [bool(monitor.judge(w.profile, w.metrics["estimated"],
                                  w.metrics.get("estimated_band_init",
                                                w.metrics["estimated_band"])))
               for w in result.windows]
    assert all(on_init)
    assert alerted == [True] * MIN_LABELLED_WINDOWS + [False] * (8 - MIN_LABELLED_WINDOWS)


def test_without_labels_the_band_is_the_one_set_at_init(suite: wk.Suite,
                                                        drifted: pa.Table) -> None:
    unlabelled = check(suite, drifted, labelled=False)
    labelled = check(suite, drifted)
    for u, w in zip(unlabelled.windows, labelled.windows, strict=True):
        assert u.metrics["estimated_band_method"] == BAND_AT_INIT
        assert "estimated_band_init" not in u.metrics
        assert u.metrics["estimated"] == w.metrics["estimated"]  # the estimate never moves
        assert u.metrics["estimated_band"] == w.metrics.get("estimated_band_init",
                                                            w.metrics["estimated_band"])


def test_only_earlier_windows_inform_a_window(suite: wk.Suite, drifted: pa.Table) -> None:
    """The first five windows report the same bands whether or not later windows exist,
    and a window's band does not use its own labels."""
    whole = check(suite, drifted)
    first = check(suite, drifted.slice(0, 5 * WINDOW))
    for a, b in zip(first.windows, whole.windows[:5], strict=False):
        assert a.metrics["estimated_band"] == b.metrics["estimated_band"]
    # relabelling window 3 (index 3) moves the bands after it, not its own or earlier ones
    labels = drifted.column("label").to_numpy().copy()
    part = slice(3 * WINDOW, 4 * WINDOW)
    labels[part] = 1 - labels[part]
    flipped = check(suite, drifted.set_column(drifted.column_names.index("label"), "label",
                                              pa.array(labels)))
    for i, (a, b) in enumerate(zip(whole.windows, flipped.windows, strict=True)):
        same = a.metrics["estimated_band"] == b.metrics["estimated_band"]
        assert same == (i <= 3), i


def test_labels_added_later_widen_the_later_windows_as_at_once(suite: wk.Suite,
                                                               drifted: pa.Table) -> None:
    at_once = check(suite, drifted)
    later = check(suite, drifted, labelled=False)
    later.add_labels(drifted.select(["id", "label"]).slice(0, 3 * WINDOW))
    methods = [w.metrics["estimated_band_method"] for w in later.windows]
    assert methods[:2] == [BAND_AT_INIT] * 2 and all(m != BAND_AT_INIT for m in methods[2:])
    later.add_labels(drifted.select(["id", "label"]).slice(3 * WINDOW))
    for a, b in zip(at_once.windows, later.windows, strict=True):
        assert a.metrics["estimated_band"] == b.metrics["estimated_band"]
        assert estimated_findings(a.findings) == estimated_findings(b.findings)


def test_the_json_result_keeps_its_shape(suite: wk.Suite, drifted: pa.Table) -> None:
    doc = json.loads(json.dumps(check(suite, drifted).to_dict()))
    last = doc["windows"][-1]["metrics"]
    assert set(last["estimated_band"]) == set(last["estimated"]) == set(ESTIMATED)
    assert all(len(v) == 2 for v in last["estimated_band"].values())
    assert last["estimated_band_method"].startswith("history")
    assert set(doc) >= {"suite", "windows", "incidents"}


def test_history_band_needs_enough_labelled_windows() -> None:
    metrics = {"estimated": {"accuracy": 0.8}, "estimated_band": {"accuracy": (0.78, 0.82)},
               "estimated_sampling_sd": {"accuracy": 0.01}}
    seen = LabelledError({"accuracy": -0.1}, {"accuracy": 0.01})
    assert history_band(metrics, [seen] * (MIN_LABELLED_WINDOWS - 1)) == {}
    update = history_band(metrics, [seen] * MIN_LABELLED_WINDOWS)
    lo, hi = update["estimated_band"]["accuracy"]
    assert lo < 0.7 and hi == 0.82  # towards the errors seen; the init band's other end
    assert history_band({**metrics, **update}, [seen] * 2) == update  # applied again: same


def test_history_band_reads_metrics_as_reported_in_json(suite: wk.Suite,
                                                        drifted: pa.Table) -> None:
    """The server can call it on stored metrics: JSON lists, and null for a metric with no
    value (a window predicting no positive has no precision)."""
    result = check(suite, drifted)
    stored = [json.loads(json.dumps(w.to_dict()["metrics"])) for w in result.windows]
    earlier = [e for i, m in enumerate(stored[:-1])
               if (e := labelled_error(m, result.windows[i].rows)) is not None]
    last = {k: v for k, v in stored[-1].items() if k != "estimated_band_init"}
    last["estimated_band"] = stored[-1]["estimated_band_init"]
    update = history_band(last, earlier)
    for k, (lo, hi) in update["estimated_band"].items():
        assert lo == pytest.approx(stored[-1]["estimated_band"][k][0], abs=1e-5)
        assert hi == pytest.approx(stored[-1]["estimated_band"][k][1], abs=1e-5)
    last["estimated"]["precision"] = None
    last["estimation_error"] = {**last.get("estimation_error", {}), "precision": None}
    assert history_band(last, earlier)["estimated_band"]["precision"] == tuple(
        last["estimated_band"]["precision"])
    assert labelled_error(last, WINDOW) is not None


def test_error_band_predicts_from_the_errors_mean_and_spread() -> None:
    rng = np.random.default_rng(3)
    errors = rng.normal(-0.05, 0.02, 30)
    lo, hi = error_band(0.8, 0.01, errors[:-1], np.full(29, 0.005))
    assert lo < 0.75 < hi < 0.8
    assert np.isnan(error_band(0.8, 0.01, errors[:1], np.full(1, 0.005))).all()


def test_a_server_folding_the_windows_widens_the_band_as_a_batch_check(
        suite: wk.Suite, drifted: pa.Table) -> None:
    """The online monitor (what ``watchkeeper serve`` folds with) gives each window the band
    and estimated-performance findings of the batch check, labels at once or later."""
    from datetime import timedelta

    from watchkeeper.online.monitor import OnlineMonitor

    batch = check(suite, drifted)
    minute = 60.0
    ts = pa.array(np.repeat(np.arange(len(batch.windows)) * minute + 1.0, WINDOW))
    events = drifted.drop_columns(["label"]).append_column("_ts", ts)
    for labels_first in (True, False):
        live = OnlineMonitor(suite, window=timedelta(minutes=1), grace=timedelta(0),
                             clock=lambda: 0.0)
        live.ingest(events)
        if labels_first:
            live.ingest_labels(drifted.select(["id", "label"]))
            live.tick(now=600.0)
        else:  # windows judged without labels, then labels in two parts, oldest last
            live.tick(now=600.0)
            live.ingest_labels(drifted.select(["id", "label"]).slice(3 * WINDOW))
            live.ingest_labels(drifted.select(["id", "label"]).slice(0, 3 * WINDOW))
        results = [live.windows[k].result for k in sorted(live.windows)]
        for a, b in zip(batch.windows, results, strict=True):
            assert b is not None
            assert a.metrics["estimated_band_method"] == b.metrics["estimated_band_method"]
            assert a.metrics["estimated_band"] == b.metrics["estimated_band"]
            assert estimated_findings(a.findings) == [
                {**f, "window": a.label} for f in estimated_findings(b.findings)]
