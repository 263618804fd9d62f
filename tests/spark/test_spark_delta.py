"""A Delta table directory checked on Spark: the live files of its log (commits after a
checkpoint) and only them, as the local engine reads it (no Delta jar)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pyspark.sql import SparkSession

import watchkeeper as wk
from tests.helpers import write_delta
from tests.io.test_delta import parts
from watchkeeper.cli import main
from watchkeeper.spark import read

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # a Spark session takes seconds to start


@pytest.mark.slow
def test_check_and_init_of_a_delta_directory_on_spark(spark: SparkSession,
                                                      tmp_path: Path) -> None:
    table = tmp_path / "t"
    live = write_delta(table, parts())
    df = read(spark, table)
    assert df.count() == 1_200
    assert sorted(r["part"] for r in df.select("part").distinct().collect()) == [2, 3, 4]
    wk.init(parts()[0]).save(tmp_path / "suite.yaml")
    out = []
    for engine in ("local", "spark"):
        done = CliRunner().invoke(main, ["check", str(table), "--suite",
                                         str(tmp_path / "suite.yaml"), "--format", "json",
                                         "--engine", engine])
        assert done.exit_code in (0, 1), done.stderr
        out.append(done.stdout)
    assert out[0] == out[1]
    assert json.loads(out[1])["windows"][0]["rows"] == sum(p.num_rows for p in live)
    done = CliRunner().invoke(main, ["init", str(table), "-o", str(tmp_path / "s.yaml"),
                                     "--engine", "spark", "--no-progress"])
    assert done.exit_code == 0, done.stderr
    assert wk.load(tmp_path / "s.yaml").reference.rows == 1_200
