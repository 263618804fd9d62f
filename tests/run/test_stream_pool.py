"""Parquet profiled by worker processes that read their own row groups
(watchkeeper.run.stream_pool): the JSON of one job, whatever the pieces."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import time
from multiprocessing import get_all_start_methods
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from watchkeeper.errors import DataError, WorkerLost
from watchkeeper.io import malloc
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.run import stream, stream_pool
from watchkeeper.run.label_join import last_labels
from watchkeeper.run.stream import Windowing, inputs

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "fork" not in get_all_start_methods(),
    reason="worker processes need fork (Linux)")


def _json(result: wk.CheckResult) -> str:
    return json.dumps(result.to_dict(), sort_keys=True)


@pytest.fixture(autouse=True)
def pool_for_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes however few the rows (a real check profiles fewer than
    ``POOL_MIN_ROWS`` in its own process)."""
    monkeypatch.setattr(stream_pool, "POOL_MIN_ROWS", 0)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "BATCH_ROWS", 1000)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[wk.Suite, pa.Table, Path]:
    """A classifier's suite with ids, and 12,000 current rows with a prediction."""
    d = tmp_path_factory.mktemp("pool")
    reference, current = synthetic_drift_pair(6_000, seed=3)
    rng = np.random.default_rng(3)

    def scored(t: pa.Table, start: int) -> pa.Table:
        n = t.num_rows
        x = np.asarray(t.column("num_00"), dtype=float)
        score = 1 / (1 + np.exp(-(x - np.nanmean(x)) / np.nanstd(x)))
        return (t.append_column("id", pa.array(np.arange(start, start + n)))
                 .append_column("pred", pa.array((score > 0.5).astype(int)))
                 .append_column("y", pa.array((rng.random(n) < score).astype(int))))

    reference = scored(reference, 0)
    current = pa.concat_tables([scored(current, 10_000), scored(current, 20_000)])
    suite = wk.init(reference, target="y", prediction="pred", id="id", progress=False)
    suite.save(d / "suite.yaml")
    return wk.load(d / "suite.yaml"), current, d


@pytest.fixture(scope="module")
def groups(labelled: tuple[wk.Suite, pa.Table, Path]) -> Path:
    """The current rows in a Parquet file of row groups of 1,000 rows (12 pieces)."""
    _, current, d = labelled
    path = d / "groups.parquet"
    pq.write_table(current, path, row_group_size=1000)
    return path


def test_one_row_group_split_between_workers_gives_one_jobs_json(
        labelled: tuple[wk.Suite, pa.Table, Path], small_batches: None,
        tmp_path: Path) -> None:
    suite, current, _ = labelled
    path = tmp_path / "one-group.parquet"
    pq.write_table(current.drop_columns(["y"]), path, row_group_size=current.num_rows)
    # 12 batches of one row group: three workers start mid-group, at batches 4 and 8
    _, _, pieces, _ = stream_pool.plan(inputs(path), 3, stream.BATCH_ROWS, Windowing(), None)
    assert [(p.group, p.first, p.count) for p in pieces] == [(0, 0, 4), (0, 4, 4), (0, 8, None)]
    # labels held in memory for one row in five; 50 ids (30,000+) match no row
    ids = np.concatenate([np.arange(10_000, 16_000, 5), np.arange(20_000, 26_000, 5),
                          np.arange(30_000, 30_050)])
    labels = pa.table({"id": ids, "y": pa.array((ids % 3 == 0).astype(int))})
    for windows in ({"window_rows": 1500}, {"window_by": "cat_00"}, {}):
        one = suite.check_stream(path, jobs=1, labels=labels, progress=False, **windows)
        assert one.unmatched_labels == 50
        for jobs in (2, 3):
            assert stream_pool.usable(inputs(path), jobs, last_labels(labels, suite.schema.task))
            many = suite.check_stream(path, jobs=jobs, labels=labels, progress=False, **windows)
            assert _json(many) == _json(one), (windows, jobs)
    assert one.windows[0].metrics  # labels joined: realised metrics


