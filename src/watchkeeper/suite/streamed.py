"""``init`` of a reference too big for memory: read batch by batch, twice, never whole.

Pass 1 (:func:`scan`) keeps, in memory bounded whatever the number of rows:

- a uniform random sample of :data:`SAMPLE_ROWS` rows (a reservoir: the row at input
  position i gets draw i of a generator seeded by the suite seed as its key (:func:`row_keys`),
  the rows with the smallest keys are kept), in input order;
- for every numeric column a :class:`~watchkeeper.stats.quantiles.QuantileSketch` of its
  finite values (rank error at most ``levels / k``: 0.29 % of the rows at 10 million);
- for every column exact counts of each category label, given up past
  :data:`MAX_COUNTED_LEVELS` distinct values (such a column is an identifier or text, or a
  code with more levels than a plan keeps).

Kinds and roles are inferred from the sample, as :func:`~watchkeeper.baseline.schema.
infer_schema` infers them from a whole table; then numeric bin edges are replaced by the
sketch's quantiles and categorical levels by the exact counts (a code with more than
``MAX_CATEGORIES`` levels keeps the sample's plan). The task, the label and loss models,
the OOD model, the importance and every monitor's calibration (its time-ordered chunks
included) are fitted on the sample; calibration sees the sample's own profile, so where a
null resamples the reference too it allows for the noise of 200,000 reference rows rather
than of all of them (thresholds a little wider on that account). Pass 2 profiles every row
with that schema through :func:`~watchkeeper.run.stream.stream_profiles`: the reference
profile the suite keeps, and windows are compared with, is exact.

The passes are the same for every reader (:class:`TwoPass`): local files (:class:`Files`)
scan their batches in order; Spark (``watchkeeper.spark.init``) scans each partition as a
slice that starts at its input position (:func:`scan_slice`) and merges the slices'
scans (:meth:`Scan.merge`): the same sample and counts, and sketches within the same
rank bound (a merge keeps it, in any order).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.binning import (
    MAX_CATEGORIES,
    edges_from_quantiles,
    plan_categories,
    quantile_points,
)
from watchkeeper.baseline.schema import Kind, Role, Schema
from watchkeeper.errors import DataError
from watchkeeper.io.delimited import CsvLayout
from watchkeeper.io.missing import missing_as_null
from watchkeeper.io.values import category_counts, category_label, numbers, type_class
from watchkeeper.profiles.core import Profile
from watchkeeper.run import stream
from watchkeeper.stats.quantiles import QuantileSketch

#: Reference rows the models and calibration of a streamed init are fitted on.
SAMPLE_ROWS = 200_000
#: Distinct values counted per column before the count is given up.
MAX_COUNTED_LEVELS = 10_000
#: ``init`` streams a Parquet reference of more rows than this (a CSV one of more bytes
#: than :data:`STREAM_CSV_BYTES`), or one whose decoded size times :data:`INIT_OVERHEAD`
#: passes the ``memory`` budget.
STREAM_ROWS = 2_000_000
STREAM_CSV_BYTES = 200_000_000
#: Memory an in-memory init takes per byte of the decoded reference (copies as floats,
#: models' matrices, calibration chunks), rounded up.
INIT_OVERHEAD = 8


def should_stream(reference: object, memory: int | None) -> bool:
    """Whether ``init`` reads this reference batch by batch (see :data:`STREAM_ROWS`)."""
    if not isinstance(reference, (str, os.PathLike)) or not stream.streamable(reference):
        return False
    path = Path(reference)
    if not path.exists():
        return True  # a glob: only the stream reader reads it
    try:
        files = stream.inputs(reference)
    except DataError:
        return False  # let the in-memory reader say what is wrong
    if files.format == "csv":
        decoded, big = files.bytes, files.bytes > STREAM_CSV_BYTES
    else:
        import pyarrow.parquet as pq

        rows = decoded = 0
        for f in files.files:
            try:
                meta = pq.ParquetFile(f).metadata
            except (pa.ArrowInvalid, OSError):
                return False  # let the in-memory reader say what is wrong
            rows += meta.num_rows
            decoded += sum(meta.row_group(i).total_byte_size
                           for i in range(meta.num_row_groups))
        big = rows > STREAM_ROWS
    return big or (memory is not None and decoded * INIT_OVERHEAD > memory)


def row_keys(seed: int, offset: int, n: int) -> np.ndarray:
    """The sampling keys of the rows at input positions ``offset`` to ``offset + n - 1``:
    draws of one generator seeded by the suite seed, the row at position i taking draw i,
    so a reader of any slice of the input (a batch, a Spark partition) draws the keys a
    reader of the whole would."""
    bits = np.random.PCG64([seed, 0x5EED])
    if offset:
        bits.advance(offset)
    return np.random.Generator(bits).random(n)


@dataclass
class Scan:
    """What pass 1 kept of a reference, or of a slice of it (see the module). Scans of
    slices merge (:meth:`merge`) into the scan of their union: counts exactly, sketches
    within their rank error, the sample the rows of smallest key."""

    sample_rows: int = SAMPLE_ROWS
    rows: int = 0
    sample: pa.Table | None = None
    sketches: dict[str, QuantileSketch] = field(default_factory=dict)
    counts: dict[str, Counter[str] | None] = field(default_factory=dict)
    keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    at: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def add(self, table: pa.Table, tally: Tally, seed: int, offset: int) -> None:
        """Add a batch that starts at input position ``offset``, and its tally."""
        self.absorb(tally)
        self._keep(table, row_keys(seed, offset, table.num_rows),
                   np.arange(offset, offset + table.num_rows, dtype=np.int64))
        self.rows += table.num_rows

    def add_kept(self, tally: Tally, kept: pa.Table, keys: np.ndarray, at: np.ndarray,
                 rows: int) -> None:
        """Add a batch of ``rows`` rows of which a worker kept only those that can be in
        the sample (``kept``, their keys and input positions; :func:`_scan_batch`)."""
        self.absorb(tally)
        self._keep(kept, keys, at)
        self.rows += rows

    def merge(self, other: Scan) -> Scan:
        """Add the scan of another slice of the input (in place; returns self)."""
        self.absorb(Tally(other.sketches, other.counts))
        if other.sample is not None:
            self._keep(other.sample, other.keys, other.at)
        self.rows += other.rows
        return self

    def _keep(self, table: pa.Table, keys: np.ndarray, at: np.ndarray) -> None:
        if self.sample is None:
            kept, self.keys, self.at = table, keys, at
        else:
            kept = pa.concat_tables([self.sample, table], promote_options="permissive")
            self.keys, self.at = np.concatenate([self.keys, keys]), np.concatenate([self.at, at])
        if kept.num_rows > self.sample_rows:
            best = np.argpartition(self.keys, self.sample_rows - 1)[: self.sample_rows]
            kept, self.keys, self.at = kept.take(pa.array(best)), self.keys[best], self.at[best]
        if kept.num_rows and np.any(np.diff(self.at) < 0):  # the kept rows in input order
            order = np.argsort(self.at, kind="stable")
            kept, self.keys, self.at = kept.take(pa.array(order)), self.keys[order], \
                self.at[order]
        self.sample = kept

    def absorb(self, tally: Tally) -> None:
        """Add one batch's sketches and counts."""
        for name, sketch in tally.sketches.items():
            if name in self.sketches:
                self.sketches[name].merge(sketch)
            else:
                self.sketches[name] = sketch
        for name, counts in tally.counts.items():
            mine = self.counts.get(name, Counter())
            if mine is None or counts is None:
                self.counts[name] = None
                continue
            mine.update(counts)
            self.counts[name] = mine if len(mine) <= MAX_COUNTED_LEVELS else None

    def replan(self, schema: Schema, bins: int) -> None:
        """Bin edges from the sketches, categorical levels from the exact counts."""
        for c in schema:
            if c.role == Role.IGNORE:
                continue
            if c.kind == Kind.NUMERIC and c.edges and self.sketches.get(c.name):
                sketch = self.sketches[c.name]
                c.edges = edges_from_quantiles(sketch.quantiles(quantile_points(bins)))
            elif c.kind in (Kind.CATEGORICAL, Kind.BOOLEAN) and not c.truncated:
                counts = self.counts.get(c.name)
                if counts is None:
                    continue
                counts = Counter(counts)
                if c.kind == Kind.BOOLEAN:
                    counts.update({"false": 0, "true": 0})
                levels, truncated = plan_categories(counts, MAX_CATEGORIES)
                if not truncated:
                    c.categories = levels


