"""Windowing of batch checks: by rows, by time (with gaps and volume), by a batch column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.check import parse_duration

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def events(hours: int, seed: int, per_hour: int = 500, skip: range = range(0),
           burst: dict[int, int] | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    stamps, xs = [], []
    for h in range(hours):
        n = 0 if h in skip else rng.poisson((burst or {}).get(h, 1) * per_hour)
        stamps += [T0 + timedelta(hours=h, seconds=float(s)) for s in rng.uniform(0, 3600, n)]
        xs += list(rng.normal(0, 1, n))
    return pa.table({"ts": pa.array(stamps, pa.timestamp("us", tz="UTC")), "x": xs})


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(events(72, seed=1), timestamp="ts")


def test_row_windows_cover_every_row_once(suite: wk.Suite) -> None:
    result = suite.check(events(10, seed=2), window_rows=700)
    rows = [w.rows for w in result.windows]
    assert sum(rows) == sum(w.profile.rows for w in result.windows)
    assert all(r == 700 for r in rows[:-1]) and 0 < rows[-1] <= 700
    assert [w.label for w in result.windows][:2] == ["rows 0-699", "rows 700-1399"]


def test_time_windows_are_aligned_and_clean_data_is_quiet(suite: wk.Suite) -> None:
    result = suite.check(events(24, seed=3), window="1h")
    assert len(result.windows) == 24
    assert result.windows[1].label.startswith("2026-03-01T01:00:00+00:00/")
    assert result.alerts() == []
    # the text table reads the ISO range as a date and clocks (the JSON keeps the range)
    lines = result.to_text().splitlines()
    assert lines[2].startswith("2026-03-01 01:00–02:00 UTC ") and "+00:00" not in lines[2]


def test_a_gap_and_a_burst_are_volume_findings(suite: wk.Suite) -> None:
    data = events(24, seed=4, skip=range(10, 12), burst={20: 3})
    result = suite.check(data, window="1h")
    assert len(result.windows) == 24, "empty windows are still evaluated"
    volume = {w.label[11:16]: f for w in result.windows for f in w.findings
              if f.monitor == "volume"}
    assert set(volume) == {"10:00", "11:00", "20:00"}
    assert volume["10:00"].severity == wk.Severity.CRITICAL and volume["10:00"].value == 0
    assert volume["20:00"].value > 1000 and "spike" in volume["20:00"].message


def test_rows_without_a_timestamp_are_kept_in_their_own_window(suite: wk.Suite) -> None:
    data = events(3, seed=5)
    ts = data.column("ts").to_pylist()
    ts[:25] = [None] * 25
    data = data.set_column(0, "ts", pa.array(ts, pa.timestamp("us", tz="UTC")))
    result = suite.check(data, window="1h")
    assert result.windows[-1].label == "missing timestamp"
    assert result.windows[-1].rows == 25
    assert sum(w.rows for w in result.windows) == data.num_rows


def test_window_by_a_batch_column() -> None:
    rng = np.random.default_rng(0)
    reference = pa.table({"x": rng.normal(0, 1, 5000)})
    batches = pa.table({
        "batch": ["b"] * 3000 + ["a"] * 3000 + [None] * 10,
        "x": np.concatenate([rng.normal(2, 1, 3000), rng.normal(0, 1, 3010)]),
    })
    result = wk.init(reference).check(batches, window_by="batch")
    assert [(w.label, w.rows) for w in result.windows] == [
        ("batch=a", 3000), ("batch=b", 3000), ("batch missing", 10)]
    assert [bool(w.findings) for w in result.windows[:2]] == [False, True]


@pytest.mark.parametrize("text", ["", "0h", "-1d", "1y", "abc"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(wk.DataError):
        parse_duration(text)


def test_only_one_way_of_windowing(suite: wk.Suite) -> None:
    with pytest.raises(wk.SuiteError, match="one of"):
        suite.check(events(1, seed=6), window="1h", window_rows=10)
