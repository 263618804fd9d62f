"""``init`` of a reference read batch by batch (watchkeeper.suite.streamed): a small file
still gets today's in-memory suite; a streamed one gets bins within the sketch's rank
error, exact categories and reference profile, and the same findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from tests.helpers import ACS, run
from watchkeeper.baseline.binning import quantile_points
from watchkeeper.baseline.schema import Kind
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.io.values import numbers
from watchkeeper.run import stream
from watchkeeper.stats.quantiles import QuantileSketch
from watchkeeper.suite import file as suitefile
from watchkeeper.suite import streamed


def _doc(suite: wk.Suite) -> dict[str, Any]:
    doc = suite.to_dict()
    doc.pop("created")
    return doc


@pytest.fixture
def reference_file(tmp_path: Path) -> Path:
    reference, _ = synthetic_drift_pair(6_000, seed=3)
    rng = np.random.default_rng(3)
    score = 1 / (1 + np.exp(-reference.column("num_00").to_numpy()))
    reference = reference.append_column("score", pa.array(score)).append_column(
        "y", pa.array((rng.random(6_000) < score).astype(np.int64)))
    path = tmp_path / "reference.parquet"
    pq.write_table(reference, path, row_group_size=1_500)
    return path


def test_a_small_file_gets_the_in_memory_suite(reference_file: Path) -> None:
    assert not streamed.should_stream(reference_file, None)
    from_path = wk.init(reference_file, target="y", proba="score", name="r", progress=False)
    in_memory = wk.init(pq.read_table(reference_file), target="y", proba="score", name="r",
                        progress=False)
    from_path.source = None
    assert _doc(from_path) == _doc(in_memory)


def test_when_init_streams(reference_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert streamed.should_stream(reference_file, memory=1_000)  # would not fit
    assert streamed.should_stream(str(reference_file.parent / "*.parquet"), None)
    monkeypatch.setattr(streamed, "STREAM_ROWS", 5_000)
    assert streamed.should_stream(reference_file, None)
    assert not streamed.should_stream(pq.read_table(reference_file), None)
    with pytest.raises(wk.DataError, match="only a Parquet or CSV"):
        wk.init(pq.read_table(reference_file), stream=True, progress=False)


def test_streamed_init_bins_within_the_rank_error(reference_file: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 500 rows, a sample of 2,000 and sketches of k=256 (bound 7 levels / 256
    = 2.7 % of rank at 6,000 rows): edges within it, categories and profile exact."""
    monkeypatch.setattr(stream, "BATCH_ROWS", 500)
    monkeypatch.setattr(streamed, "SAMPLE_ROWS", 2_000)
    monkeypatch.setattr(streamed, "QuantileSketch", lambda: QuantileSketch(k=256))
    table = pq.read_table(reference_file)
    exact = wk.init(table, target="y", proba="score", name="r", progress=False)
    suite = wk.init(reference_file, target="y", proba="score", name="r", stream=True,
                    progress=False, jobs=2)
    assert [m.id for m in suite.monitors] == [m.id for m in exact.monitors]
    assert suite.reference.rows == table.num_rows
    checked = 0
    for c in suite.schema:
        assert c.kind == exact.schema[c.name].kind, c.name
        if c.kind == Kind.NUMERIC and c.edges:
            values = np.sort(numbers(table.column(c.name)).finite)
            n = values.size
            slack = n * 7 / 256 + 1
            bins = len(exact.schema[c.name].edges or ()) - 1
            assert len(c.edges) == bins + 1
            for q, edge in zip(quantile_points(bins), c.edges, strict=True):
                below = np.searchsorted(values, edge, side="left")
                upto = np.searchsorted(values, edge, side="right")
                assert below - slack <= q * n <= upto + slack, (c.name, q, edge)
            checked += 1
        if c.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
            assert c.categories == exact.schema[c.name].categories, c.name
            mine, theirs = suite.reference.columns[c.name], exact.reference.columns[c.name]
            assert mine.bins is not None and theirs.bins is not None
            assert mine.bins.tolist() == theirs.bins.tolist(), c.name  # every row counted
    assert checked >= 5
    # the sample is bounded, seeded and in input order
    found = streamed.scan(stream.inputs(reference_file), seed=0, sample_rows=2_000)
    again = streamed.scan(stream.inputs(reference_file), seed=0, sample_rows=2_000, jobs=3)
    assert found.sample is not None and again.sample is not None
    assert found.sample.num_rows == 2_000 and found.sample.equals(again.sample)
    assert found.rows == again.rows == table.num_rows
    # batches sketched on 3 threads, merged in input order: what one thread gives
    assert found.counts == again.counts
    qs = quantile_points(20)
    for name, sketch in found.sketches.items():
        assert sketch.quantiles(qs).tolist() == again.sketches[name].quantiles(qs).tolist()