def scan_slice(tables: Iterable[pa.Table], *, seed: int, offset: int,
               sample_rows: int | None = None) -> Scan:
    """Pass 1 over the batches of one slice of the input that starts at input position
    ``offset`` (a Spark partition; the whole input is the slice at 0)."""
    out = Scan(sample_rows or SAMPLE_ROWS)
    for table in tables:
        table = missing_as_null(table)
        out.add(table, tally(table), seed, offset + out.rows)
    return out


def key_bound(seed: int, rows: int, k: int) -> float:
    """The k-th smallest sampling key of an input of ``rows`` rows (:func:`row_keys`): the
    sample is the rows whose key is at most this (every row when ``rows <= k``). Drawn a
    million at a time, keeping the k smallest: ~0.1 s of CPU per 10 million rows."""
    if rows <= k:
        return np.inf
    draws = np.random.Generator(np.random.PCG64([seed, 0x5EED]))
    best = np.empty(0)
    for at in range(0, rows, 1 << 20):
        chunk = draws.random(min(1 << 20, rows - at))
        if best.size >= k:
            chunk = chunk[chunk <= best.max()]
        best = np.concatenate([best, chunk])
        if best.size > k:
            best = np.partition(best, k - 1)[:k]
    return float(best.max())


def _scan_batch(table: pa.Table, offset: int, *, seed: int, bound: float
                ) -> tuple[Tally, pa.Table, np.ndarray, np.ndarray]:
    """In a worker process: a batch's tally, and its rows that are in the sample (key at
    most ``bound``) with their keys and input positions: never the whole batch."""
    table = missing_as_null(table)
    keys = row_keys(seed, offset, table.num_rows)
    keep = np.flatnonzero(keys <= bound)
    return tally(table), table.take(pa.array(keep)), keys[keep], offset + keep


