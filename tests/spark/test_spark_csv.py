"""A hand-exported CSV file (comment lines above the header, ``;`` between values, names
padded with spaces, blank cells, ``?`` and ``NA`` for missing) checked on Spark: the JSON
result of the local engine, because Spark's splits parse their lines with the local
reader's layout, NA spellings and column types."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pyspark.sql import SparkSession

import watchkeeper as wk
from watchkeeper.cli import main
from watchkeeper.io.tables import read_table
from watchkeeper.spark import read

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # a Spark session takes seconds to start


def messy_csv(path: Path, n: int, seed: int, shift: float = 0.0, blank: bool = False) -> None:
    rng = np.random.default_rng(seed)
    lines = ["# exported from the billing system", "# 2026-12-03, by hand",
             " age ;income ; plan;score"]
    if blank:  # blank lines above the header, as a title and its spacing
        lines = ["", "Billing export", "", *lines[:2], "", lines[2]]
    for i in range(n):
        age = "?" if i % 17 == 0 else str(int(rng.integers(18, 90)))
        income = "" if i % 13 == 0 else f"{rng.normal(50_000, 9_000) + shift:.2f}"
        plan = "NA" if i % 11 == 0 else str(rng.choice(["basic", "pro", "team"]))
        score = "  " if i % 7 == 0 else f"{rng.random():.4f}"
        lines.append(";".join([age, income, plan, score]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_a_messy_csv_checks_alike_on_spark(spark: SparkSession, tmp_path: Path) -> None:
    messy_csv(tmp_path / "ref.csv", 3_000, 1)
    messy_csv(tmp_path / "cur.csv", 2_000, 2, shift=8_000.0)
    local = read_table(tmp_path / "cur.csv")
    assert local.column_names == ["age", "income", "plan", "score"]
    df = read(spark, tmp_path / "cur.csv")
    assert df.columns == local.column_names and df.count() == 2_000
    on_spark = df.toArrow()  # the same values and missing cells, in the same types
    for name in local.column_names:
        assert on_spark.column(name).to_pylist() == local.column(name).to_pylist(), name
    parts = tmp_path / "parts"  # two files, each with its comments and header
    parts.mkdir()
    messy_csv(parts / "a.csv", 700, 3)
    messy_csv(parts / "b.csv", 500, 4)
    assert read(spark, parts).count() == 1_200
    wk.init(read_table(tmp_path / "ref.csv")).save(tmp_path / "suite.yaml")
    out = []
    for engine in ("local", "spark"):
        done = CliRunner().invoke(main, ["check", str(tmp_path / "cur.csv"), "--suite",
                                         str(tmp_path / "suite.yaml"), "--format", "json",
                                         "--engine", engine])
        assert done.exit_code in (0, 1), done.stderr
        out.append(done.stdout)
    assert out[0] == out[1]
    result = json.loads(out[1])
    assert result["windows"][0]["rows"] == 2_000
    assert any(f.get("column") == "income" for f in result["windows"][0]["findings"])


@pytest.mark.slow
def test_blank_lines_above_the_header_are_skipped_on_spark(spark: SparkSession,
                                                          tmp_path: Path) -> None:
    """Spark's splits skip the lines the local reader skips, blank ones included (a blank
    line above the header made the header a row of data)."""
    parts = tmp_path / "parts"
    parts.mkdir()
    messy_csv(parts / "a.csv", 700, 5, blank=True)
    messy_csv(parts / "b.csv", 500, 6, blank=True)
    local = read_table(parts / "a.csv")
    assert local.column_names == ["age", "income", "plan", "score"] and local.num_rows == 700
    on_spark = read(spark, parts / "a.csv").toArrow()
    for name in local.column_names:
        assert on_spark.column(name).to_pylist() == local.column(name).to_pylist(), name
    assert read(spark, parts).count() == 1_200