@pytest.mark.slow
def test_streamed_acs_suite_finds_what_the_in_memory_one_finds(acs_suite: wk.Suite) -> None:
    """The ACS reference (68,785 rows) forced to stream: same monitors, calibrated nulls
    within 10 % (their mean, scale × df, and overdispersion), same findings by year."""
    suite = wk.init(ACS / "employment_MA_reference.pq", target="employed", stream=True,
                    progress=False)
    assert [m.id for m in suite.monitors] == [m.id for m in acs_suite.monitors]
    for mine, theirs in zip(suite.monitors, acs_suite.monitors, strict=True):
        _close(mine.calibration, theirs.calibration, mine.id)
    current = ACS / "employment_MA_analysis.pq"

    def findings(s: wk.Suite) -> list[tuple[Any, ...]]:
        result = s.check(current, window_by="year", progress=False)
        return sorted((f.window, f.monitor, f.column, f.metric, f.segment, f.severity)
                      for w in result.windows for f in w.findings)

    assert findings(suite) == findings(acs_suite)


def _close(mine: Any, theirs: Any, where: str) -> None:
    if isinstance(theirs, dict):
        if {"scale", "df"} <= theirs.keys():
            assert mine["scale"] * mine["df"] == pytest.approx(
                theirs["scale"] * theirs["df"], rel=0.1), where
            return
        for key in theirs:
            if key not in ("scale", "df"):
                _close(mine[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            _close(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float):
        assert mine == pytest.approx(theirs, rel=0.1, abs=1e-9), where
    else:
        assert mine == theirs, where


def test_cli_init_streams_a_glob_of_csv_files(tmp_path: Path) -> None:
    """`init` on a glob of semicolon CSV files (what the in-memory reader cannot read), then
    a streamed check of the same files runs with it."""
    reference, _ = synthetic_drift_pair(3_000, seed=4)
    for i in range(3):
        pacsv.write_csv(reference.slice(i * 1_000, 1_000), tmp_path / f"part-{i}.csv",
                        pacsv.WriteOptions(delimiter=";"))
    done = run("init", "part-*.csv", "-o", "s.yaml", "--jobs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "part-0.csv: " in done.stdout and "';'" in done.stdout  # the guess, said
    suite = wk.load(tmp_path / "s.yaml")
    assert suite.reference.rows == 3_000
    assert suite.schema["num_00"].edges and suite.schema["cat_00"].categories
    checked = run("check", "part-*.csv", "--suite", "s.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_streamed_init_of_a_hive_directory(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Booleans, integer codes, a timestamp, dictionary strings and a partition column,
    sampled across files: the in-memory suite's kinds, roles, levels and monitors."""
    monkeypatch.setattr(stream, "BATCH_ROWS", 700)
    monkeypatch.setattr(streamed, "SAMPLE_ROWS", 1_500)
    rng = np.random.default_rng(0)
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        (tmp_path / f"day={day}").mkdir()
        n = 1_000
        pq.write_table(pa.table({
            "x": rng.normal(size=n), "flag": rng.random(n) < 0.3,
            "code": rng.integers(0, 5, n),
            "ts": pa.array(np.datetime64(day) + np.arange(n).astype("timedelta64[s]")),
            "c": pa.array(rng.choice(["a", "b", "c"], n)).dictionary_encode()}),
            tmp_path / f"day={day}" / "part-0.parquet")
    suite = wk.init(tmp_path, stream=True, timestamp="ts", progress=False)
    exact = wk.init(tmp_path, stream=False, timestamp="ts", progress=False)

    def plan(s: wk.Suite) -> list[tuple[Any, ...]]:
        return [(c.name, c.kind, c.role, c.categories, len(c.edges or ())) for c in s.schema]

    assert plan(suite) == plan(exact)
    assert [m.id for m in suite.monitors] == [m.id for m in exact.monitors]
    assert suite.reference.rows == 3_000
    result = suite.check_stream(tmp_path, window="1d", progress=False)
    assert [w.rows for w in result.windows] == [1_000] * 3


def test_streamed_init_on_worker_processes_gives_the_suite_of_one_job(
        reference_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both passes of a Parquet reference on worker processes (which return each batch's
    tally and only its rows in the sample): the suite file of ``jobs=1``, to the byte."""
    from watchkeeper.run import stream_pool

    monkeypatch.setattr(stream_pool, "POOL_MIN_ROWS", 0)  # on the pool however few rows
    if not stream_pool.usable(stream.inputs(reference_file), 2, None):
        pytest.skip("worker processes need fork (Linux)")
    monkeypatch.setattr(stream, "BATCH_ROWS", 500)
    monkeypatch.setattr(streamed, "SAMPLE_ROWS", 2_000)
    # the sample is the rows whose key is at most the bound: the 2,000 smallest keys
    keys = np.sort(streamed.row_keys(7, 0, 6_000))
    assert streamed.key_bound(7, 6_000, 2_000) == keys[1_999]
    assert streamed.key_bound(7, 1_500, 2_000) == np.inf
    used = []
    pool_batches = stream_pool.pool_batches

    def counted(*args: Any, **kwargs: Any) -> Any:
        used.append(kwargs.get("job") is not None)
        return pool_batches(*args, **kwargs)

    monkeypatch.setattr(stream_pool, "pool_batches", counted)
    one = wk.init(reference_file, target="y", proba="score", name="r", stream=True,
                  progress=False, jobs=1)
    assert used == []
    two = wk.init(reference_file, target="y", proba="score", name="r", stream=True,
                  progress=False, jobs=2)
    assert used == [True, False]  # pass 1 (a job per batch), pass 2 (profiles)
    assert suitefile.dump(_doc(two)) == suitefile.dump(_doc(one))
