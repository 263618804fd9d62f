"""Streaming batch check: files read batch by batch, each batch profiled (on every core)
and merged into its window's profile, so memory stays flat in the number of rows.

A window's profile is the merge of the profiles of its parts, in the order of the input
(profiles merge exactly in every count; means and variances up to floating-point
rounding, far below the six digits of the result). Windows by rows, by a batch column
and by time cross batch and file boundaries. Every window's profile is kept until the
input ends, as the in-memory check keeps them, so rows may come in any order: a time
window is complete only when the input is, and none needs a late-data rule. What grows
is the number of windows (at most 100,000 time windows), never the rows.

Inputs: a Parquet or CSV file, a directory of them (read recursively in path order,
hive partitions ``key=value`` as columns, names starting with ``.`` or ``_`` skipped) or a
glob (``'data/2024-*.parquet'``, ``**`` for any depth).
"""

from __future__ import annotations

import glob as globbing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from watchkeeper.errors import DataError
from watchkeeper.io.delimited import CsvLayout, csv_blocks
from watchkeeper.io.delta import is_delta, live_files
from watchkeeper.io.missing import missing_as_null, rows_of
from watchkeeper.io.names import did_you_mean
from watchkeeper.io.values import epoch_seconds
from watchkeeper.profiles.core import Profile, profile
from watchkeeper.run.stream_merge import _MISSING, Merger, StreamedWindow

if TYPE_CHECKING:
    import pandas as pd

    from watchkeeper.baseline.schema import Schema
    from watchkeeper.baseline.task import Task
    from watchkeeper.run.check import WindowLength
    from watchkeeper.run.label_spill import SpilledLabels

#: Rows profiled at a time (a part of a window within one batch may be smaller). Half of
#: 131,072, the size before: on the benchmark's 20 columns the check's peak memory fell by
#: 47 MB on one core and 125 MB on two (10M rows), for 5-7 % more time.
BATCH_ROWS = 65_536
#: Bytes of a Parquet column chunk read at a time (pages decoded as they come). Unbuffered,
#: a row group's every column chunk is read whole before its first batch: +100 MB a
#: reading process on the benchmark's 1M-row groups, and as much new memory faulted in.
PARQUET_BUFFER = 1 << 20
#: Bytes of CSV text parsed at a time (Arrow's default: types are inferred from the first).
CSV_BLOCK = 1 << 20
#: Memory taken, per byte of a batch in Arrow, while it is profiled (copies of its columns
#: as floats, masks, codes): measured on the 20-column benchmark, rounded up.
PROFILE_OVERHEAD = 3
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}


def parse_memory(text: str | int | None) -> int | None:
    """``2GB``, ``512MB``, ``1.5G`` or a number of bytes, as bytes; None for no budget.

    >>> parse_memory("2GB"), parse_memory("512m"), parse_memory(None)
    (2000000000, 512000000, None)
    """
    if text is None or isinstance(text, int):
        return text
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?)b?\s*", str(text), re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise DataError(f"memory: expected a size like 2GB, 512MB or 800MiB, got {text!r}")
    unit = match.group(2).lower()
    base = 1024 if unit.endswith("i") else 1000
    power = "kmgt".find(unit[:1]) + 1 if unit else 0
    return int(float(match.group(1)) * base**power)


# --- what to read ------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """The files of a streamed check, in the order they are read, and their format."""

    files: list[Path]
    format: str  # "parquet" or "csv"
    root: Path | None = None  # the directory whose key=value folders are hive partitions

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def _kind(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst"):
        suffixes = suffixes[:-1]
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) and "=" not in part
               for part in path.relative_to(root).parts)


def streamable(spec: str | os.PathLike[str]) -> bool:
    """Whether a streamed check reads this input: a Parquet or CSV file, a directory
    holding them, or a glob."""
    p = Path(spec)
    if p.is_file():
        return _kind(p) is not None
    return p.is_dir() or any(c in str(spec) for c in "*?[")


