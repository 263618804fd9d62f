"""``init`` of a reference too big for memory: read batch by batch, twice, never whole.

Pass 1 (:func:`scan`) keeps, in memory bounded whatever the number of rows:

- a uniform random sample of :data:`SAMPLE_ROWS` rows (a reservoir: every row gets a
  random key from a generator seeded by the suite seed, the rows with the smallest keys are
  kept), in input order;
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
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable
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
from watchkeeper.io.tables import CsvLayout, missing_as_null
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


@dataclass
class Scan:
    """What pass 1 kept of a reference (see the module)."""

    source: stream.Inputs
    rows: int = 0
    sample: pa.Table | None = None
    sketches: dict[str, QuantileSketch] = field(default_factory=dict)
    counts: dict[str, Counter[str] | None] = field(default_factory=dict)

    def absorb(self, tally: _Tally) -> None:
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


def scan(source: stream.Inputs, *, seed: int = 0, sample_rows: int = SAMPLE_ROWS,
         layout: CsvLayout | None = None, notes: Callable[[Path, str], None] | None = None,
         memory: int | None = None, jobs: int = 1,
         progress: Callable[[int], None] | None = None) -> Scan:
    """Pass 1: the sample, sketches and counts of every batch (see the module). Batches
    are sketched and counted ``jobs`` at a time and merged in input order, so the result
    is the same for any ``jobs``."""
    out = Scan(source)
    rng = np.random.default_rng([seed, 0x5EED])
    kept: pa.Table | None = None
    keys = np.empty(0)
    executor = ThreadPoolExecutor(jobs) if jobs > 1 else None
    pending: deque[tuple[Future[_Tally] | _Tally, pa.Table, int]] = deque()

    def settle() -> None:
        nonlocal kept, keys
        job, table, done = pending.popleft()
        out.absorb(job.result() if isinstance(job, Future) else job)
        batch_keys = rng.random(table.num_rows)
        out.rows += table.num_rows
        if kept is None:
            kept, keys = table, batch_keys
        else:
            kept = pa.concat_tables([kept, table], promote_options="permissive")
            keys = np.concatenate([keys, batch_keys])
        if kept.num_rows > sample_rows:  # sorted: the kept rows stay in input order
            best = np.sort(np.argpartition(keys, sample_rows - 1)[:sample_rows])
            kept, keys = kept.take(pa.array(best)), keys[best]
        if progress is not None:
            progress(done)

    try:
        for batch in stream.batches(source, batch_rows=stream.BATCH_ROWS, layout=layout,
                                    notes=notes, memory=memory):
            table = missing_as_null(batch.table)
            while len(pending) >= 2 * jobs:
                settle()
            job: Future[_Tally] | _Tally = (executor.submit(_tally, table) if executor
                                            else _tally(table))
            pending.append((job, table, batch.bytes_done))
            if executor is None:
                settle()  # one batch held at a time
        while pending:
            settle()
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    if kept is None or not out.rows:
        raise DataError("the reference data has no rows")
    out.sample = kept.combine_chunks()
    return out


@dataclass
class _Tally:
    """One batch's sketches and counts (None: a count given up)."""

    sketches: dict[str, QuantileSketch] = field(default_factory=dict)
    counts: dict[str, Counter[str] | None] = field(default_factory=dict)


def _tally(table: pa.Table) -> _Tally:
    out = _Tally()
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
            values, tally = np.unique(finite, return_counts=True)
            if values.size > MAX_COUNTED_LEVELS:
                out.counts[name] = None
                continue
            out.counts[name] = Counter({category_label(float(v)): k for v, k in
                                        zip(values.tolist(), tally.tolist(), strict=True)})
        elif cls in ("string", "boolean"):
            counts = category_counts(column)[0]
            out.counts[name] = counts if len(counts) <= MAX_COUNTED_LEVELS else None
    return out


def reference_profile(found: Scan, schema: Schema, *, jobs: int, layout: CsvLayout | None,
                      memory: int | None,
                      progress: Callable[[int], None] | None = None) -> Profile:
    """Pass 2: the exact profile of every reference row under ``schema``."""
    windows, _ = stream.stream_profiles(
        stream.batches(found.source, batch_rows=stream.BATCH_ROWS, layout=layout,
                       memory=memory),
        stream.Windowing(), schema, jobs=jobs, memory=memory, progress=progress)
    return windows[0].profile
