"""Parquet profiled on several cores by worker processes that read their own rows.

Threads profile a batch without copying it, but hold the GIL for about a quarter of the
profiling (measured with py-spy on the 1M-row benchmark), so two of them gained only
1.2-1.4x over one. Here the parent reads only the files' metadata and cuts the input into
*pieces*: a row group, or a run of its batches when there are fewer row groups than
workers, and the last row groups in halves (so that the input ends in shorter pieces).
Worker processes, forked once the suite is loaded (so nothing is sent to them but the
piece's numbers), open the file, decode the piece's batches and profile them; what
comes back is the small per-batch profiles, never rows. The parent merges them batch
after batch in input order, as :func:`~watchkeeper.run.stream.stream_profiles` does, so
the result is the one ``jobs=1`` gives, exactly.

Batches are those of :func:`~watchkeeper.run.stream.group_batches` (never across a row
group), the same whether a worker or the parent reads them. A piece that starts inside a
row group decodes the batches before its own and drops them (Parquet has no cheaper way
to start mid-group): a file of one row group split between two workers decodes 1.5 times.

The parent is one of the ``jobs``: it forks ``jobs - 1`` workers and, whenever the piece
it is to merge next is not ready yet, profiles the next piece itself (so ``--jobs 2`` forks
one worker: one process start and one process's memory fewer than two workers, and no core
idles while the parent waits). Input of fewer than :data:`POOL_MIN_ROWS` rows is profiled
in the caller's process (on threads): a forked worker's start and first batch cost more
than it saves there (1M rows took longer with two workers than with one job).

Used where ``fork`` is the way to start processes (Linux) and the labels, if any, are in
memory (inherited by the workers); CSV, spilled labels and other systems keep the threads.
Memory: each process holds one batch at a time; with ``memory`` the processes are as many
as batches fit in it. A worker keeps the memory it frees for its next batch
(:func:`~watchkeeper.io.malloc.keep_freed_memory`): handed back and faulted in again, each
batch's new pages cost a worker a fifth of its CPU, and two workers took ~1.3x the CPU of
one process in all (2 cores gave 1.59x, not 2x). The parent (a user's process, maybe) is
left as it is.

Cores: ``jobs`` bounds Arrow's CPU thread pool too (:func:`arrow_threads`): on worker
processes every process decodes on its own thread (the pool set to one thread, the
caller's setting restored after), on threads the pool has ``jobs`` threads; so ``jobs=1``
runs on one core (Arrow decoded Parquet on a second core before: 9.3 s of CPU in 8.3 s).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from watchkeeper.errors import DataError, WorkerLost
from watchkeeper.io.malloc import keep_freed_memory, libc
from watchkeeper.run import stream
from watchkeeper.run.stream import (
    Inputs,
    Merger,
    StreamedWindow,
    Windowing,
)

if TYPE_CHECKING:
    import pandas as pd

    from watchkeeper.baseline.schema import Schema
    from watchkeeper.baseline.task import Task
    from watchkeeper.run.label_spill import SpilledLabels


@dataclass(frozen=True)
class Piece:
    """Batches ``first`` to ``first + count - 1`` (to the end when ``count`` is None) of
    row group ``group`` of file ``file``; ``row`` is the row group's first row in its file,
    ``offset`` in the whole input."""

    file: int
    group: int
    first: int
    count: int | None
    row: int
    offset: int


@dataclass
class _File:
    path: Path
    keys: dict[str, Any]  # hive partition values
    rows: int
    size: int
    done: int  # bytes of the files before it


@dataclass
class _Work:
    """What every worker knows (inherited at fork)."""

    files: list[_File]
    schema: pa.Schema | None  # a directory's schema, every file cast to it
    windowing: Windowing
    profile_schema: Schema
    labels: pd.Series | None
    task: Task | None
    batch_rows: int
    memory: int | None
    #: what a worker makes of each batch (its rows, its first row in the input) instead of
    #: its window profiles (the streamed init's first pass: :mod:`watchkeeper.suite.streamed`)
    job: Callable[[pa.Table, int], Any] | None = None


#: Environment variable that, set to ``threads``, keeps Parquet on threads too (to compare
#: the two on one machine, or where forking is unwelcome).
WORKERS_ENV = "WATCHKEEPER_STREAM_WORKERS"


#: Input of fewer rows is profiled in the caller's process (on threads), not by worker
#: processes: a worker's start and its first batch (new memory faulted in) cost more than
#: it gains there (1M rows: 2.35 s with two workers, 2.07 s with one job).
POOL_MIN_ROWS = 2_000_000


def usable(source: Inputs, jobs: int, labels: object) -> bool:
    """Whether worker processes profile this input: Parquet of at least
    :data:`POOL_MIN_ROWS` rows, more than one job, labels absent or in memory, processes
    started by ``fork``, and ``WATCHKEEPER_STREAM_WORKERS`` not ``threads``."""
    from watchkeeper.run.label_spill import SpilledLabels

    if os.environ.get(WORKERS_ENV, "").strip().lower() == "threads":
        return False
    return (source.format == "parquet" and jobs > 1 and not isinstance(labels, SpilledLabels)
            and sys.platform.startswith("linux")
            and "fork" in multiprocessing.get_all_start_methods()
            and _rows_at_least(source, POOL_MIN_ROWS))


def _rows_at_least(source: Inputs, rows: int) -> bool:
    """Whether the Parquet files hold at least ``rows`` rows (footers read until they do;
    a file that cannot be read counts as large: the reader reports it)."""
    import pyarrow.parquet as pq

    seen = 0
    for path in source.files:
        if seen >= rows:
            break
        try:
            seen += pq.read_metadata(path).num_rows
        except (pa.ArrowException, OSError):
            return True
    return seen >= rows


@contextmanager
def arrow_threads(threads: int) -> Iterator[None]:
    """Arrow's CPU thread pool (Parquet decoding, some compute functions) at ``threads``
    threads while the block runs, then as it was (a user's own setting kept)."""
    before = pa.cpu_count()
    pa.set_cpu_count(max(threads, 1))
    try:
        yield
    finally:
        pa.set_cpu_count(before)


def plan(source: Inputs, jobs: int, batch_rows: int, windowing: Windowing,
         memory: int | None) -> tuple[list[_File], pa.Schema | None, list[Piece], int]:
    """The files, a directory's schema, the pieces in input order, and the bytes a batch
    takes to profile at most (from the row groups' sizes). Errors a reader would meet at a
    file's start (a row group over the memory budget, the window column missing) are
    raised here, with the messages :func:`~watchkeeper.run.stream.stream_profiles` gives."""
    import pyarrow.parquet as pq

    fragments, schema = stream._fragments(source)
    files: list[_File] = []
    groups: list[tuple[int, int, int, int, int]] = []  # file, group, rows, row, offset
    done = offset = largest = 0
    needed = windowing.by or windowing.time
    for path, keys in fragments:
        try:
            meta = pq.ParquetFile(path, pre_buffer=False)
            names = schema.names if schema is not None else meta.schema_arrow.names
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: rows from 0: cannot read as parquet like the files "
                            f"before it: {stream._first_line(exc)}") from exc
        if memory is not None:
            stream._check_row_groups(meta, path, memory)
        if needed and needed not in names and meta.metadata.num_rows:
            raise stream.missing_column(windowing, path if offset else None, names)
        size = path.stat().st_size
        files.append(_File(path, keys, meta.metadata.num_rows, size, done))
        row = 0
        for g in range(meta.metadata.num_row_groups):
            group = meta.metadata.row_group(g)
            if group.num_rows:
                groups.append((len(files) - 1, g, group.num_rows, row, offset))
                share = min(batch_rows, group.num_rows) / group.num_rows
                largest = max(largest, int(group.total_byte_size * share))
            row += group.num_rows
            offset += group.num_rows
        done += size
    # fewer row groups than workers: each split into runs of batches, one per worker; else
    # the last ``jobs`` row groups are halved, so that the input ends in shorter pieces and
    # no core idles for up to a whole row group while another profiles the last one (the
    # second half decodes the first and drops it: on the benchmark, ~7 % of a group's CPU)
    split = -(-jobs // len(groups)) if groups and len(groups) < jobs else 1
    pieces: list[Piece] = []
    for i, (f, g, rows, row, at) in enumerate(groups):
        count = -(-rows // batch_rows)
        parts = min(max(split, 2 if jobs > 1 and i >= len(groups) - jobs else 1), count)
        for k in range(parts):
            first, last = k * count // parts, (k + 1) * count // parts
            pieces.append(Piece(f, g, first, None if k == parts - 1 else last - first,
                                row, at))
    return files, schema, pieces, largest * stream.PROFILE_OVERHEAD


@dataclass
class _Failed:
    """A piece the parent could not profile: its error, raised in its turn."""

    error: DataError


_WORK: _Work | None = None
#: the Parquet file a process has open: its path and ``pq.ParquetFile``
_OPEN: dict[Path, Any] = {}


def _start(work: _Work, parent: int | None = None) -> None:
    """A worker's start: what to do, memory freed after a batch kept for the next, Arrow
    on this process's one thread (it is one of the jobs), and an end with its ``parent``."""
    global _WORK
    if parent is not None:
        _end_with(parent)
    _WORK = work
    _OPEN.clear()  # the parent's, inherited: a worker opens its own
    keep_freed_memory()
    pa.set_cpu_count(1)


#: prctl's option: the signal this process gets when the thread that forked it ends
_PR_SET_PDEATHSIG = 1


def _end_with(parent: int) -> None:
    """Have the system kill this worker when ``parent`` ends, however it ends (SIGTERM,
    ``kill -9``): a forked worker holds its own end of the pipe it reads its work from, so
    it would otherwise wait for work for ever, orphaned, with its memory. Linux only, as
    the workers are."""
    c = libc()
    if not c:
        return
    c.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the request was made
        os._exit(1)


def _profile_piece(piece: Piece) -> list[tuple[Any, int, int]]:
    """In a worker: each batch of the piece profiled, with its rows and the input's bytes
    read once it is."""
    assert _WORK is not None
    return list(_profile_batches(piece, _WORK, _OPEN))


def _profile_batches(piece: Piece, work: _Work, opened: dict[Path, Any]
                     ) -> Iterator[tuple[Any, int, int]]:
    """Each batch of the piece profiled as it is read (in a worker or the parent), with its
    rows and the input's bytes read once it is."""
    file = work.files[piece.file]
    for table, row, offset in _read_piece(work, piece, opened):
        n = table.num_rows
        size = table.nbytes * stream.PROFILE_OVERHEAD
        if work.memory is not None and size > work.memory:
            raise stream.over_budget(file.path, row, n, size, work.memory)
        try:
            parts = (work.job(table, offset) if work.job is not None else
                     stream._profile_parts(table, offset, work.windowing, work.profile_schema,
                                           work.labels, work.task))
        except DataError as exc:
            raise stream.batch_error(file.path, row, n, exc) from exc
        seen = min(file.size, file.size * (row + n) // max(file.rows, 1))
        yield parts, n, file.done + seen


def _read_piece(work: _Work, piece: Piece, opened: dict[Path, Any]
                ) -> Iterator[tuple[pa.Table, int, int]]:
    """The piece's batches (cast to a directory's schema), each with its first row in the
    file and in the input; the batches before them in the row group decoded and dropped.
    ``opened`` holds the file last opened, kept open for the next piece."""
    import pyarrow.parquet as pq

    file = work.files[piece.file]
    row, offset = piece.row, piece.offset
    end = None if piece.count is None else piece.first + piece.count
    try:
        if file.path not in opened:
            opened.clear()
            opened[file.path] = pq.ParquetFile(file.path, pre_buffer=False,
                                               buffer_size=stream.PARQUET_BUFFER)
        batches = stream.group_batches(opened[file.path], piece.group, work.batch_rows,
                                       threads=False)
        for i, batch in enumerate(batches):
            if end is not None and i >= end:
                return
            if i >= piece.first:
                table = pa.Table.from_batches([batch])
                if work.schema is not None:
                    table = stream._conform(table, work.schema, file.keys)
                yield table, row, offset
            row += batch.num_rows
            offset += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
            OSError) as exc:
        raise DataError(f"{file.path}: rows from {row}: cannot read as parquet like the "
                        f"files before it: {stream._first_line(exc)}") from exc


def stream_pool_profiles(source: Inputs, windowing: Windowing, schema: Schema, *, jobs: int,
                         batch_rows: int, memory: int | None = None,
                         labels: pd.Series | SpilledLabels | None = None,
                         task: Task | None = None,
                         progress: Callable[[int], None] | None = None
                         ) -> tuple[list[StreamedWindow], int]:
    """:func:`~watchkeeper.run.stream.stream_profiles` of Parquet files on ``jobs`` worker
    processes (see the module's text); the same windows and unmatched labels."""
    from watchkeeper.run.label_spill import SpilledLabels

    assert not isinstance(labels, SpilledLabels)
    merger = Merger(windowing, labels, progress)
    for parts, rows, done in pool_batches(source, jobs=jobs, batch_rows=batch_rows,
                                          memory=memory, windowing=windowing, schema=schema,
                                          labels=labels, task=task):
        merger.add(parts, rows, done)
    return merger.result(schema)


def profiles(source: Inputs, reading: Iterator[stream.Batch], windowing: Windowing,
             schema: Schema, *, jobs: int, memory: int | None = None,
             labels: pd.Series | SpilledLabels | None = None, task: Task | None = None,
             progress: Callable[[int], None] | None = None
             ) -> tuple[list[StreamedWindow], int]:
    """The window profiles of ``source`` and the labels that matched no row: on worker
    processes where they can be used (:func:`usable`), else ``reading`` (the batches of
    ``source``, read lazily) on threads (:func:`~watchkeeper.run.stream.stream_profiles`);
    the same result either way."""
    if usable(source, jobs, labels):
        with arrow_threads(1):
            return stream_pool_profiles(source, windowing, schema, jobs=jobs,
                                        batch_rows=stream.BATCH_ROWS, memory=memory,
                                        labels=labels, task=task, progress=progress)
    with arrow_threads(jobs):
        return stream.stream_profiles(reading, windowing, schema, jobs=jobs, memory=memory,
                                      labels=labels, task=task, progress=progress)


def pool_batches(source: Inputs, *, jobs: int, batch_rows: int, memory: int | None = None,
                 job: Callable[[pa.Table, int], Any] | None = None,
                 windowing: Windowing | None = None, schema: Schema | None = None,
                 labels: pd.Series | None = None, task: Task | None = None
                 ) -> Iterator[tuple[Any, int, int]]:
    """What ``jobs`` processes (the parent and ``jobs - 1`` forked workers) make of each
    batch of Parquet files, in input order, with the batch's rows and the input's bytes
    read once it is: ``job(rows, first input row)``, or by default the batch's window
    profiles (``windowing``, ``schema``, ``labels``). The caller sets Arrow's threads
    (:func:`arrow_threads`: one, as the parent profiles too)."""
    windowing = windowing or Windowing()
    files, directory, pieces, batch_bytes = plan(source, jobs, batch_rows, windowing, memory)
    processes = max(1, min(jobs, len(pieces)))
    if memory is not None and batch_bytes:
        processes = max(1, min(processes, memory // batch_bytes))
    from watchkeeper.baseline.schema import Schema as _Schema

    work = _Work(files, directory, windowing, schema or _Schema(), labels, task, batch_rows,
                 memory, job)
    opened: dict[Path, Any] = {}  # the parent's open file
    workers = processes - 1
    if not workers:
        for piece in pieces:
            yield from _profile_batches(piece, work, opened)
        return
    # In input order: a worker's piece (a future) or the parent's (its batches). Each
    # worker has a piece running and one waiting; near the end only the one running, so
    # that the last pieces go to whoever is free first (with one waiting, the parent idled
    # for about a piece at the end). The parent profiles the other pieces itself, batch by
    # batch, handing a worker its next piece between two batches.
    pending: deque[Future[list[tuple[Any, int, int]]] | list[tuple[Any, int, int]]
                   | _Failed] = deque()
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_start, initargs=(work, os.getpid()))
    # the objects that exist now are left out of the garbage collector's passes until the
    # pool is done: a pass writes to every object it visits, and each page so written is
    # copied into the forked worker (20 MB fewer private pages a worker on the benchmark)
    frozen = gc.get_freeze_count() == 0  # a caller's own freeze is left as it is
    if frozen:
        gc.freeze()
    at = 0

    def feed() -> None:
        nonlocal at
        ahead = 2 if len(pieces) - at > 2 * processes else 1
        running = sum(isinstance(p, Future) and not p.done() for p in pending)
        while at < len(pieces) and running < ahead * workers and len(pending) < 4 * processes:
            pending.append(executor.submit(_profile_piece, pieces[at]))
            at, running = at + 1, running + 1

    try:
        while at < len(pieces) or pending:
            feed()
            head = pending[0] if pending else None
            if isinstance(head, _Failed):
                raise head.error
            if isinstance(head, list) or (head is not None and head.done()):
                pending.popleft()
                yield from head if isinstance(head, list) else head.result()
            elif at < len(pieces) and len(pending) < 4 * processes:
                mine: list[tuple[Any, int, int]] = []
                pending.append(mine)  # filled before the loop looks at it again
                piece, at = pieces[at], at + 1
                try:
                    for batch in _profile_batches(piece, work, opened):
                        mine.append(batch)
                        feed()
                except DataError as exc:
                    # raised in its turn: an earlier piece's error comes first, as with one
                    # job; no piece is handed out after it
                    pending[next(i for i, job in enumerate(pending) if job is mine)] = \
                        _Failed(exc)
                    at = len(pieces)
            else:
                assert head is not None
                pending.popleft()
                yield from head.result()  # the parent waits for a worker
    except BrokenProcessPool as exc:
        raise WorkerLost(
            "a worker process of the check ended abruptly: killed, or out of memory (the "
            "system log says which); nothing was written. Run it again (with fewer --jobs "
            "or a --memory budget if memory ran out)") from exc
    finally:
        opened.clear()
        executor.shutdown(wait=True, cancel_futures=True)
        if frozen:
            gc.unfreeze()
