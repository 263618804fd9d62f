"""Detection quality on synthetic data with known drift (issue #2, must-show 1 and 2)."""

from __future__ import annotations

import pytest

import watchkeeper as wk
from watchkeeper.io.datasets import DRIFTED_COLUMNS, synthetic_drift_pair


def drifted_columns(result: wk.CheckResult) -> set[str]:
    return {f.column for f in result.alerts() if f.family == "drift"}


@pytest.mark.parametrize(
    "rows",
    [10_000, 100_000, pytest.param(1_000_000, marks=pytest.mark.slow)],
)
def test_exactly_the_drifted_columns_are_flagged(rows: int) -> None:
    reference, current = synthetic_drift_pair(rows, seed=0)
    suite = wk.init(reference)
    result = suite.check(current)
    assert drifted_columns(result) == set(DRIFTED_COLUMNS)
    # and nothing else alerts: no quality finding on clean synthetic data
    assert {f.column for f in result.alerts()} == set(DRIFTED_COLUMNS)


def test_every_window_measures_every_column_against_its_threshold() -> None:
    """Drift measures exist for every monitored column, alert or not: equal to the
    finding's value where a column drifted, below the threshold where it did not."""
    reference, current = synthetic_drift_pair(20_000, seed=0)
    suite = wk.init(reference)
    result = suite.check(current, window_rows=5_000)
    monitored = {m.column for m in suite.monitors if m.type == "feature_drift"}
    assert len(result.windows) == 4
    for w in result.windows:
        drift = {c: e for c, e in w.metrics["drift"].items() if "monitor" not in e}
        assert set(drift) == monitored == set(reference.column_names)
        found = {f.column: f for f in w.findings if f.monitor == "feature_drift"}
        assert set(found) == set(DRIFTED_COLUMNS)
        for column, entry in drift.items():
            assert set(entry) == {"js", "threshold", "psi"}
            if column in found:
                f = found[column]
                assert entry["js"] == pytest.approx(f.value, rel=1e-3)
                assert entry["threshold"] == pytest.approx(f.threshold, rel=1e-3)
                assert entry["psi"] == pytest.approx(f.evidence["psi"], rel=1e-3)
                assert entry["js"] > entry["threshold"]
            else:
                assert entry["js"] < entry["threshold"]
    # compact in the JSON stored per window: four significant digits
    stored = result.to_dict()["windows"][0]["metrics"]["drift"]
    assert all(float(f"{v:.4g}") == v for e in stored.values() for v in e.values()
               if not isinstance(v, str))  # the "monitor" tag


def test_model_output_and_target_drift_are_named_in_the_measures() -> None:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    n = 5_000
    x = rng.normal(size=n)
    table = pa.table({"x": x, "prediction": (x > 0).astype(int),
                      "label": (x + rng.normal(size=n) > 0).astype(int)})
    suite = wk.init(table, target="label")
    drift = suite.check(table).windows[0].metrics["drift"]
    assert drift["prediction"]["monitor"] == "prediction_drift"
    assert drift["label"]["monitor"] == "target_drift"
    assert "monitor" not in drift["x"]


def test_no_drift_pair_gives_no_alert() -> None:
    reference, current = synthetic_drift_pair(100_000, seed=4, drift=False)
    assert wk.init(reference).check(current).alerts() == []


@pytest.mark.slow
@pytest.mark.parametrize("window_rows", [1_000, 10_000])
def test_no_drift_windows_stay_within_the_alert_budget(window_rows: int) -> None:
    """200 windows drawn from the reference distribution: at the default budget (1 false
    alert per 100 windows) at most 2 windows may carry any alert."""
    reference, _ = synthetic_drift_pair(50_000, seed=1, drift=False)
    _, stream = synthetic_drift_pair(200 * window_rows, seed=2, drift=False)
    result = wk.init(reference).check(stream, window_rows=window_rows)
    assert len(result.windows) == 200
    alerted = [w.label for w in result.windows if any(f.severity.rank >= 1 for f in w.findings)]
    print(f"window_rows={window_rows}: {len(alerted)} of 200 windows with an alert")
    assert len(alerted) <= 2


def test_small_drift_below_min_effect_is_quiet_in_huge_windows() -> None:
    """A statistically certain but practically trivial shift (0.02 sd) must not alert."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    reference = pa.table({"x": rng.normal(0, 1, 200_000)})
    current = pa.table({"x": rng.normal(0.02, 1, 1_000_000)})
    suite = wk.init(reference)
    assert suite.check(current).alerts() == []
    shifted = pa.table({"x": rng.normal(0.5, 1, 1_000_000)})
    assert {f.monitor for f in suite.check(shifted).alerts()} == {"feature_drift"}