def streamable_file(spec: object, keep: str | None = None) -> bool:
    """Whether :meth:`Suite.check <watchkeeper.Suite.check>` streams ``spec``: a Parquet or
    CSV file without the column ``keep`` (the prediction id, whose values an in-memory check
    keeps for labels that come later). A CSV file's columns are not known before it is
    parsed: with ``keep`` given, it is read in memory."""
    if not isinstance(spec, (str, os.PathLike)) or not Path(spec).is_file():
        return False
    kind = _kind(Path(spec))
    if kind is None or keep is None:
        return kind is not None
    if kind == "csv":
        return False
    import pyarrow.parquet as pq

    try:
        return keep not in pq.read_schema(spec).names
    except (pa.ArrowException, OSError):
        return False  # read in memory, which reports what is wrong


def inputs(spec: str | os.PathLike[str]) -> Inputs:
    """The files a path, directory or glob names, sorted by path."""
    p = Path(spec)
    root: Path | None = None
    if p.is_file():
        files = [p]
    elif p.is_dir() and is_delta(p):  # a Delta table: its live files, not the removed
        root = p
        files = live_files(p)
        if not files:
            raise DataError(f"{p}: the Delta table has no data files at its latest version")
    elif p.is_dir():
        root = p
        files = sorted(f for f in p.rglob("*") if f.is_file() and not _hidden(f, p)
                       and _kind(f) is not None)
        if not files:
            raise DataError(f"{p}: no Parquet or CSV files in this directory")
    elif any(c in str(spec) for c in "*?["):
        files = sorted(Path(f) for f in globbing.glob(str(spec), recursive=True)
                       if Path(f).is_file())
        if not files:
            raise DataError(f"{spec}: no file matches this pattern")
    else:
        raise DataError(f"{p}: no such file")
    kinds = {_kind(f) for f in files}
    if None in kinds:
        odd = next(f for f in files if _kind(f) is None)
        raise DataError(f"{odd}: not a Parquet or CSV file; a streamed check reads .parquet, "
                        ".pq, .csv and .tsv (optionally .gz)")
    if len(kinds) > 1:
        raise DataError(f"{spec}: mixes Parquet and CSV files; check them separately")
    return Inputs(files, kinds.pop() or "", root)


# --- batches -----------------------------------------------------------------------------


@dataclass
class Batch:
    """Rows read at a time, with where they come from (for errors and progress)."""

    table: pa.Table
    path: Path
    first_row: int  # in its file
    bytes_done: int  # of all the input, once this batch is read


def batches(source: Inputs, *, batch_rows: int = BATCH_ROWS, layout: CsvLayout | None = None,
            names_if_headerless: tuple[str, ...] | None = None,
            notes: Callable[[Path, str], None] | None = None,
            memory: int | None = None) -> Iterator[Batch]:
    """The rows of every file in turn, ``batch_rows`` or fewer at a time (CSV blocks
    cleaned as :func:`read_csv` cleans a file; Parquet batches are cleaned of missing-value
    spellings where they are profiled)."""
    if source.format == "parquet":
        yield from _parquet_batches(source, batch_rows, memory)
        return
    done = 0
    for path in source.files:
        given = layout or CsvLayout()
        if names_if_headerless and given.names is None and given.header is not False:
            from dataclasses import replace

            given = replace(given, names_if_headerless=names_if_headerless)
        blocks, _, said = csv_blocks(path, given, block_bytes=CSV_BLOCK)
        for note in said:
            if notes is not None:
                notes(path, note)
        size = path.stat().st_size
        pending: list[pa.Table] = []
        first = rows = 0
        for block in blocks:
            if not pending:
                first = block.first_row
            pending.append(block.table)
            rows += block.table.num_rows
            if rows >= batch_rows:
                yield Batch(_concat(pending), path, first, done + block.bytes_read)
                pending, rows = [], 0
        if pending:
            yield Batch(_concat(pending), path, first, done + size)
        done += size


def label_batches(labels: Any, layout: CsvLayout | None, memory: int | None
                  ) -> Iterator[pa.Table] | None:
    """Labels batch by batch, for :func:`~watchkeeper.run.label_spill.read_labels` to
    spill past their share of ``memory``: a labels file (or directory, glob) read as the
    predictions are, a table in slices; None without a budget (held as they are)."""
    if memory is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        if not streamable(labels):
            return None
        return (missing_as_null(b.table) for b in batches(
            inputs(labels), batch_rows=BATCH_ROWS, layout=layout, memory=memory))
    from watchkeeper.io.tables import to_table

    held = to_table(labels, "labels")
    return (held.slice(at, BATCH_ROWS) for at in range(0, max(held.num_rows, 1), BATCH_ROWS))


