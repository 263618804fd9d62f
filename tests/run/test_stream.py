"""The streamed check (Suite.check_stream, and `watchkeeper check` on Parquet and CSV):
the JSON result the in-memory check gives, whatever the batches, files and jobs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from tests.helpers import ACS, benchmark, run
from watchkeeper.errors import DataError
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.io.tables import read_table
from watchkeeper.run import stream
from watchkeeper.run.stream import parse_memory


def _json(result: wk.CheckResult) -> str:
    return json.dumps(result.to_dict(), sort_keys=True)


@pytest.fixture(autouse=True)
def pool_for_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parquet on several jobs goes to worker processes, however few its rows (a real
    check profiles fewer than ``POOL_MIN_ROWS`` in its own process)."""
    from watchkeeper.run import stream_pool

    monkeypatch.setattr(stream_pool, "POOL_MIN_ROWS", 0)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 1,000 rows and CSV blocks of 64 KiB: windows cross many of them."""
    monkeypatch.setattr(stream, "BATCH_ROWS", 1000)
    monkeypatch.setattr(stream, "CSV_BLOCK", 1 << 16)


def _timed_pair(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """The synthetic pair with a timestamp column, the current one out of order."""
    reference, current = synthetic_drift_pair(n, seed=seed)
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    ref_ts = start + np.sort(rng.integers(0, 30 * 86400, n))
    cur_ts = start + 40 * 86400 + rng.integers(0, 10 * 86400, n)  # unsorted
    cur_ts = np.where(rng.random(n) < 0.01, np.iinfo(np.int64).min, cur_ts)  # some missing
    stamps = pa.array(cur_ts, pa.timestamp("s"), mask=cur_ts == np.iinfo(np.int64).min)
    reference = reference.append_column("ts", pa.array(ref_ts, pa.timestamp("s")))
    return reference, current.append_column("ts", stamps)


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> tuple[wk.Suite, pa.Table, Path]:
    d = tmp_path_factory.mktemp("stream")
    reference, current = _timed_pair(12_000, seed=5)
    suite = wk.init(reference, timestamp="ts", progress=False)
    path = d / "suite.yaml"
    suite.save(path)
    return wk.load(path), current, d


# -- equality with the in-memory check --------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("windows", [{"window_rows": 50_000}, {"window_by": "year"}, {}],
                         ids=["rows", "by-year", "all"])
def test_acs_streamed_gives_the_in_memory_json(acs_suite: wk.Suite, acs_analysis_path: Path,
                                               windows: dict[str, Any]) -> None:
    labels = ACS / "employment_MA_analysis_target.pq"
    memory = acs_suite.check(pq.read_table(acs_analysis_path), labels=labels, progress=False,
                             **windows)
    streamed = acs_suite.check_stream(acs_analysis_path, labels=labels, progress=False,
                                      jobs=2, **windows)  # windows cross 65,536-row batches
    assert _json(streamed) == _json(memory)
    assert streamed.windows[0].findings or streamed.windows[0].metrics


@pytest.mark.slow
def test_the_1m_benchmark_pair_streamed_gives_the_in_memory_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file and suite `benchmarks/bench_stream.py` measures at 1M rows (one row group of
    1M rows, 20 columns): one window of all rows and windows of 200,000 rows, on one job,
    on two worker processes, and on two threads (what a 1M-row check uses)."""
    from watchkeeper.run import stream_pool

    suite = wk.load(benchmark("bench_stream").prepare(tmp_path, [1_000_000]))
    path = tmp_path / "current_1m.parquet"
    for windows in ({}, {"window_rows": 200_000}):
        memory = _json(suite.check(pq.read_table(path), progress=False, **windows))
        for jobs, pool_min_rows in ((1, 0), (2, 0), (2, 2_000_000)):
            monkeypatch.setattr(stream_pool, "POOL_MIN_ROWS", pool_min_rows)
            streamed = suite.check_stream(path, jobs=jobs, progress=False, **windows)
            assert _json(streamed) == memory, (windows, jobs, pool_min_rows)
    assert len(streamed.windows) == 5 and streamed.windows[0].findings


@pytest.mark.parametrize("windows", [{"window_rows": 2500}, {"window": "1d"},
                                     {"window": "1w", "tz": "Europe/Paris"}, {}],
                         ids=["rows", "1d", "1w-paris", "all"])
def test_windows_across_batches_and_files_match_in_memory(
        timed: tuple[wk.Suite, pa.Table, Path], small_batches: None,
        windows: dict[str, Any]) -> None:
    suite, current, d = timed
    files = d / "parts"
    files.mkdir(exist_ok=True)
    for i, at in enumerate(range(0, current.num_rows, 5000)):  # 3 files, row groups of 700
        pq.write_table(current.slice(at, 5000), files / f"part-{i}.parquet", row_group_size=700)
    memory = suite.check(current, progress=False, **windows)
    for jobs in (1, 3):
        streamed = suite.check_stream(files, jobs=jobs, progress=False, **windows)
        assert _json(streamed) == _json(memory), jobs
    assert [w.rows for w in memory.windows] == [w.rows for w in streamed.windows]
    assert sum(w.rows for w in streamed.windows) == current.num_rows


