"""Delta tables by path: the live files from the log (commits after a checkpoint), the rows
of removed files never read, and a log this reader cannot apply refused with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from tests.helpers import write_delta
from watchkeeper.errors import DataError
from watchkeeper.io.delta import live_files
from watchkeeper.io.tables import read_table


def parts(n: int = 5, rows: int = 400) -> list[pa.Table]:
    """Part ``i`` has ``rows`` rows whose column ``part`` is ``i``; part 1's ``x`` is
    shifted far: counted, it would drift."""
    rng = np.random.default_rng(0)
    return [pa.table({"part": np.full(rows, i, dtype=np.int64),
                      "x": rng.normal(size=rows) + (50.0 if i == 1 else 0.0),
                      "c": rng.choice(["a", "b"], rows)}) for i in range(n)]


def test_the_live_files_are_read_and_the_removed_are_not(tmp_path: Path) -> None:
    table = tmp_path / "t"
    live = write_delta(table, parts())
    assert [f.name for f in live_files(table)] == ["part-2.parquet", "part-3.parquet",
                                                  "part-4.parquet"]
    assert (table / "part-1.parquet").is_file()  # removed from the table, still on disk
    read = read_table(table)
    assert read.num_rows == sum(p.num_rows for p in live) == 1_200
    assert sorted(set(read.column("part").to_pylist())) == [2, 3, 4]
    assert read_table(table, columns=["x"]).column_names == ["x"]


def test_check_of_a_delta_directory_is_the_check_of_its_live_rows(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from watchkeeper.cli import main

    table = tmp_path / "t"
    live = write_delta(table, parts())
    wk.init(parts()[0]).save(tmp_path / "suite.yaml")
    pq.write_table(pa.concat_tables(live), tmp_path / "live.parquet")
    out = []
    for data in (table, tmp_path / "live.parquet"):
        done = CliRunner().invoke(main, ["check", str(data), "--suite",
                                         str(tmp_path / "suite.yaml"), "--format", "json"])
        assert done.exit_code in (0, 1), done.stderr
        out.append(done.stdout)
    assert out[0] == out[1]
    assert json.loads(out[0])["windows"][0]["rows"] == 1_200


def test_a_log_this_reader_cannot_apply_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "t"
    write_delta(table, parts())
    log = table / "_delta_log"
    (log / f"{5:020d}.json").write_text(json.dumps({"add": {"path": "part-0.parquet"}}))
    with pytest.raises(DataError, match="misses commit 4"):
        live_files(table)
    (log / f"{4:020d}.json").write_text(json.dumps({"add": {
        "path": "part-1.parquet", "deletionVector": {"storageType": "u", "cardinality": 3}}}))
    with pytest.raises(DataError, match="deletion vector"):
        read_table(table)
    (log / f"{4:020d}.json").write_text(json.dumps({"add": {"path": "gone.parquet"}}))
    with pytest.raises(DataError, match="not on disk"):
        read_table(table)