def _concat(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else missing_as_null(pa.concat_tables(tables))


def _fragments(source: Inputs) -> tuple[list[tuple[Path, dict[str, Any]]], pa.Schema | None]:
    """Parquet files with their hive partition values, and a directory's schema (None for
    files and globs: each read as it is)."""
    import pyarrow.dataset as ds

    files = [str(f) for f in source.files]
    if source.root is None:
        return [(Path(f), {}) for f in files], None
    try:  # as pq.read_table(directory) reads it
        dataset = ds.dataset(files, format="parquet", partition_base_dir=str(source.root),
                             partitioning=ds.HivePartitioning.discover(infer_dictionary=True))
        return ([(Path(f.path), ds.get_partition_keys(f.partition_expression))
                 for f in dataset.get_fragments()], dataset.schema)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{source.root}: cannot read as parquet: {_first_line(exc)}") from exc


def _parquet_batches(source: Inputs, batch_rows: int, memory: int | None) -> Iterator[Batch]:
    """Each file's row groups in turn through ``ParquetFile.iter_batches`` (one row group
    decoded at a time, without pre-buffering: the dataset scanner read row groups ahead,
    +660 MB at 10M rows; column chunks read :data:`PARQUET_BUFFER` bytes at a time). A
    directory's columns and hive partitions are discovered as ``pq.read_table`` discovers
    them, and every file is cast to that schema. Batches never
    cross a row group (:func:`group_batches`), so worker processes that read row groups
    themselves (:mod:`watchkeeper.run.stream_pool`) profile the very same batches."""
    import pyarrow.parquet as pq

    fragments, schema = _fragments(source)
    done = 0
    for path, keys in fragments:
        size, row = path.stat().st_size, 0
        try:
            file = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER)
            total = max(file.metadata.num_rows, 1)
            if memory is not None:
                _check_row_groups(file, path, memory)
            for group in range(file.metadata.num_row_groups):
                for batch in group_batches(file, group, batch_rows, threads=True):
                    table = pa.Table.from_batches([batch])
                    if schema is not None:
                        table = _conform(table, schema, keys)
                    seen = min(size, size * (row + batch.num_rows) // total)
                    # cleaned (missing_as_null) by the worker that profiles it
                    yield Batch(table, path, row, done + seen)
                    row += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
                OSError) as exc:
            raise DataError(f"{path}: rows from {row}: cannot read as parquet like the "
                            f"files before it: {_first_line(exc)}") from exc
        done += size


def group_batches(file: Any, group: int, batch_rows: int, *, threads: bool
                  ) -> Iterator[pa.RecordBatch]:
    """The non-empty batches of one row group of a ``pq.ParquetFile``: ``batch_rows`` rows
    each but the last."""
    for batch in file.iter_batches(batch_size=batch_rows, row_groups=[group],
                                   use_threads=threads):
        if batch.num_rows:
            yield batch


def _check_row_groups(file: Any, path: Path, memory: int) -> None:
    """A row group is decoded whole: one larger than the memory budget cannot keep to it."""
    first = 0
    for i in range(file.metadata.num_row_groups):
        group = file.metadata.row_group(i)
        if group.total_byte_size > memory:
            raise DataError(
                f"{path}: rows {first}-{first + group.num_rows - 1}: a row group of "
                f"{group.num_rows} rows takes {_mb(group.total_byte_size)} decoded, more than "
                f"the memory budget ({_mb(memory)}); give more memory or write the file with "
                "smaller row groups (pyarrow: row_group_size=)")
        first += group.num_rows


def _conform(table: pa.Table, schema: pa.Schema, keys: dict[str, Any]) -> pa.Table:
    """A file's rows with a directory's columns: each cast to the discovered type, missing
    ones null, hive partition values repeated."""
    n, columns = table.num_rows, []
    for field_ in schema:
        if field_.name in keys:
            value = keys[field_.name]
            kind = field_.type
            if pa.types.is_dictionary(kind):
                column = pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, dtype=np.int32), kind.index_type),
                    pa.array([value], kind.value_type))
            else:
                column = pa.array([value] * n, kind)
        elif field_.name in table.column_names:
            column = table.column(field_.name)
            if column.type != field_.type:
                column = column.cast(field_.type)
        else:
            column = pa.nulls(n, field_.type)
        columns.append(column)
    return pa.table(columns, schema=schema)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- windows -----------------------------------------------------------------------------