def test_jobs_give_the_result_of_one_job(timed: tuple[wk.Suite, pa.Table, Path],
                                         small_batches: None, tmp_path: Path) -> None:
    suite, current, _ = timed
    pq.write_table(current, tmp_path / "cur.parquet", row_group_size=3000)
    one = _json(suite.check_stream(tmp_path / "cur.parquet", window_rows=1500, jobs=1,
                                   progress=False))
    for jobs in (2, 4):
        assert _json(suite.check_stream(tmp_path / "cur.parquet", window_rows=1500, jobs=jobs,
                                        progress=False)) == one


def test_hive_directory_and_glob(timed: tuple[wk.Suite, pa.Table, Path], small_batches: None,
                                 tmp_path: Path) -> None:
    suite, current, _ = timed
    for batch, at in enumerate(range(0, current.num_rows, 4000)):
        part = tmp_path / "hive" / f"batch={batch}"
        part.mkdir(parents=True)
        pq.write_table(current.slice(at, 4000), part / "data.parquet")
    (tmp_path / "hive" / "_SUCCESS").write_text("")  # markers are skipped
    # the directory reads as pq.read_table reads it: the partition is a column
    memory = suite.check(tmp_path / "hive", window_by="batch", progress=False)
    streamed = suite.check_stream(tmp_path / "hive", window_by="batch", progress=False)
    assert [w.label for w in streamed.windows] == ["batch=0", "batch=1", "batch=2"]
    assert _json(streamed) == _json(memory)
    globbed = suite.check_stream(str(tmp_path / "hive" / "*" / "*.parquet"), window_rows=4000,
                                 progress=False)
    assert _json(globbed) == _json(suite.check(current, window_rows=4000, progress=False))
    with pytest.raises(DataError, match="no file matches"):
        suite.check_stream(str(tmp_path / "nothing-*.parquet"))


def test_csv_read_in_blocks_matches_the_whole_file(timed: tuple[wk.Suite, pa.Table, Path],
                                                   small_batches: None,
                                                   tmp_path: Path) -> None:
    suite, current, _ = timed
    pacsv.write_csv(current, tmp_path / "cur.csv")
    assert (tmp_path / "cur.csv").stat().st_size > 10 * stream.CSV_BLOCK
    memory = suite.check(read_table(tmp_path / "cur.csv"), window="1d", progress=False)
    streamed = suite.check_stream(tmp_path / "cur.csv", window="1d", progress=False, jobs=2)
    assert _json(streamed) == _json(memory)
    with gzip.open(tmp_path / "cur.csv.gz", "wb") as packed:  # compressed: the same rows
        packed.write((tmp_path / "cur.csv").read_bytes())
    assert _json(suite.check_stream(tmp_path / "cur.csv.gz", window="1d", progress=False)) \
        == _json(memory)