def scan(source: stream.Inputs, *, seed: int = 0, sample_rows: int | None = None,
         layout: CsvLayout | None = None, notes: Callable[[Path, str], None] | None = None,
         memory: int | None = None, jobs: int = 1,
         progress: Callable[[int], None] | None = None) -> Scan:
    """Pass 1 over local files: the sample, sketches and counts of every batch (see the
    module). Batches are sketched and counted ``jobs`` at a time and merged in input order,
    so the result is the same for any ``jobs``: Parquet by worker processes
    (:mod:`~watchkeeper.run.stream_pool`) that return each batch's tally and only its
    rows in the sample (their keys at most :func:`key_bound`), CSV by threads."""
    from watchkeeper.run import stream_pool

    out = Scan(sample_rows or SAMPLE_ROWS)
    if stream_pool.usable(source, jobs, None):
        import functools

        import pyarrow.parquet as pq

        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in source.files)
        per_batch = functools.partial(_scan_batch, seed=seed,
                                      bound=key_bound(seed, rows, out.sample_rows))
        with stream_pool.arrow_threads(1):
            for (found, kept, keys, at), n, done in stream_pool.pool_batches(
                    source, jobs=jobs, batch_rows=stream.BATCH_ROWS, memory=memory,
                    job=per_batch):
                out.add_kept(found, kept, keys, at, n)
                if progress is not None:
                    progress(done)
        return finish(out)
    with stream_pool.arrow_threads(jobs):
        return _scan_threads(source, out, seed=seed, layout=layout, notes=notes,
                             memory=memory, jobs=jobs, progress=progress)