@dataclass
class Windowing:
    """How rows are cut into windows: every ``rows`` rows (all rows when None), by the
    values of column ``by``, or by ``length`` of the timestamp column ``time``."""

    rows: int | None = None
    by: str | None = None
    time: str | None = None
    length: WindowLength | None = None
    tz: str | None = None
    drop: tuple[str, ...] = ()  # columns cut by and not profiled (a user's batch column)

    def parts(self, table: pa.Table, offset: int
              ) -> tuple[list[tuple[Any, pa.Table]], tuple[float, float] | None]:
        """The rows of a batch that start at row ``offset`` of the input, by window key;
        and for time windows, the first and last timestamp of the batch."""
        if self.by is not None:
            return _by_value(table, self.by), None
        if self.time is not None:
            return _by_time(table, self.time, self._calendar())
        size = self.rows or 0
        if not size:
            return [(0, table)], None
        out, at = [], 0
        while at < table.num_rows:
            key = (offset + at) // size
            take = min((key + 1) * size - offset - at, table.num_rows - at)
            out.append((key, table.slice(at, take)))
            at += take
        return out, None

    def _calendar(self) -> Any:
        from watchkeeper.run.check import Calendar

        assert self.length is not None
        return Calendar(self.length, self.tz)


def _by_value(table: pa.Table, column: str) -> list[tuple[Any, pa.Table]]:
    import pyarrow.compute as pc

    if column not in table.column_names:
        raise DataError(f"window_by: column {column!r} is not in the data"
                        f"{did_you_mean(column, table.column_names)}")
    values = table.column(column)
    out: list[tuple[Any, pa.Table]] = []
    for value in pc.unique(values).to_pylist():
        if value is not None:
            out.append((value, table.filter(pc.equal(values, pa.scalar(value)))))
    missing = pc.is_null(values)
    if pc.any(missing).as_py():
        out.append((_MISSING, table.filter(missing)))
    return out


def _by_time(table: pa.Table, column: str, calendar: Any
             ) -> tuple[list[tuple[Any, pa.Table]], tuple[float, float] | None]:
    if column not in table.column_names:
        raise DataError(f"timestamp column {column!r} is not in the data"
                        f"{did_you_mean(column, table.column_names)}")
    seconds = epoch_seconds(table.column(column))
    known = np.isfinite(seconds)
    out: list[tuple[Any, pa.Table]] = []
    bounds = None
    if known.any():
        keys = calendar.keys(seconds[known])
        order = np.argsort(keys, kind="stable")
        rows = np.flatnonzero(known)[order]
        sorted_keys = keys[order]
        cuts = np.flatnonzero(np.diff(sorted_keys)) + 1
        for chunk in np.split(np.arange(len(rows)), cuts):
            key = int(sorted_keys[chunk[0]])
            out.append((key, table.take(pa.array(rows[chunk]))))
        bounds = (float(seconds[known].min()), float(seconds[known].max()))
    if not known.all():
        out.append((_MISSING, table.filter(pa.array(~known))))
    return out, bounds


@dataclass
class _Parts:
    """What one batch adds (computed in the pool): profiles by window key, the first and
    last timestamp, which labels found their row, the batch's columns with no rows."""

    profiles: list[tuple[Any, Profile]]
    bounds: tuple[float, float] | None
    matched: np.ndarray | None  # positions of the labels that found their row
    empty: pa.Table


def _profile_parts(table: pa.Table, offset: int, windowing: Windowing, schema: Schema,
                   by_id: pd.Series | SpilledLabels | None, task: Task | None) -> _Parts:
    from watchkeeper.run.label_spill import SpilledLabels

    table = missing_as_null(table)  # at once when the reader cleaned it (CSV)
    matched = None
    if isinstance(by_id, SpilledLabels):
        table = by_id.join(table)
    elif by_id is not None:
        from watchkeeper.run.label_join import join_by_id

        assert task is not None
        table, matched = join_by_id(table, by_id, task)
    source = table
    table_parts, bounds = windowing.parts(source, offset)
    if windowing.drop:
        table_parts = [(k, t.drop_columns(list(windowing.drop))) for k, t in table_parts]
        table = table.drop_columns(list(windowing.drop))
    # a window's rows of a cleaned batch need no second pass of missing_as_null
    table_parts = [(k, rows_of(source, t)) for k, t in table_parts]
    return _Parts([(key, profile(part, schema)) for key, part in table_parts], bounds,
                  None if matched is None else np.flatnonzero(matched),
                  table.schema.empty_table())  # not slice(0, 0): that pickles every row