def test_workers_are_processes_that_read_the_rows_themselves(
        labelled: tuple[wk.Suite, pa.Table, Path], small_batches: None,
        tmp_path: Path) -> None:
    """Each piece is profiled in a worker process (not the parent), which reads its batches
    from the file: the parent sends it the piece's numbers only."""
    suite, current, _ = labelled
    path = tmp_path / "groups.parquet"
    pq.write_table(current, path, row_group_size=2500)
    files, _, pieces, _ = stream_pool.plan(inputs(path), 2, stream.BATCH_ROWS, Windowing(),
                                           None)
    # enough row groups: one piece each, the last two (one a job) halved for the ending
    assert [(p.group, p.first, p.count) for p in pieces] == [
        (0, 0, None), (1, 0, None), (2, 0, None), (3, 0, 1), (3, 1, None), (4, 0, 1),
        (4, 1, None)]
    work = stream_pool._Work(files, None, Windowing(rows=2000), suite.schema, None, None,
                             stream.BATCH_ROWS, None)
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(2, mp_context=get_context("fork"), initializer=stream_pool._start,
                             initargs=(work,)) as pool:
        pids = set(pool.map(_pid, range(4)))
        done = list(pool.map(stream_pool._profile_piece, pieces))
    assert os.getpid() not in pids
    # every row once, in order, each batch its window's rows (2,000 rows a window)
    rows = [n for piece in done for _, n, _ in piece]
    assert sum(rows) == current.num_rows and max(rows) == 1000
    keys = [key for piece in done for parts, _, _ in piece for key, _ in parts.profiles]
    assert keys == sorted(keys) and keys[-1] == current.num_rows // 2000 - 1
    assert done[-1][-1][2] == path.stat().st_size  # progress reaches the file's bytes


def _pid(_: int) -> int:
    return os.getpid()