def test_bad_row_mid_stream_names_the_file_and_rows(timed: tuple[wk.Suite, pa.Table, Path],
                                                    small_batches: None,
                                                    tmp_path: Path) -> None:
    suite, current, _ = timed
    pacsv.write_csv(current, tmp_path / "cur.csv")
    lines = (tmp_path / "cur.csv").read_text().splitlines()
    cells = lines[9000].split(",")
    cells[1] = "oops"  # num_01, a number in every earlier block
    lines[9000] = ",".join(cells)
    (tmp_path / "cur.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"cur\.csv: rows from \d+: .*num_01.*oops"):
        suite.check_stream(tmp_path / "cur.csv", window_rows=1000, progress=False)
    # a Parquet file whose column cannot be read as the first file's type
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(current.slice(0, 100), parts / "a.parquet")
    pq.write_table(current.slice(100, 100).set_column(
        1, "num_01", pa.array(["x"] * 100)), parts / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet: rows from 0: cannot read"):
        suite.check_stream(parts, progress=False)


def test_memory_budget(timed: tuple[wk.Suite, pa.Table, Path], small_batches: None,
                       tmp_path: Path) -> None:
    suite, current, _ = timed
    pq.write_table(current, tmp_path / "cur.parquet")
    # a row group is decoded whole: one over the budget is refused before it is read
    with pytest.raises(DataError, match=r"cur\.parquet: rows 0-11999: a row group of 12000 "
                                        r"rows takes \d+ MB decoded, more than the memory "
                                        r"budget \(1 MB\); .*smaller row groups"):
        suite.check_stream(tmp_path / "cur.parquet", memory="1MB", progress=False)
    # row groups within the budget, a batch (counted thrice for profiling) over it
    pq.write_table(current, tmp_path / "groups.parquet", row_group_size=1000)
    group = pq.ParquetFile(tmp_path / "groups.parquet").metadata.row_group(0).total_byte_size
    with pytest.raises(DataError, match=r"groups\.parquet: rows 0-999: one batch of 1000 "
                                        r"rows takes about .* MB to profile, more than the "
                                        r"memory budget"):
        suite.check_stream(tmp_path / "groups.parquet", memory=int(1.5 * group),
                           progress=False)
    # a budget of a few batches in flight: the same result as an unbounded one
    one = max(current.slice(0, 1000).nbytes, group) * stream.PROFILE_OVERHEAD
    assert _json(suite.check_stream(tmp_path / "groups.parquet", memory=3 * one, jobs=2,
                                    progress=False)) == _json(
        suite.check_stream(tmp_path / "groups.parquet", progress=False))
    assert parse_memory("2GB") == 2_000_000_000 and parse_memory("1.5GiB") == 3 * 2**29
    with pytest.raises(DataError, match="memory: expected a size"):
        parse_memory("lots")


def test_cli_check_streams_with_jobs_and_memory(timed: tuple[wk.Suite, pa.Table, Path],
                                                tmp_path: Path) -> None:
    suite, current, d = timed
    pq.write_table(current, tmp_path / "cur.parquet")
    out = run("check", "cur.parquet", "--suite", d / "suite.yaml", "--window", "1d",
              "--jobs", "2", "--memory", "2GB", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(
        _json(suite.check(current, window="1d", progress=False)))
    bad = run("check", "cur.parquet", "--suite", d / "suite.yaml", "--memory", "1kB",
              cwd=tmp_path)
    assert bad.returncode == 2 and "memory budget" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    unreadable = run("check", "cur.parquet", "--suite", d / "suite.yaml", "--memory", "lots",
                     cwd=tmp_path)
    assert unreadable.returncode == 2
    assert unreadable.stderr.startswith("error: --memory: expected a size like 2GB")


def test_check_of_a_file_path_streams_unless_it_holds_the_prediction_ids(
        timed: tuple[wk.Suite, pa.Table, Path], small_batches: None, tmp_path: Path) -> None:
    """Suite.check(path) of a Parquet or CSV file reads it batch by batch (the result keeps
    no prediction ids), with the in-memory check's JSON; a file with the suite's id column
    (and a CSV file when the suite has one) is read whole, so that labels can be added to
    the result later."""
    suite, current, _ = timed
    pq.write_table(current, tmp_path / "cur.parquet", row_group_size=2000)
    pacsv.write_csv(current, tmp_path / "cur.csv")
    memory = _json(suite.check(current, window="1d", progress=False))
    for name in ("cur.parquet", "cur.csv"):
        streamed = suite.check(tmp_path / name, window="1d", progress=False)
        assert streamed.label_join is None  # the streamed check's result
        assert _json(streamed) == memory
    assert stream.streamable_file(tmp_path / "cur.parquet", keep="ts") is False
    assert stream.streamable_file(tmp_path / "cur.parquet", keep="id") is True
    assert stream.streamable_file(tmp_path / "cur.csv", keep="id") is False  # not parsed yet
    assert stream.streamable_file(tmp_path, keep=None) is False  # a directory: in memory


def test_labels_given_as_a_table_spill_past_the_budget(acs_suite: wk.Suite,
                                                       acs_analysis_path: Path,
                                                       acs_labels: pa.Table,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels handed over as a table are spilled like a labels file once they pass their
    share of ``memory``, with the JSON of labels held in memory."""
    from watchkeeper.run import label_spill

    task = acs_suite.schema.task
    assert task is not None
    budget = parse_memory("4GB")
    held = label_spill.read_labels(acs_labels, task, budget,
                                   stream.label_batches(acs_labels, None, budget))
    assert not isinstance(held, label_spill.SpilledLabels)  # a quarter of 4 GB: room
    assert stream.label_batches(acs_labels, None, None) is None  # no budget: as they are
    memory = acs_suite.check_stream(acs_analysis_path, labels=acs_labels, window_rows=50_000,
                                    progress=False)
    monkeypatch.setattr(label_spill, "LABELS_SHARE", 0.0)
    spilled = label_spill.read_labels(acs_labels, task, budget,
                                      stream.label_batches(acs_labels, None, budget))
    assert isinstance(spilled, label_spill.SpilledLabels)
    spilled.close()
    out = acs_suite.check_stream(acs_analysis_path, labels=acs_labels, window_rows=50_000,
                                 memory="4GB", progress=False)
    assert _json(out) == _json(memory) and out.unmatched_labels == memory.unmatched_labels