def batch_error(path: Path, first_row: int, rows: int, exc: DataError) -> DataError:
    """A batch's error, with where the batch comes from."""
    return DataError(f"{path}: rows {first_row}-{first_row + rows - 1}: {exc}")


def over_budget(path: Path, first_row: int, rows: int, size: int, memory: int) -> DataError:
    return DataError(
        f"{path}: rows {first_row}-{first_row + rows - 1}: one batch of {rows} rows takes "
        f"about {_mb(size)} to profile, more than the memory budget ({_mb(memory)}); give "
        "more memory")


def stream_profiles(batches_: Iterator[Batch], windowing: Windowing, schema: Schema, *,
                    jobs: int = 1, memory: int | None = None,
                    labels: pd.Series | SpilledLabels | None = None,
                    task: Task | None = None, progress: Callable[[int], None] | None = None
                    ) -> tuple[list[StreamedWindow], int]:
    """Profile batches (``jobs`` threads at a time) into window profiles; returns the
    windows in order and the number of labels whose id matched no row. ``labels`` are the
    last label of each id, in memory or spilled (:mod:`watchkeeper.run.label_spill`).

    At most ``2 × jobs`` batches are read ahead of the one being merged, fewer when their
    bytes would pass ``memory``; a single batch that alone would is an error. (Parquet on
    several cores goes to worker processes instead: :mod:`watchkeeper.run.stream_pool`.)"""
    merger = Merger(windowing, labels, progress)
    # threads: a batch needs no copy to reach a worker, but the GIL is held for about a
    # quarter of the profiling (measured with py-spy), so two threads gain ~1.2-1.4x
    executor = ThreadPoolExecutor(jobs) if jobs > 1 else None
    pending: deque[tuple[Future[_Parts] | _Parts, Batch, int]] = deque()
    in_flight = 0
    offset = 0

    def settle() -> None:
        nonlocal in_flight
        job, batch, size = pending.popleft()
        in_flight -= size
        rows = batch.table.num_rows
        try:
            parts: _Parts = job.result() if isinstance(job, Future) else job
        except DataError as exc:
            raise batch_error(batch.path, batch.first_row, rows, exc) from exc
        merger.add(parts, rows, batch.bytes_done)

    try:
        needed = windowing.by or windowing.time
        for batch in batches_:
            if needed and needed not in batch.table.column_names:
                raise missing_column(windowing, batch.path if offset else None,
                                     batch.table.column_names)
            size = batch.table.nbytes * PROFILE_OVERHEAD
            if memory is not None and size > memory:
                raise over_budget(batch.path, batch.first_row, batch.table.num_rows, size,
                                  memory)
            while pending and (len(pending) >= 2 * max(jobs, 1)
                               or (memory is not None and in_flight + size > memory)):
                settle()
            job: Future[_Parts] | _Parts
            if executor is not None:
                job = executor.submit(_profile_parts, batch.table, offset, windowing, schema,
                                      labels, task)
            else:
                job = _profile_parts(batch.table, offset, windowing, schema, labels, task)
            pending.append((job, batch, size))
            in_flight += size
            offset += batch.table.num_rows
            if executor is None:
                settle()
        while pending:
            settle()
    finally:
        for job, _, _ in pending:
            if isinstance(job, Future):
                job.cancel()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return merger.result(schema)


def missing_column(windowing: Windowing, path: Path | None, names: list[str]) -> DataError:
    """The error for input without the column windows are cut by."""
    needed = windowing.by or windowing.time
    what = "window_by: column" if windowing.by else "timestamp column"
    where = f"{path}: " if path is not None else ""
    return DataError(f"{where}{what} {needed!r} is not in the data"
                     f"{did_you_mean(str(needed), names)}")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"