def test_errors_in_workers_name_the_file_and_rows(labelled: tuple[wk.Suite, pa.Table, Path],
                                                  small_batches: None,
                                                  tmp_path: Path) -> None:
    suite, current, _ = labelled
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(current.slice(0, 3000), parts / "a.parquet")
    pq.write_table(current.slice(3000, 3000).set_column(
        1, "num_01", pa.array(["x"] * 3000)), parts / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet: rows from 0: cannot read as parquet"):
        suite.check_stream(parts, jobs=2, progress=False)
    (parts / "b.parquet").unlink()
    pq.write_table(current.slice(3000, 3000).drop_columns(["cat_00"]), parts / "c.parquet")
    with pytest.raises(DataError, match=r"c\.parquet: window_by: column 'cat_00' is not in "
                                        r"the data"):
        suite.check_stream(str(parts / "*.parquet"), window_by="cat_00", jobs=2,
                           progress=False)


def test_the_memory_budget_bounds_the_workers(labelled: tuple[wk.Suite, pa.Table, Path],
                                              small_batches: None, groups: Path) -> None:
    suite, current, _ = labelled
    _, _, _, batch = stream_pool.plan(inputs(groups), 4, stream.BATCH_ROWS, Windowing(), None)
    assert batch >= current.slice(0, 1000).nbytes  # a batch's bytes, times the overhead
    # room for one batch: one worker at a time, the same result
    one = suite.check_stream(groups, jobs=1, progress=False)
    assert _json(suite.check_stream(groups, jobs=4, memory=int(batch * 1.5),
                                    progress=False)) == _json(one)
    with pytest.raises(DataError, match=r"groups\.parquet: rows 0-999: one batch of 1000 rows "
                                        r"takes about .* MB to profile, more than the memory"):
        suite.check_stream(groups, jobs=2, memory=int(batch * 0.5), progress=False)


def test_threads_on_request(labelled: tuple[wk.Suite, pa.Table, Path],
                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    suite, current, _ = labelled
    pq.write_table(current, tmp_path / "cur.parquet")
    assert stream_pool.usable(inputs(tmp_path / "cur.parquet"), 2, None)
    assert not stream_pool.usable(inputs(tmp_path / "cur.parquet"), 1, None)
    processes = _json(suite.check_stream(tmp_path / "cur.parquet", jobs=2, progress=False))
    monkeypatch.setenv(stream_pool.WORKERS_ENV, "threads")
    assert not stream_pool.usable(inputs(tmp_path / "cur.parquet"), 2, None)
    assert _json(suite.check_stream(tmp_path / "cur.parquet", jobs=2,
                                    progress=False)) == processes


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _kept_after_free() -> tuple[str, int]:
    """The Arrow pool's backend, and the bytes glibc keeps once a 64 MB array is freed."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    before = libc.mallinfo2().fordblks
    block = np.ones(8 << 20)  # 64 MB
    del block
    return pa.default_memory_pool().backend_name, libc.mallinfo2().fordblks - before


_KEPT_SCRIPT = """
import json, sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
import watchkeeper as wk
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.run import stream, stream_pool
from watchkeeper.run.stream import Windowing
sys.path.insert(0, sys.argv[1])
from test_stream_pool import _kept_after_free
reference, _ = synthetic_drift_pair(2_000, seed=0)
suite = wk.init(reference, progress=False)
work = stream_pool._Work([], None, Windowing(), suite.schema, None, None,
                         stream.BATCH_ROWS, None)
with ProcessPoolExecutor(1, mp_context=get_context("fork"), initializer=stream_pool._start,
                         initargs=(work,)) as pool:
    worker = pool.submit(_kept_after_free).result()
print(json.dumps([worker, _kept_after_free()]))
"""


@pytest.mark.skipif(not malloc.libc() or not hasattr(malloc.libc(), "mallinfo2"),
                    reason="glibc's malloc settings")
def test_a_worker_keeps_the_memory_it_frees_for_its_next_batch() -> None:
    """Handed back and faulted in again, each batch's memory cost a worker a fifth of its
    CPU; a worker keeps it (Arrow and numpy alike), the caller's process is left as is.
    In a fresh interpreter, as a check runs: this test process's malloc has been set by
    the tests before it (the server caps its arenas and fixes its mmap threshold)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "ARROW_"))}
    out = subprocess.run([sys.executable, "-c", _KEPT_SCRIPT, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300, env=env, check=True)
    (backend, kept), (here_backend, here_kept) = json.loads(out.stdout.strip().splitlines()[-1])
    assert backend == "system" and kept >= 48 << 20
    assert here_backend != "system"  # here: mapped, and unmapped once freed
    assert here_kept < 16 << 20


def _where(table: pa.Table, offset: int) -> tuple[int, int, int]:
    """A pool job: the process that profiles the batch, its Arrow threads, its first row;
    slow in a worker, so the parent does not find a worker's piece done when it looks."""
    import time

    if os.getpid() != _PARENT:
        time.sleep(0.05)
    return os.getpid(), pa.cpu_count(), offset


_PARENT = os.getpid()


def test_the_parent_profiles_pieces_too_with_arrow_on_one_thread(
        labelled: tuple[wk.Suite, pa.Table, Path], small_batches: None,
        groups: Path) -> None:
    """``jobs=2`` forks one worker: the parent profiles the pieces it would otherwise
    wait for, every process decodes on Arrow's one thread, batches come in input order,
    and the caller's Arrow setting is back afterwards."""
    suite, current, _ = labelled
    before = pa.cpu_count()
    pa.set_cpu_count(3)
    try:
        with stream_pool.arrow_threads(1):
            done = list(stream_pool.pool_batches(inputs(groups), jobs=2, batch_rows=1000,
                                                 job=_where))
        assert pa.cpu_count() == 3
    finally:
        pa.set_cpu_count(before)
    pids = {pid for (pid, _, _), _, _ in done}
    assert os.getpid() in pids and len(pids) == 2  # the parent and one worker
    assert {threads for (_, threads, _), _, _ in done} == {1}
    assert [at for (_, _, at), _, _ in done] == list(range(0, current.num_rows, 1000))
    assert _json(suite.check_stream(groups, jobs=2, progress=False)) == _json(
        suite.check_stream(groups, jobs=1, progress=False))


def test_the_garbage_collector_is_as_the_caller_left_it(
        labelled: tuple[wk.Suite, pa.Table, Path], small_batches: None,
        groups: Path) -> None:
    """The objects are frozen (left out of the collector's passes) only while the workers
    run, and a caller's own freeze is kept."""
    suite = labelled[0]
    seen = []
    list(stream_pool.pool_batches(inputs(groups), jobs=2, batch_rows=1000,
                                  job=lambda _t, _at: seen.append(gc.get_freeze_count())))
    assert gc.get_freeze_count() == 0
    assert seen and min(seen) > 0  # the parent's own pieces ran with the objects frozen
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        suite.check_stream(groups, jobs=2, progress=False)
        # still frozen (a frozen object whose last reference goes is freed all the same)
        assert gc.get_freeze_count() > frozen * 0.9
    finally:
        gc.unfreeze()


def test_a_check_on_one_job_keeps_arrow_on_one_thread_and_restores_it(
        labelled: tuple[wk.Suite, pa.Table, Path], small_batches: None,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``jobs=1`` is one core: Arrow's pool is one thread while the batches are read and
    profiled (it decoded Parquet on the other cores before), ``jobs`` threads on threads;
    a user's own setting is back after the check, or after its error."""
    suite, current, _ = labelled
    pq.write_table(current, tmp_path / "cur.parquet")
    current.to_pandas().to_csv(tmp_path / "cur.csv", index=False)
    seen: list[int] = []
    profile_parts = stream._profile_parts

    def counted(*args: object, **kwargs: object) -> object:
        seen.append(pa.cpu_count())
        return profile_parts(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stream, "_profile_parts", counted)
    before = pa.cpu_count()
    pa.set_cpu_count(5)
    try:
        suite.check_stream(tmp_path / "cur.parquet", jobs=1, progress=False)
        assert set(seen) == {1} and pa.cpu_count() == 5
        seen.clear()
        suite.check_stream(tmp_path / "cur.csv", jobs=2, progress=False)  # threads
        assert set(seen) == {2} and pa.cpu_count() == 5
        with pytest.raises(DataError):
            suite.check_stream(tmp_path / "cur.parquet", jobs=2, window_by="nope",
                               progress=False)
        assert pa.cpu_count() == 5
    finally:
        pa.set_cpu_count(before)


def test_a_small_file_is_profiled_in_the_callers_process(
        labelled: tuple[wk.Suite, pa.Table, Path], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """Under ``POOL_MIN_ROWS`` rows no worker is forked (it would cost more than it
    saves), over it they are; the result is the same."""
    suite, current, _ = labelled
    files = tmp_path / "parts"
    files.mkdir()
    pq.write_table(current.slice(0, 6000), files / "a.parquet")
    pq.write_table(current.slice(6000), files / "b.parquet")
    monkeypatch.setattr(stream_pool, "POOL_MIN_ROWS", current.num_rows + 1)
    assert not stream_pool.usable(inputs(files), 2, None)
    small = _json(suite.check_stream(files, jobs=2, progress=False))
    monkeypatch.setattr(stream_pool, "POOL_MIN_ROWS", current.num_rows)  # both footers read
    assert stream_pool.usable(inputs(files), 2, None)
    assert _json(suite.check_stream(files, jobs=2, progress=False)) == small


def test_the_first_bad_piece_in_input_order_is_the_error_whoever_profiles_it(
        labelled: tuple[wk.Suite, pa.Table, Path], small_batches: None,
        tmp_path: Path) -> None:
    """Pieces 0 and 1 go to the worker and the parent takes piece 2: with pieces 1 and 2
    unreadable, the error is piece 1's (as with one job), though the parent meets piece
    2's first."""
    suite, current, _ = labelled
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(6):
        rows = current.slice(i * 2000, 2000)
        if i in (1, 2):
            rows = rows.set_column(1, "num_01", pa.array(["x"] * 2000))
        pq.write_table(rows, parts / f"{i}.parquet")
    for jobs in (1, 2):
        with pytest.raises(DataError, match=r"1\.parquet: rows from 0: cannot read as "
                                            r"parquet like the files before it"):
            suite.check_stream(parts, jobs=jobs, progress=False)


def _killed_in_a_worker(parent: int) -> Any:
    def job(table: pa.Table, at: int) -> int:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return at
    return job


def test_a_worker_killed_mid_check_is_one_clear_error(
        small_batches: None, groups: Path) -> None:
    """``kill -9`` of a worker (or the system's out-of-memory killer) stops the check with
    a WorkerLost (exit code 3 in the CLI, one line), not a BrokenProcessPool traceback
    (exit code 1, which scripts read as "findings")."""
    with pytest.raises(WorkerLost, match="ended abruptly") as caught:
        list(stream_pool.pool_batches(inputs(groups), jobs=2, batch_rows=1000,
                                      job=_killed_in_a_worker(os.getpid())))
    assert caught.value.exit_code == 3
    assert gc.get_freeze_count() == 0  # the pool cleaned up after itself


_ORPHAN = """
import os, sys, time
import pyarrow as pa
from pathlib import Path
from watchkeeper.run import stream_pool
from watchkeeper.run.stream import inputs
stream_pool.POOL_MIN_ROWS = 0
parent, marker = os.getpid(), Path(sys.argv[2])
def job(table, at):
    if os.getpid() != parent:
        marker.write_text(str(os.getpid()))
        time.sleep(120)
    return at
list(stream_pool.pool_batches(inputs(sys.argv[1]), jobs=2, batch_rows=1000, job=job))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_workers_end_with_a_check_that_is_killed(
        groups: Path, tmp_path: Path, sig: int) -> None:
    """A worker holds its own end of the pipe it reads work from, so a check ended by
    SIGTERM or ``kill -9`` left it waiting, orphaned, for ever; the system now ends it."""
    marker = tmp_path / "worker.pid"
    check = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(groups), str(marker)])
    try:
        for _ in range(600):  # the worker is at work (at most 60 s)
            if marker.exists() and marker.read_text():
                break
            time.sleep(0.1)
        worker = int(marker.read_text())
        os.kill(check.pid, sig)
        check.wait(timeout=30)
        for _ in range(100):  # gone within 10 s
            if not _alive(worker):
                break
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        check.kill()
        check.wait(timeout=30)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
