"""`watchkeeper init --segment`, as a user runs it: the installed entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.helpers import run


def table(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", "tiny"], n, p=[0.2, 0.5, 0.29, 0.01])
    return pa.table({"region": region,
                     "plan": rng.choice(["free", "pro"], n),
                     "x": rng.normal(size=n) + shift * (region == "north"),
                     "z": rng.exponential(size=n)})


def test_segment_flag_writes_segments_and_check_attributes(tmp_path: Path) -> None:
    pq.write_table(table(20_000, 0), tmp_path / "ref.parquet")
    pq.write_table(table(10_000, 1, shift=1.0), tmp_path / "cur.parquet")
    done = run("init", "ref.parquet", "--segment", "region", "--segment", "plan,region",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "segments    region, plan*region: " in done.stdout
    doc = yaml.safe_load((tmp_path / "watchkeeper.yaml").read_text())
    by = doc["segments"]["by"]
    assert [list(s) for s in by] == [["region"], ["plan", "region"]]
    assert by[0]["region"]["levels"] == ["south", "east", "north", "tiny"]
    shown = run("check", "cur.parquet", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "region=north" in shown.stdout
    result = run("check", "cur.parquet", "--format", "json", cwd=tmp_path)
    window = json.loads(result.stdout)["windows"][0]
    segments = {f["segment"] for f in window["findings"] if f["segment"]}
    assert segments == {"region=north"}
    skipped = {u["segment"] for u in window["not_evaluated"] if u["monitor"] == "segment"}
    assert "region=tiny" in skipped
    bad = run("init", "ref.parquet", "-o", "x.yaml", "--segment", "a,b,c", cwd=tmp_path)
    assert bad.returncode == 2 and "pair of distinct columns" in bad.stderr
