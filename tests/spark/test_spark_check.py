"""watchkeeper.spark.check gives the local engine's result on the same rows: every count
exactly, every statistic within floating-point rounding, the same findings and incidents."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

import watchkeeper as wk
import watchkeeper.spark as wks
from tests.helpers import ACS
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.datasets import synthetic_drift_pair

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # a Spark session takes seconds to start


def assert_close(local: Any, spark: Any, where: str = "result") -> None:
    """Equal, but floats only within rounding (merged moments are summed in another order)."""
    if isinstance(local, dict):
        assert isinstance(spark, dict) and list(local) == list(spark), where
        for k in local:
            assert_close(local[k], spark[k], f"{where}.{k}")
    elif isinstance(local, list):
        assert isinstance(spark, list) and len(local) == len(spark), where
        for i, (a, b) in enumerate(zip(local, spark, strict=True)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(local, float) and not isinstance(spark, bool):
        assert isinstance(spark, (int, float)), where
        assert (math.isnan(local) and math.isnan(spark)) or math.isclose(
            local, spark, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {local} != {spark}"
    else:
        assert local == spark, f"{where}: {local!r} != {spark!r}"


def assert_same_result(local: wk.CheckResult, spark: wk.CheckResult) -> None:
    assert [(w.label, w.rows) for w in spark.windows] == [(w.label, w.rows)
                                                          for w in local.windows]
    for a, b in zip(local.windows, spark.windows, strict=True):
        pa_, pb = a.profile.to_dict(), b.profile.to_dict()
        for name, column in pa_["columns"].items():  # counts exactly, bins included
            exact = {k: v for k, v in column.items() if k != "moments"}
            assert {k: pb["columns"][name][k] for k in exact} == exact, (a.label, name)
        assert_close(pa_, pb, f"profile {a.label}")  # integer tallies exactly
        assert [(f.monitor, f.column, f.segment, f.metric, f.severity) for f in b.findings] \
            == [(f.monitor, f.column, f.segment, f.metric, f.severity) for f in a.findings]
    assert spark.unmatched_labels == local.unmatched_labels
    assert_close(local.to_dict(), spark.to_dict())  # statuses, metrics, incidents


@pytest.fixture(scope="module")
def acs_parts(tmp_path_factory: pytest.TempPathFactory, acs_analysis: pa.Table) -> Path:
    """The first 100k ACS analysis rows in one Parquet file of 10 row groups, which Spark reads as
    several partitions (spark.sql.files.maxPartitionBytes below)."""
    path = tmp_path_factory.mktemp("spark") / "analysis.parquet"
    pq.write_table(acs_analysis.slice(0, 100_000), path, row_group_size=10_000)
    return path


@pytest.mark.slow
def test_acs_by_year_with_late_labels_equals_local(spark: SparkSession, acs_suite: wk.Suite,
                                                   acs_analysis: pa.Table,
                                                   acs_labels: pa.Table) -> None:
    df = wks.read(spark, ACS / "employment_MA_analysis.pq")
    labels = wks.read(spark, ACS / "employment_MA_analysis_target.pq")
    got = wks.check(df, acs_suite, window_by="year", labels=labels)
    want = acs_suite.check(acs_analysis, window_by="year", labels=acs_labels)
    assert [w.label for w in got.windows] == ["year=2016", "year=2017", "year=2018"]
    assert sum(w.rows for w in got.windows) == acs_analysis.num_rows
    assert any(w.findings for w in got.windows)  # there is something to agree on
    assert "realised" in got.windows[0].metrics  # the labels were joined
    assert_same_result(want, got)
    with pytest.raises(DataError, match="keeps no prediction ids on the driver"):
        got.add_labels(acs_labels)


@pytest.mark.slow
def test_acs_row_windows_keep_the_row_order_across_partitions(
        spark: SparkSession, acs_suite: wk.Suite, acs_analysis: pa.Table,
        acs_labels: pa.Table, acs_parts: Path) -> None:
    spark.conf.set("spark.sql.files.maxPartitionBytes", "256k")
    try:
        df = wks.read(spark, acs_parts)
        assert df.rdd.getNumPartitions() > 2
        # labels shuffled and some given twice (the last counts) or for no prediction
        rng = np.random.default_rng(3)
        shuffled = acs_labels.take(rng.permutation(acs_labels.num_rows))
        stale = shuffled.slice(0, 500).set_column(1, "employed", pa.array(
            1 - shuffled.column("employed").to_numpy()[:500]))
        strangers = pa.table({"id": pa.array(np.arange(10**9, 10**9 + 7)),
                              "employed": pa.array(np.ones(7, dtype=np.int64))})
        labels = pa.concat_tables([stale, shuffled, strangers])
        path = acs_parts.with_name("labels.parquet")
        pq.write_table(labels, path)
        got = wks.check(df, acs_suite, window_rows=30_000, labels=wks.read(spark, path))
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    want = acs_suite.check(acs_analysis.slice(0, 100_000), window_rows=30_000, labels=labels)
    assert got.unmatched_labels == want.unmatched_labels > 7  # the strangers, later rows
    assert [w.rows for w in got.windows] == [30_000, 30_000, 30_000, 10_000]
    assert_same_result(want, got)


def _served(n: int, seed: int, days: list[int]) -> pa.Table:
    """Synthetic predictions with every role: id, time, client, a sensitive group, a
    score and a label; spread over the given days of December 2026."""
    _, features = synthetic_drift_pair(n, seed=seed)
    rng = np.random.default_rng(seed)
    score = rng.uniform(size=n)
    day0 = datetime(2026, 12, 1, tzinfo=UTC)
    stamps = [day0 + timedelta(days=int(d), seconds=int(s))
              for d, s in zip(rng.choice(days, n), rng.integers(0, 86_400, n), strict=True)]
    stamps[::97] = [None] * len(stamps[::97])  # some rows have no time
    return features.append_column("id", pa.array(np.arange(n) + seed * 10**6)) \
        .append_column("ts", pa.array(stamps, pa.timestamp("us", tz="UTC"))) \
        .append_column("client", pa.array(rng.choice(["a", "b", "c", "bot"], n))) \
        .append_column("score", pa.array(score)) \
        .append_column("pred", pa.array((score > 0.5).astype(np.int64))) \
        .append_column("y", pa.array((rng.uniform(size=n) < score).astype(np.int64)))


@pytest.mark.slow
def test_time_windows_with_every_family_equal_local(spark: SparkSession,
                                                     tmp_path: Path) -> None:
    reference, _ = synthetic_drift_pair(4_000, seed=5, drift=False)
    ref = _served(4_000, 5, [0]).drop_columns(list(reference.column_names)) \
        .append_column("cat_00", reference.column("cat_00")) \
        .append_column("num_00", reference.column("num_00"))
    suite = wk.init(ref, target="y", prediction="pred", proba="score", id="id",
                    timestamp="ts", client="client", sensitive="cat_00")
    current = _served(6_000, 6, [0, 1, 3]).drop_columns(["num_01"])  # day 2: no rows
    pq.write_table(current, tmp_path / "cur.parquet")
    df = wks.read(spark, tmp_path / "cur.parquet")
    got = wks.check(df, suite, window="1d")
    want = suite.check(current, window="1d")
    assert [w.label.split("T")[0] for w in got.windows] == [
        "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "missing timestamp"]
    assert got.windows[2].rows == 0 and got.windows[0].start == want.windows[0].start
    families = {f.family for f in want.findings}
    assert {"quality", "drift"} <= families  # num_01 is gone, the features drifted
    # every family measured: realised and estimated performance, fairness, security
    # (out-of-distribution tallies and per-client activity)
    assert {"realised", "estimated", "fairness", "security"} <= set(want.windows[0].metrics)
    assert set(got.windows[0].profile.clients) == {"a", "b", "c", "bot"}
    assert_same_result(want, got)
    assert_same_result(suite.check(current), wks.check(df, suite))  # one window of all rows


def test_refuses_what_it_cannot_check(spark: SparkSession, tmp_path: Path) -> None:
    reference, current = synthetic_drift_pair(500, seed=1)
    suite = wk.init(reference)
    with pytest.raises(DataError, match="expected a Spark DataFrame"):
        wks.check(current, suite)  # type: ignore[arg-type]
    pq.write_table(current, tmp_path / "cur.parquet")
    df = wks.read(spark, tmp_path / "cur.parquet")
    with pytest.raises(DataError, match=r"'num_0' is not in the data.*num_0"):
        wks.check(df, suite, window_by="num_0")
    with pytest.raises(SuiteError, match="not several"):
        wks.check(df, suite, window_rows=10, window_by="cat_00")
    with pytest.raises(SuiteError, match="timestamp column"):
        wks.check(df, suite, window="1d")
    with pytest.raises(DataError, match="no rows to check"):
        wks.check(df.limit(0), suite)
    with pytest.raises(DataError, match=r"Parquet .* or CSV"):
        (tmp_path / "x.json").write_text("{}")
        wks.read(spark, tmp_path / "x.json")
