"""``init`` on Spark (watchkeeper.spark.init, ``init --engine spark``): the passes of a
local streamed init, run on Spark partitions. The same sample and counts, bins within
the merged sketches' rank error, the exact reference profile, the same monitors and the
same findings on a check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from pyspark.sql import SparkSession

import watchkeeper as wk
import watchkeeper.spark as wks
from watchkeeper.baseline.binning import quantile_points
from watchkeeper.baseline.schema import Kind
from watchkeeper.cli import main
from watchkeeper.errors import DataError
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.io.values import numbers
from watchkeeper.run import stream
from watchkeeper.suite import streamed

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # a Spark session takes seconds to start

ROWS, SAMPLE = 30_000, 12_000


def _with_task(table: pa.Table, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    score = 1 / (1 + np.exp(-table.column("num_00").to_numpy()))
    return (table.append_column("score", pa.array(score))
            .append_column("y", pa.array((rng.random(table.num_rows) < score).astype(np.int64))))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One Parquet file of 15 row groups (Spark splits it into partitions in file order)
    and a drifted current file."""
    where = tmp_path_factory.mktemp("spark_init")
    reference, current = synthetic_drift_pair(ROWS, seed=5)
    pq.write_table(_with_task(reference, 5), where / "reference.parquet", row_group_size=2_000)
    pq.write_table(_with_task(current, 6), where / "current.parquet")
    return where / "reference.parquet", where / "current.parquet"


@pytest.fixture
def small_splits(spark: SparkSession) -> Iterator[None]:
    """Partitions of a few row groups each, so the reference is scanned in many slices."""
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "200000")
    yield
    spark.conf.set("spark.sql.files.maxPartitionBytes", before)


def test_spark_init_equals_the_local_streamed_init(spark: SparkSession, small_splits: None,
                                                   pair: tuple[Path, Path]) -> None:
    path, current = pair
    df = wks.read(spark, path)
    assert df.rdd.getNumPartitions() >= 3
    # pass 1: the local reader's sample and counts; sketches within the rank bound
    local_scan = streamed.Files(stream.inputs(path), sample_rows=SAMPLE).scan(seed=0)
    spark_scan = wks.SparkReference(df, sample_rows=SAMPLE).scan(seed=0)
    assert spark_scan.rows == local_scan.rows == ROWS
    assert spark_scan.sample is not None and local_scan.sample is not None
    assert spark_scan.sample.num_rows == SAMPLE
    assert spark_scan.sample.to_pylist() == local_scan.sample.to_pylist()
    assert spark_scan.counts == local_scan.counts
    assert set(spark_scan.sketches) == set(local_scan.sketches)

    options: dict[str, Any] = {"target": "y", "proba": "score", "progress": False}
    local = wk.init(streamed.Files(stream.inputs(path), sample_rows=SAMPLE), **options)
    on_spark = wks.init(df, sample_rows=SAMPLE, **options)
    assert [m.id for m in on_spark.monitors] == [m.id for m in local.monitors]
    table = pq.read_table(path)
    checked = 0
    for c in on_spark.schema:
        mine = local.schema[c.name]
        assert (c.kind, c.role, c.categories) == (mine.kind, mine.role, mine.categories)
        if c.kind == Kind.NUMERIC and c.edges:
            # each edge within the documented bound of the true quantile: n levels / k
            values = np.sort(numbers(table.column(c.name)).finite)
            n = values.size
            slack = n * spark_scan.sketches[c.name].rank_error() + 1
            assert 0 < slack < 0.01 * n
            for q, edge in zip(quantile_points(len(c.edges) - 1), c.edges, strict=True):
                below = np.searchsorted(values, edge, side="left")
                upto = np.searchsorted(values, edge, side="right")
                assert below - slack <= q * n <= upto + slack, (c.name, q, edge)
            checked += 1
    assert checked >= 10
    # the reference profile: every row, exact (bins under each suite's own edges)
    assert on_spark.reference.rows == local.reference.rows == ROWS
    for name, column in local.reference.columns.items():
        theirs = on_spark.reference.columns[name]
        assert (theirs.count, theirs.missing) == (column.count, column.missing), name
        if local.schema[name].kind != Kind.NUMERIC and column.bins is not None:
            assert theirs.bins is not None and theirs.bins.tolist() == column.bins.tolist()

    def findings(suite: wk.Suite) -> list[tuple[Any, ...]]:
        result = suite.check(current, window_rows=10_000, progress=False)
        return sorted((f.window, f.monitor, f.column, f.metric, f.segment, f.severity)
                      for w in result.windows for f in w.findings)

    found = findings(local)
    assert found and findings(on_spark) == found


def test_cli_init_on_spark(spark: SparkSession, pair: tuple[Path, Path],
                           tmp_path: Path) -> None:
    path = pair[0]
    runner = CliRunner()
    done = runner.invoke(main, ["init", str(path), "-o", str(tmp_path / "s.yaml"),
                                "--target", "y", "--proba", "score", "--engine", "spark",
                                "--spark-master", "local[2]", "--no-progress"])
    assert done.exit_code == 0, done.stderr
    suite = wk.load(tmp_path / "s.yaml")
    assert suite.reference.rows == ROWS and suite.source == str(path)
    assert suite.schema["num_00"].edges and suite.schema["cat_00"].categories
    refused = runner.invoke(main, ["init", str(path), "-o", str(tmp_path / "t.yaml"),
                                   "--engine", "spark", "--jobs", "2"])
    assert refused.exit_code != 0 and "apply to the local engine" in refused.stderr


def test_spark_init_refuses_what_it_cannot_read(spark: SparkSession) -> None:
    with pytest.raises(DataError, match="expected a Spark DataFrame"):
        wks.init(pa.table({"x": [1.0]}))
    with pytest.raises(DataError, match="no rows"):
        wks.init(spark.createDataFrame([], "x double"), progress=False)
    with pytest.raises(DataError, match="sample_rows"):
        wks.init(spark.createDataFrame([(1.0,)], "x double"), sample_rows=0)
    with pytest.raises(DataError, match="applies to a local init"):
        wks.init(spark.createDataFrame([(1.0,)], "x double"), jobs=2)