def _scan_threads(source: stream.Inputs, out: Scan, *, seed: int, layout: CsvLayout | None,
                  notes: Callable[[Path, str], None] | None, memory: int | None, jobs: int,
                  progress: Callable[[int], None] | None) -> Scan:
    """:func:`scan` on ``jobs`` threads: CSV, and Parquet where no worker process is used
    (one job, fewer than ``stream_pool.POOL_MIN_ROWS`` rows)."""
    executor = ThreadPoolExecutor(jobs) if jobs > 1 else None
    pending: deque[tuple[Future[Tally] | Tally, pa.Table, int]] = deque()

    def settle() -> None:
        job, table, done = pending.popleft()
        out.add(table, job.result() if isinstance(job, Future) else job, seed, out.rows)
        if progress is not None:
            progress(done)

    try:
        for batch in stream.batches(source, batch_rows=stream.BATCH_ROWS, layout=layout,
                                    notes=notes, memory=memory):
            table = missing_as_null(batch.table)
            while len(pending) >= 2 * jobs:
                settle()
            job: Future[Tally] | Tally = (executor.submit(tally, table) if executor
                                          else tally(table))
            pending.append((job, table, batch.bytes_done))
            if executor is None:
                settle()  # one batch held at a time
        while pending:
            settle()
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return finish(out)


def finish(found: Scan) -> Scan:
    """The scan of a whole input, checked to have rows, its sample in one chunk."""
    if found.sample is None or not found.rows:
        raise DataError("the reference data has no rows")
    found.sample = found.sample.combine_chunks()
    return found


@dataclass
class Tally:
    """One batch's sketches and counts (None: a count given up)."""

    sketches: dict[str, QuantileSketch] = field(default_factory=dict)
    counts: dict[str, Counter[str] | None] = field(default_factory=dict)


def tally(table: pa.Table) -> Tally:
    """The sketch of every numeric column of a batch and the counts of each label."""
    out = Tally()
    for name in table.column_names:
        column = table.column(name)
        cls = type_class(column.type)
        if cls == "numeric":
            finite = numbers(column).finite
            out.sketches[name] = sketch = QuantileSketch()
            sketch.add(finite)
            if finite.size and not np.all(np.mod(finite, 1.0) == 0.0):
                out.counts[name] = None  # not integer codes
                continue
            values, counted = np.unique(finite, return_counts=True)
            if values.size > MAX_COUNTED_LEVELS:
                out.counts[name] = None
                continue
            out.counts[name] = Counter({category_label(float(v)): k for v, k in
                                        zip(values.tolist(), counted.tolist(), strict=True)})
        elif cls in ("string", "boolean"):
            counts = category_counts(column)[0]
            out.counts[name] = counts if len(counts) <= MAX_COUNTED_LEVELS else None
    return out


class TwoPass(ABC):
    """A reference ``init`` reads twice, never whole: :meth:`scan` (pass 1) and
    :meth:`profile` (pass 2). :class:`Files` reads local files; ``watchkeeper.spark``
    reads a Spark DataFrame with the same pass functions (:func:`scan_slice` per
    partition, :meth:`Scan.merge`)."""

    #: What the suite records as its source (a path), if anything.
    source: str | None = None

    @abstractmethod
    def scan(self, *, seed: int, progress: Callable[[int], None] | None = None) -> Scan:
        """Pass 1: the sample, sketches and counts of every row."""

    @abstractmethod
    def profile(self, schema: Schema) -> Profile:
        """Pass 2: the exact profile of every row under ``schema``."""


@dataclass
class Files(TwoPass):
    """Local Parquet or CSV files (a file, directory or glob), read batch by batch."""

    inputs: stream.Inputs
    source: str | None = None
    layout: CsvLayout | None = None
    memory: int | None = None
    jobs: int = 1
    notes: Callable[[Path, str], None] | None = None
    sample_rows: int | None = None

    def scan(self, *, seed: int, progress: Callable[[int], None] | None = None) -> Scan:
        return scan(self.inputs, seed=seed, sample_rows=self.sample_rows, layout=self.layout,
                    notes=self.notes, memory=self.memory, jobs=self.jobs, progress=progress)

    def profile(self, schema: Schema) -> Profile:
        from watchkeeper.run import stream_pool

        windows, _ = stream_pool.profiles(
            self.inputs, stream.batches(self.inputs, batch_rows=stream.BATCH_ROWS,
                                        layout=self.layout, memory=self.memory),
            stream.Windowing(), schema, jobs=self.jobs, memory=self.memory)
        return windows[0].profile


