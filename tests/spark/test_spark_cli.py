"""``watchkeeper check --engine spark``: the JSON result of the local engine, from a
directory of Parquet parts read by Spark (in-process, so it shares the tests' session)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from pyspark.sql import SparkSession

import watchkeeper as wk
from watchkeeper.cli import main

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # a Spark session takes seconds to start


def _check(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["check", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_check_on_spark_prints_the_local_json(spark: SparkSession, tmp_path: Path,
                                              acs_suite: wk.Suite, acs_analysis: pa.Table,
                                              acs_labels: pa.Table) -> None:
    rows = acs_analysis.slice(0, 40_000)
    acs_suite.save(tmp_path / "suite.yaml")
    pq.write_table(rows, tmp_path / "cur.parquet")
    parts = tmp_path / "cur"  # as Spark writes a table: part files in a directory
    parts.mkdir()
    for i, first in enumerate(range(0, rows.num_rows, 15_000)):
        pq.write_table(rows.slice(first, 15_000), parts / f"part-{i:05d}.parquet")
    (parts / "_SUCCESS").write_text("")
    pq.write_table(acs_labels, tmp_path / "labels.parquet")
    common = ["--suite", tmp_path / "suite.yaml", "--window-by", "year",
              "--labels", tmp_path / "labels.parquet", "--format", "json"]
    code, local, err = _check(tmp_path / "cur.parquet", *common)
    assert code == 0, err
    code, on_spark, err = _check(parts, *common, "--engine", "spark", "--spark-master",
                                 "local[2]", "--spark-conf", "spark.sql.shuffle.partitions=2")
    assert code == 0, err
    assert json.loads(on_spark)["windows"][0]["rows"] > 0
    assert on_spark == local


def test_report_on_spark_and_bad_spark_options(spark: SparkSession, tmp_path: Path) -> None:
    reference = pa.table({"x": [float(i % 7) for i in range(200)]})
    wk.init(reference).save(tmp_path / "suite.yaml")
    pq.write_table(reference, tmp_path / "cur.parquet")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "cur.parquet"), "--suite",
                                       str(tmp_path / "suite.yaml"), "--engine", "spark",
                                       "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.stderr
    assert "<html" in (tmp_path / "r.html").read_text(encoding="utf-8").lower()
    code, _, err = _check(tmp_path / "cur.parquet", "--suite", tmp_path / "suite.yaml",
                          "--engine", "spark", "--spark-conf", "spark.executor.memory")
    assert code != 0 and "--spark-conf: expected KEY=VALUE" in err
    code, _, err = _check(tmp_path / "nowhere", "--suite", tmp_path / "suite.yaml",
                          "--engine", "spark")
    assert code != 0 and "no such file or directory" in err
