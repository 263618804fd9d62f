"""Windowing of batch checks: by rows, by time (with gaps and volume), by a batch column."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.io.jsonable import RESULT_DIGITS, plain
from watchkeeper.report.text import check_text
from watchkeeper.run.check import WindowLength, parse_duration

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
    lines = check_text(result).splitlines()
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


# -- time windows: units and calendar alignment ------------------------------------------


def test_units_are_unambiguous() -> None:
    assert parse_duration("5m") == parse_duration("5min") == timedelta(minutes=5)
    assert parse_duration("1H") == timedelta(hours=1) and parse_duration("2w").days == 14
    with pytest.raises(wk.DataError, match=r"ambiguous; write 1min for minutes or 1mo"):
        parse_duration("1M")
    with pytest.raises(wk.DataError, match="calendar months have no fixed length"):
        parse_duration("1mo")  # the server's windows have a fixed length
    with pytest.raises(wk.DataError, match="whole"):
        WindowLength.parse("1.5d")


def stamped(start: datetime, days: int, per_day: int = 24) -> pa.Table:
    stamps = [start + timedelta(days=d, hours=24 * k / per_day) for d in range(days)
              for k in range(per_day)]
    rng = np.random.default_rng(0)
    return pa.table({"ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
                     "x": rng.normal(size=len(stamps))})


def test_month_windows_are_calendar_months(suite: wk.Suite) -> None:
    # data from 1 February: the first window is February, not 30 days from 15 January
    data = stamped(datetime(2026, 2, 1, tzinfo=UTC), days=28 + 31 + 15)
    result = suite.check(data, window="1mo")
    starts = [w.label.split("/")[0] for w in result.windows]
    assert starts == ["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00",
                      "2026-04-01T00:00:00+00:00"]
    assert [w.rows for w in result.windows] == [28 * 24, 31 * 24, 15 * 24]


def test_weeks_start_on_monday_and_days_at_local_midnight(suite: wk.Suite) -> None:
    data = stamped(datetime(2026, 3, 4, tzinfo=UTC), days=14)  # a Wednesday
    weeks = suite.check(data, window="1w")
    assert weeks.windows[0].label.startswith("2026-03-02T00:00:00+00:00/2026-03-09")
    assert weeks.windows[0].start == datetime(2026, 3, 4, tzinfo=UTC)  # clipped to the data
    assert weeks.windows[1].label.startswith("2026-03-09T00:00:00+00:00/")
    # days in Paris (UTC+1 in March before the 29th) start at 23:00 UTC
    days = suite.check(data, window="1d", tz="Europe/Paris")
    assert days.windows[1].label == "2026-03-05T00:00:00+01:00/2026-03-06T00:00:00+01:00"
    assert days.windows[1].rows == 24
    # the day clocks go forward has 23 hours
    spring = suite.check(stamped(datetime(2026, 3, 27, tzinfo=UTC), days=4), window="1d",
                         tz="Europe/Paris")
    day = next(w for w in spring.windows if w.label.startswith("2026-03-29"))
    assert day.label == "2026-03-29T00:00:00+01:00/2026-03-30T00:00:00+02:00"
    assert day.rows == 23
    with pytest.raises(wk.DataError, match="not a known time zone"):
        suite.check(data, window="1d", tz="Mars/Olympus")
    with pytest.raises(wk.SuiteError, match="time windows"):
        suite.check(data, window_rows=100, tz="Europe/Paris")


# -- verdicts: what could not be judged, and incidents ----------------------------------


def classified(n: int, seed: int) -> pa.Table:
    """A binary classifier's scored rows: one feature, a sensitive attribute, a label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    score = 1 / (1 + np.exp(-2 * x))
    return pa.table({"x": x, "sex": rng.choice(["a", "b"], n), "score": score,
                     "pred": (score > 0.5).astype(int),
                     "label": (rng.uniform(size=n) < score).astype(int)})


@pytest.fixture(scope="module")
def classifier() -> wk.Suite:
    return wk.init(classified(3000, 0), target="label", prediction="pred", proba="score")


def test_a_window_too_small_to_judge_is_not_evaluated_not_ok(classifier: wk.Suite) -> None:
    result = classifier.check(classified(1251, 1), window_rows=250)  # the last has 1 row
    last, full = result.windows[-1], result.windows[0]
    assert (full.status, last.status) == ("ok", "not_evaluated")
    doc = result.to_dict()["windows"][-1]
    assert doc["status"] == "not_evaluated"
    reasons = {u["monitor"]: u["reason"] for u in doc["not_evaluated"]}
    assert reasons["performance"] == "labeled n < 100"
    assert reasons["fairness"] == "groups n < 100"
    assert {u["status"] for u in doc["not_evaluated"]} == {"not_evaluated"}
    text = check_text(result)
    line = next(x for x in text.splitlines() if x.startswith("rows 1250-1250 "))
    assert "not evaluated: performance (labeled n < 100)" in line and " ok" not in line
    assert "nan" not in text.lower()
    assert "nan" not in json.dumps(result.to_dict()).lower()


def test_missing_model_outputs_make_performance_not_evaluated(classifier: wk.Suite) -> None:
    data = classified(1000, 2).drop_columns(["pred", "score"])
    result = classifier.check(data, window_rows=250)
    assert {f.monitor for f in result.findings} == {"missing_column"}
    reasons = {u.monitor: u.reason for u in result.windows[0].not_evaluated}
    assert reasons["performance"] == reasons["estimated_performance"] == "pred, score missing"
    assert reasons["fairness"] == "pred missing"
    (incident,) = result.incidents()
    assert incident["advice"]["diagnosis"] == "upstream data break"
    assert incident["title"] == "missing_column on 2 columns: pred, score"


def test_check_groups_findings_into_incidents_with_advice() -> None:
    from watchkeeper.alerts import Incident

    rng = np.random.default_rng(3)
    columns = [f"f{i}" for i in range(6)]
    reference = pa.table({c: rng.normal(size=5000) for c in columns})
    shift = np.repeat([0.0, 0.6], [1000, 4000])  # every column moves from the second window
    current = pa.table({c: rng.normal(size=5000) + shift for c in columns})
    result = wk.init(reference, multivariate=True).check(current, window_rows=1000)
    (incident,) = result.incidents()
    assert incident["title"] == "6 columns drifted together from window rows 1000-1999"
    assert sorted(a["column"] for a in incident["alerts"] if a["column"]) == columns
    # the joint distribution moved with them: one change, one incident
    assert [a["monitor"] for a in incident["alerts"] if not a["column"]] == \
        ["multivariate_drift"]
    assert incident["advice"]["diagnosis"] == "covariate drift"
    assert incident["advice"]["actions"]
    assert {c["name"] for c in incident["advice"]["causes"]} == set(columns)
    # the server's incident view: the incident's fields and its advice
    assert set(incident) == {*Incident("x", "m", "w", T0).to_dict(), "advice"}
    doc = result.to_dict()
    assert doc["incidents"] == plain([incident], digits=RESULT_DIGITS)  # six digits
    memberships = {f["alert"]["incident"] for w in doc["windows"] for f in w["findings"]
                   if f["monitor"] == "feature_drift"}
    assert memberships == {incident["id"]}
    text = check_text(result).splitlines()
    assert text[0] == "1 incident(s)" and text[4].startswith("   diagnosis: covariate drift")
    assert any(x.startswith("     - ") for x in text)  # actions
    assert sum("feature_drift" in x for x in text) == 6 * 4  # its findings, under it
