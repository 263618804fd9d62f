"""A regressor's estimated MAE, RMSE and MAPE come with a 95% band, as a classifier's do."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.monitors.estimate import BAND_AT_INIT


def rows(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    y = 50 + 3 * x + rng.normal(0, 1, n) * (1 + np.abs(x))
    return pa.table({"x": x, "z": rng.normal(size=n), "target": y, "prediction": 50 + 3 * x})


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(rows(20_000, 0), target="target", prediction="prediction", progress=False)


def test_band_covers_the_realised_metric_on_windows_without_drift(suite: wk.Suite) -> None:
    """40 windows of 500 rows from the reference's distribution: a 95% band covers the
    realised metric in at least 85% of them (binomial: P(≤ 34 of 40 | 0.95) < 2%), and no
    band is so wide that it would cover anything (width under half the metric)."""
    result = suite.check(rows(20_000, 1), window_rows=500)
    for k in ("mae", "rmse", "mape"):
        covered, widths = [], []
        for w in result.windows:
            m = w.metrics
            lo, hi = m["estimated_band_init"][k] if "estimated_band_init" in m else \
                m["estimated_band"][k]
            covered.append(lo <= m["realised"][k] <= hi)
            widths.append((hi - lo) / m["estimated"][k])
        assert np.mean(covered) >= 0.85, (k, np.mean(covered))
        assert np.median(widths) < 0.5, (k, np.median(widths))


def test_labels_reconcile_with_the_estimate_and_widen_later_bands(suite: wk.Suite) -> None:
    """With labels, each window reports its estimation error; once two earlier windows are
    labelled, a window's band comes from their errors too (and can exceed 1: errors are not
    shares)."""
    result = suite.check(rows(4_000, 2, shift=1.5), window_rows=1_000)
    first, *_, last = result.windows
    assert first.metrics["estimated_band_method"] == BAND_AT_INIT
    error = first.metrics["estimation_error"]
    assert error["mae"] == pytest.approx(first.metrics["estimated"]["mae"]
                                         - first.metrics["realised"]["mae"])
    assert last.metrics["estimated_band_method"].startswith("history")
    lo, hi = last.metrics["estimated_band"]["mae"]
    assert hi > 1.0 and lo <= last.metrics["estimated"]["mae"] <= hi
    init = last.metrics["estimated_band_init"]["mae"]
    assert lo <= init[0] and hi >= init[1]  # history only widens


def test_an_estimated_alert_needs_the_whole_band_past_the_threshold(suite: wk.Suite) -> None:
    worse = suite.check(rows(5_000, 3, shift=2.0).drop_columns(["target"]))
    found = [f for f in worse.alerts() if f.monitor == "estimated_performance"]
    assert {f.metric for f in found} >= {"mae", "rmse"}
    for f in found:
        assert f.evidence["band"][0] > f.threshold  # lower is better: the band's low end
    same = suite.check(rows(5_000, 4).drop_columns(["target"]))
    assert not [f for f in same.alerts() if f.monitor == "estimated_performance"]
