"""Bad input never crashes and never disappears: a clear error, or a counted finding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import watchkeeper as wk


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    rng = np.random.default_rng(0)
    n = 5_000
    return wk.init(pd.DataFrame({
        "amount": rng.lognormal(3, 1, n),
        "country": rng.choice(["fr", "de", "it", "es"], n),
        "user": [f"u{i}" for i in range(n)],  # free text / identifier: not a distribution
        "flag": rng.random(n) < 0.3,
    }))


def test_huge_categorical_cardinality_is_text_not_a_distribution(suite: wk.Suite) -> None:
    user = suite.schema["user"]
    assert user.kind == wk.Kind.TEXT and user.n_bins == 0
    assert {m.type for m in suite.monitors if m.column == "user"} == {"missing_rate"}


def test_all_nan_column_in_a_window_is_a_missing_rate_finding(suite: wk.Suite) -> None:
    window = pd.DataFrame({"amount": [np.nan] * 500, "country": ["fr"] * 500,
                           "user": ["x"] * 500, "flag": [True] * 500})
    found = {(f.monitor, f.column) for f in suite.check(window).alerts()}
    assert ("missing_rate", "amount") in found


def test_mixed_types_are_counted_invalid(suite: wk.Suite) -> None:
    amounts = [1.0, "12.5", "lots", None, float("inf"), 3] * 200
    window = pd.DataFrame({"amount": pd.Series(amounts, dtype=object),
                           "country": ["fr"] * 1200, "user": ["x"] * 1200, "flag": [1] * 1200})
    result = suite.check(window)
    amount = result.windows[0].profile.columns["amount"]
    assert (amount.count, amount.missing, amount.invalid) == (1200, 200, 400)
    assert amount.moments.n == 600  # 1.0, "12.5" and 3 per group of six
    assert ("invalid_rate", "amount") in {(f.monitor, f.column) for f in result.alerts()}


def test_unseen_categories_are_a_finding(suite: wk.Suite) -> None:
    window = pd.DataFrame({"amount": [20.0] * 400, "country": ["pl"] * 100 + ["fr"] * 300,
                           "user": ["x"] * 400, "flag": [False] * 400})
    unseen = [f for f in suite.check(window).alerts() if f.monitor == "unseen_category"]
    assert [(f.column, f.value) for f in unseen] == [("country", 0.25)]


def test_empty_data_is_a_one_line_error(suite: wk.Suite) -> None:
    with pytest.raises(wk.DataError, match="no rows to check"):
        suite.check(pa.table({"amount": pa.array([], pa.float64())}))
    with pytest.raises(wk.DataError, match="no rows"):
        wk.init(pd.DataFrame({"a": []}))


def test_wrong_python_types_are_clear_errors() -> None:
    with pytest.raises(wk.DataError, match="cannot use a int as data"):
        wk.init(42)
    with pytest.raises(wk.DataError, match="row 1 is a str"):
        wk.init([{"a": 1}, "b"])


def test_a_single_huge_batch_of_junk_rows_does_not_raise(suite: wk.Suite) -> None:
    junk = [{"amount": {"nested": i}, "country": [i], "user": b"\x00\xff", "flag": "maybe"}
            for i in range(300)]
    result = suite.check(junk)
    profile = result.windows[0].profile
    assert profile.columns["amount"].invalid == 300
    assert {f.monitor for f in result.alerts()} >= {"type_change", "invalid_rate"}


def test_event_times_that_name_no_window_are_windowed_at_arrival_and_counted(
        suite: wk.Suite) -> None:
    """±inf, 1e300, milliseconds sent as seconds or a time a year ahead name no window (the
    last would open one that closes only then): such rows go to the window of their arrival
    (as rows without a time do) and are counted, never dropped."""
    from datetime import timedelta

    from watchkeeper.online.monitor import OnlineMonitor

    live = OnlineMonitor(suite, window=timedelta(minutes=1), clock=lambda: 1_000.0)
    rows = pa.table({"amount": [1.0] * 8, "country": ["fr"] * 8}).append_column(
        "_ts", pa.array([1e300, -1e300, float("inf"), float("nan"), 1_700_000_000_000.0,
                         1_010.0, 1_000.0 + 365 * 86_400, 1_000.0 + 3_600]))
    assert live.ingest(rows) == 8
    assert sum(w.profile.rows for w in live.windows.values()) == 8
    assert sorted(live.windows) == [16, 76]  # the arrival's window; an hour ahead is skew
    assert live.counters["bad_timestamps"] == 5  # not the missing one
