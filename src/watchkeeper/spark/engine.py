"""A suite's check on a Spark DataFrame: the local engine's windows, profiled where the rows are.

Each partition turns its Arrow record batches into partial window profiles with the very
function the local engine uses (:func:`watchkeeper.profiles.core.profile`, against the
suite's binning plan); Spark merges the partials of a window with a tree-reduce
(``reduceByKey``: map-side combine, then one merge per window), and the driver receives one
profile per window. It holds O(windows × profile size), never rows. Profiles merge exactly
(counts, bins and tallies are sums; moments merge by Chan's formula), so the result equals
the local engine's: counts exactly, statistics within floating-point rounding.

Windows follow the local engine (:meth:`watchkeeper.suite.core.Suite.check`): ``window_rows``
in the DataFrame's row order (its partitions in order, rows in order within each),
``window_by`` one window per value of a column (missing last), ``window`` calendar-aligned
time windows on the suite's timestamp column with the empty ones included.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.schema import Role, Schema
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.delimited import csv_parse
from watchkeeper.io.delta import is_delta, live_files
from watchkeeper.io.names import did_you_mean
from watchkeeper.io.pii import protect
from watchkeeper.io.tables import to_table
from watchkeeper.io.times import from_epoch
from watchkeeper.io.values import epoch_seconds
from watchkeeper.online.monitor import usable_times
from watchkeeper.profiles.core import Profile, profile
from watchkeeper.profiles.segments import record_codes, segment_labels
from watchkeeper.run.check import (
    Calendar,
    CheckResult,
    WindowLength,
    WindowResult,
)
from watchkeeper.run.label_join import LabelJoin, pack_codes
from watchkeeper.suite.core import Suite, assert_task

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: Helper columns the engine adds (the row window of each row; a joined label).
KEY = "__wk_window"
LABEL = "__wk_label"
SEQ = "__wk_seq"
#: Rows a partition gathers from its Arrow batches before it profiles them (a profile
#: costs a fixed time per call; Spark's batches are 10,000 rows by default).
GATHER_ROWS = 200_000
#: Bits of ``monotonically_increasing_id`` that number a row within its partition.
_ROW_BITS = 33
#: The zero-row profile of the data's columns: the profile of a time window with no rows.
_EMPTY = ("empty",)
_MISSING = ("missing",)
#: A partition's own output that is not merged: its prediction records, bad times.
_EXTRA = "extra"

_OUT = pa.schema([("key", pa.binary()), ("value", pa.binary())])


class _NoIds(LabelJoin):
    """The label join of a Spark result: it kept no prediction ids (rows) on the driver."""

    def apply(self, labels: Any, profiles: list[Profile] | None) -> tuple[set[int], int]:
        raise DataError("a check on Spark keeps no prediction ids on the driver, so labels "
                        "cannot be added to its result; check again with labels= (all of "
                        "them, joined by id on Spark)")


@dataclass(frozen=True)
class _Plan:
    """What a partition needs to cut and profile its rows (shipped to the executors)."""

    schema: Schema
    mode: str  # "all" (one window), "rows", "by" or "time"
    column: str | None = None  # the window_by or timestamp column
    length: WindowLength | None = None
    tz: str | None = None
    drop: tuple[str, ...] = ()  # columns that are not data (helpers, a window_by column)
    #: a stream's: times over a day past this one (Unix seconds) name no window, as the
    #: server rules (:func:`watchkeeper.online.monitor.usable_times`); None: any finite time
    now: float | None = None
    #: keep the prediction records of the rows with an id (a stream the server joins late
    #: labels to): the suite's task has an id column
    records: bool = False
    #: personal-data columns hashed or dropped before profiling (column → hash|drop), with
    #: ``key`` (None: dropped), as the server does (:func:`watchkeeper.io.pii.protect`)
    pii: tuple[tuple[str, str], ...] = ()
    key: bytes | None = field(default=None, repr=False)

    def split(self, table: pa.Table, bad: list[int] | None = None
              ) -> Iterator[tuple[Any, pa.Table, float | None, float | None]]:
        """(window key, its rows, first and last timestamp) of each window in ``table``;
        rows whose time names no window (see ``now``) are counted in ``bad``, and windowed
        with those without a time."""
        if self.mode == "all":
            yield 0, table, None, None
        elif self.mode == "rows":
            keys = table.column(KEY).to_numpy(zero_copy_only=False)
            yield from ((int(k), part, None, None) for k, part in _groups(table, keys))
        elif self.mode == "by":
            import pyarrow.compute as pc

            assert self.column is not None
            values = table.column(self.column)
            for value in pc.unique(values).to_pylist():
                if value is not None:
                    yield ("value", value), table.filter(pc.equal(values, pa.scalar(value))), \
                        None, None
            missing = pc.is_null(values)
            if pc.any(missing).as_py():
                yield _MISSING, table.filter(missing), None, None
        else:
            assert self.column is not None and self.length is not None
            seconds = epoch_seconds(table.column(self.column))
            if self.now is None:
                known = np.isfinite(seconds)
            else:
                known, unusable = usable_times(seconds, self.now)
                if bad is not None:
                    bad.append(unusable)
            if known.any():
                rows = np.flatnonzero(known)
                keys = Calendar(self.length, self.tz).keys(seconds[known])
                for key, part in _groups(table.take(pa.array(rows)), keys):
                    at = seconds[rows[keys == key]]
                    yield ("time", int(key)), part, float(at.min()), float(at.max())
            if not known.all():
                yield _MISSING, table.filter(pa.array(~known)), None, None

    def profiles(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The partial window profiles of one partition, as (key, value) pickles."""
        found: dict[Any, Any] = {}
        gathered: list[pa.RecordBatch] = []
        rows = 0
        records: list[tuple[Any, pa.Table]] = []
        bad: list[int] = []

        def fold() -> None:
            table = to_table(pa.Table.from_batches(gathered))  # blank text as missing
            if self.pii:
                table = protect(table, dict(self.pii), self.key)
            if _EMPTY not in found:
                found[_EMPTY] = (self._profile(table.slice(0, 0)), None, None, True)
            for key, part, lo, hi in self.split(table, bad):
                if part.num_rows == 0:
                    continue
                value = (self._profile(part), lo, hi, False)
                found[key] = _combine_values(found[key], value) if key in found else value
                if self.records:
                    records.append((key, _records(part, self.schema)))

        for batch in batches:
            gathered.append(batch)
            rows += batch.num_rows
            if rows >= GATHER_ROWS:
                fold()
                gathered, rows = [], 0
        if gathered:
            fold()
        if records or sum(bad):  # this partition's alone: a key no other partition has
            found[(_EXTRA, uuid.uuid4().hex)] = {"records": records, "bad": sum(bad)}
        if found:
            yield pa.RecordBatch.from_pydict(
                {"key": [pickle.dumps(k) for k in found],
                 "value": [pickle.dumps(v) for v in found.values()]}, schema=_OUT)

    def _profile(self, table: pa.Table) -> Profile:
        drop = [c for c in self.drop if c in table.column_names]
        return profile(table.drop_columns(drop) if drop else table, self.schema)


def _records(part: pa.Table, schema: Schema) -> pa.Table:
    """The prediction records the server keeps for late labels (as it keeps those of the
    rows posted to it: :meth:`watchkeeper.online.monitor.OnlineMonitor.ingest`) of the rows
    of ``part`` that have an id: id, row codes packed, label code."""
    import pyarrow.compute as pc

    task = schema.task
    assert task is not None and task.id is not None
    if task.id not in part.column_names:
        return pa.table({"id": pa.array([], pa.null()), "codes": pa.array([], pa.binary()),
                         "label": pa.array([], pa.float64())})
    part = part.filter(pc.is_valid(part.column(task.id)))
    codes = record_codes(part, schema)
    return pa.table({"id": part.column(task.id),
                     "codes": pa.array(pack_codes(codes, task, segment_labels(schema)),
                                       pa.binary()),
                     "label": pa.array(codes.label.astype(float), from_pandas=True)})


def records_of(extras: list[dict[str, Any]], windows: list[Any]) -> pa.Table | None:
    """The prediction records of the partitions' ``extras`` as one table, each with the
    index of its window's key in ``windows`` (column ``window``); None without any."""
    at = {key: i for i, key in enumerate(windows)}
    parts = [part.add_column(0, "window", pa.array(np.full(part.num_rows, at[key]), pa.int32()))
             for extra in extras for key, part in extra["records"] if part.num_rows]
    if not parts:
        return None
    return pa.concat_tables(parts, promote_options="default")


def _groups(table: pa.Table, keys: np.ndarray) -> Iterator[tuple[Any, pa.Table]]:
    """The rows of ``table`` per distinct value of ``keys`` (one per row), in row order."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    for part in np.split(order, cuts):
        if part.size:
            yield keys[part[0]], table.take(pa.array(part))


def _combine_values(a: tuple[Profile, float | None, float | None, bool],
                    b: tuple[Profile, float | None, float | None, bool]
                    ) -> tuple[Profile, float | None, float | None, bool]:
    if a[3]:  # the zero-row profile: any partition's will do
        return a
    lo = min((x for x in (a[1], b[1]) if x is not None), default=None)
    hi = max((x for x in (a[2], b[2]) if x is not None), default=None)
    return a[0].merge(b[0]), lo, hi, False


def _combine(a: bytes, b: bytes) -> bytes:
    """Merge two pickled partial window profiles (the reduce of ``reduceByKey``)."""
    return pickle.dumps(_combine_values(pickle.loads(a), pickle.loads(b)))


def check(
    df: DataFrame,
    suite: Suite,
    *,
    window_rows: int | None = None,
    window: str | None = None,
    window_by: str | None = None,
    labels: Any = None,
    tz: str | None = None,
) -> CheckResult:
    """Check a Spark DataFrame against ``suite``, window by window, as
    :meth:`Suite.check <watchkeeper.suite.core.Suite.check>` checks a table in memory;
    returns the same :class:`~watchkeeper.run.check.CheckResult`.

    ``labels`` (a Spark DataFrame, or a path Spark reads, with the id and target columns)
    are joined by id on Spark before profiling; for an id labelled twice, the label that
    comes last in the labels' row order counts. The result keeps no prediction ids
    (they would be rows on the driver), so later labels cannot be added to it with
    ``add_labels``: check again with all the labels.

    ``window_rows`` cuts windows in the DataFrame's order, which Spark keeps for a file
    scan; the DataFrame is read twice (once to count each partition's rows).
    """
    from pyspark.sql import DataFrame as SparkFrame

    if not isinstance(suite, Suite):
        raise SuiteError("suite", f"expected a Suite (watchkeeper.init() or Suite.load()), "
                                  f"got a {type(suite).__name__}")
    if not isinstance(df, SparkFrame):
        raise DataError(f"data: expected a Spark DataFrame, got a {type(df).__name__}; "
                        "for data in memory use Suite.check()")
    if sum(x is not None for x in (window_rows, window, window_by)) > 1:
        raise SuiteError("window", "give one of window_rows=, window= or window_by=, "
                                   "not several")
    if tz is not None and window is None:
        raise SuiteError("tz", "a time zone applies to time windows only; give window= "
                               "too, or drop tz=")
    if window_rows is not None and (isinstance(window_rows, bool) or not isinstance(
            window_rows, int) or window_rows < 1):
        raise DataError(f"window_rows: must be a positive integer, got {window_rows!r}")
    for name in df.columns:
        if name.startswith("__wk_"):
            raise DataError(f"data: column {name!r} uses the prefix __wk_, which the Spark "
                            "engine keeps for its own columns; rename it")
    schema = suite.schema
    result = CheckResult(suite=suite.path or suite.name, evaluator=suite)
    drop: list[str] = [KEY]
    if window_by is not None:
        _need_column(df, window_by, "window_by")
        if window_by not in schema.columns:
            drop.append(window_by)
        plan = _Plan(schema, "by", window_by, drop=tuple(drop))
    elif window is not None:
        length = WindowLength.parse(window)
        stamps = schema.by_role(Role.TIMESTAMP)
        if not stamps:
            raise SuiteError("window", "time windows need a timestamp column; re-run init() "
                                       "with timestamp=COLUMN, or use window_rows=")
        Calendar(length, tz)  # an unknown time zone is refused here, not on an executor
        _need_column(df, stamps[0].name, "timestamp column")
        plan = _Plan(schema, "time", stamps[0].name, length, tz, tuple(drop))
    elif window_rows is not None:
        plan = _Plan(schema, "rows", drop=tuple(drop))
    else:
        plan = _Plan(schema, "all", drop=tuple(drop))
    total = 0
    if plan.mode == "rows":
        df, total = _with_row_windows(df, window_rows)
    elif plan.mode == "all":
        total = df.count()  # from the files' metadata where Spark can
    if plan.mode in ("rows", "all") and total == 0:
        raise DataError("no rows to check")
    if labels is not None:
        df, result.unmatched_labels = _join_labels(df, labels, suite)
    merged = _merged(df, plan)
    empty = merged.pop(_EMPTY, None)
    if not merged:
        raise DataError("no rows to check")
    if plan.mode in ("rows", "all"):
        size = window_rows or total
        for k in range(-(-total // size)):
            first, last = k * size, min((k + 1) * size, total)
            _add(result, f"rows {first}-{max(last - 1, first)}", merged[k][0])
    elif plan.mode == "by":
        values = sorted(k[1] for k in merged if k != _MISSING)
        for v in values:
            _add(result, f"{window_by}={v}", merged[("value", v)][0])
        if _MISSING in merged:
            _add(result, f"{window_by} missing", merged[_MISSING][0])
    else:
        assert plan.length is not None and empty is not None
        _time_windows(result, plan, merged, empty[0])
    task = schema.task
    if task is not None and task.id is not None and task.id in df.columns:
        result.label_join = _NoIds(task)  # add_labels says why it cannot
    suite.evaluate_sequence(result)
    return result


def _need_column(df: DataFrame, column: str, what: str) -> None:
    if column not in df.columns:
        raise DataError(f"{what}: column {column!r} is not in the data"
                        f"{did_you_mean(column, df.columns)}")


def _add(result: CheckResult, label: str, p: Profile) -> None:
    result.windows.append(WindowResult(label, p.rows, [], p, p.start, p.end))
    result.refresh(len(result.windows) - 1)


def _time_windows(result: CheckResult, plan: _Plan, merged: dict[Any, Any],
                  empty: Profile) -> None:
    """Every calendar window from the first timestamp's to the last's, empty ones too
    (as :func:`watchkeeper.run.check.time_windows` cuts them), then the rows without one."""
    assert plan.length is not None
    calendar = Calendar(plan.length, plan.tz)
    keys = sorted(k[1] for k in merged if k != _MISSING)
    if keys:
        first_key, last_key = keys[0], keys[-1]
        if last_key - first_key > 100_000:
            raise DataError(f"window: {plan.length} over this data's time span makes "
                            f"{last_key - first_key + 1} windows; choose a longer window")
        lo, hi = merged[("time", first_key)][1], merged[("time", last_key)][2]
        for key in range(first_key, last_key + 1):
            begin, finish = calendar.start(key), calendar.start(key + 1)
            found = merged.get(("time", key))
            p = found[0] if found is not None else pickle.loads(pickle.dumps(empty))
            p.start = from_epoch(max(begin, lo))
            p.end = from_epoch(min(finish, hi) if key == last_key else finish)
            _add(result, calendar.label(begin, finish), p)
    if _MISSING in merged:
        _add(result, "missing timestamp", merged[_MISSING][0])


def _merged(df: DataFrame, plan: _Plan) -> dict[Any, tuple[Profile, float | None,
                                                         float | None, bool]]:
    """Window key → its merged profile, (first, last timestamp), merged on the executors."""
    profiles: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]] = plan.profiles
    partials = df.mapInArrow(profiles, "key binary, value binary")
    pairs = partials.rdd.map(lambda row: (bytes(row[0]), bytes(row[1])))
    partitions = max(1, min(pairs.getNumPartitions(), 64))
    reduced = pairs.reduceByKey(_combine, numPartitions=partitions).collect()
    return {pickle.loads(k): pickle.loads(v) for k, v in reduced}


def _with_row_windows(df: DataFrame, window_rows: int | None) -> tuple[DataFrame, int]:
    """``df`` with the row window of each row (its position in partition order, divided
    by ``window_rows``) in column :data:`KEY`; and the number of rows."""
    from pyspark.sql import functions as F

    offsets, total = partition_offsets(df)
    if total == 0:
        return df, 0
    start = F.element_at(F.array(*[F.lit(int(o)) for o in offsets]),
                         F.spark_partition_id() + 1)
    within = F.monotonically_increasing_id().bitwiseAND((1 << _ROW_BITS) - 1)
    size = window_rows or total
    return df.withColumn(KEY, F.floor((start + within) / F.lit(size)).cast("long")), total


def partition_offsets(df: DataFrame) -> tuple[list[int], int]:
    """The input position of each partition's first row (partitions in order, rows in
    order within each: the order of a file scan), and the number of rows."""
    from pyspark.sql import functions as F

    counted = (df.select(F.spark_partition_id().alias("p")).groupBy("p").count().collect())
    sizes = dict((int(r["p"]), int(r["count"])) for r in counted)
    if not sizes:
        return [], 0
    offsets = np.concatenate([[0], np.cumsum([sizes.get(i, 0)
                                               for i in range(max(sizes) + 1)])])[:-1]
    return [int(o) for o in offsets], int(sum(sizes.values()))


def _join_labels(df: DataFrame, labels: Any, suite: Suite) -> tuple[DataFrame, int]:
    """``df`` with its target column from ``labels`` by id, joined on Spark (as
    :func:`watchkeeper.run.label_join.join_labels` joins in memory: the last label of an
    id counts, a missing label keeps the row's own target); and how many labelled ids
    matched no row."""
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import functions as F

    task = assert_task(suite.schema.task)
    if task.id is None or task.target is None:
        raise DataError("labels: joining labels needs id and target columns in the suite's "
                        "task; re-run init() with id= and target=")
    if not isinstance(labels, SparkFrame):
        labels = read(df.sparkSession, labels, "labels")
    missing = [c for c in (task.id, task.target) if c not in labels.columns]
    if missing:
        raise DataError(f"labels: need columns {task.id!r} and {task.target!r}; "
                        f"missing {', '.join(map(repr, missing))}"
                        f"{did_you_mean(missing[0], labels.columns)}")
    _need_column(df, task.id, "labels: the data's id")
    by_id = (labels.select(F.col(task.id).alias(SEQ + "id"), F.col(task.target).alias(LABEL))
             .where(F.col(SEQ + "id").isNotNull())
             .withColumn(SEQ, F.monotonically_increasing_id())
             .groupBy(SEQ + "id").agg(F.max_by(LABEL, SEQ).alias(LABEL)))
    ids = df.select(F.col(task.id).alias(SEQ + "id")).distinct()
    unmatched = by_id.join(ids, SEQ + "id", "left_anti").count()
    joined = df.join(by_id, df[task.id] == by_id[SEQ + "id"], "left")
    if task.target in df.columns:
        target = F.coalesce(F.col(LABEL), df[task.target])
        columns = [target.alias(c) if c == task.target else df[c] for c in df.columns]
    else:
        columns = [df[c] for c in df.columns] + [F.col(LABEL).alias(task.target)]
    return joined.select(*columns), int(unmatched)


def read(spark: Any, path: Any, param: str = "data") -> DataFrame:
    """A Parquet or CSV file or directory (Spark's own layout, say ``part-*.parquet``), or
    a Delta table directory (its live files, from its ``_delta_log``: :mod:`watchkeeper.io.
    delta`), as a Spark DataFrame; the format from the file names' suffix. CSV files need a header
    row; their types are inferred."""
    from pathlib import Path

    where = Path(path)
    if not where.exists():
        raise DataError(f"{param}: {path}: no such file or directory")
    if where.is_dir() and is_delta(where):  # the live files of a Delta table, alone
        files = live_files(where)
        if not files:
            raise DataError(f"{param}: {path}: the Delta table has no data files at its "
                            "latest version")
        return spark.read.option("basePath", str(where)).parquet(*map(str, files))
    names = [where] if where.is_file() else [p for p in where.rglob("*")
                                             if p.is_file() and not p.name.startswith(("_", "."))]
    suffixes = {p.suffix.lower() for p in names}
    if suffixes and suffixes <= {".parquet", ".pq"}:
        return spark.read.parquet(str(where))
    if suffixes and suffixes <= {".csv"}:
        return _read_csv(spark, where, sorted(p for p in names if p.suffix.lower() == ".csv"))
    found = ", ".join(sorted(s or "(none)" for s in suffixes)) or "no files"
    raise DataError(f"{param}: {path}: the Spark engine reads Parquet (.parquet, .pq) or CSV "
                    f"(.csv) files, one format per directory; found {found}")


def _read_csv(spark: Any, where: Any, files: list[Any]) -> DataFrame:
    """CSV files as the local reader reads them (:func:`watchkeeper.io.delimited.csv_blocks`):
    the layout (delimiter, lines above the header, stripped names) guessed from the first
    file's first lines and its column types from its first block of rows, on this machine;
    Spark reads the lines, and each split parses its own with Arrow's CSV parser, the same
    NA spellings and those types, so a check on Spark equals the local one. Every file has
    the first one's layout. A value quoted over several lines is not read (Spark splits
    the files at line ends)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    plan = csv_parse(files[0])
    lines = spark.read.text([str(f) for f in files]).select(
        "value", "_metadata.file_path", "_metadata.file_block_start")
    schema = from_arrow_schema(plan.types)

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        path, seen = None, 0
        for batch in batches:
            values = batch.column(0).to_pylist()
            paths = batch.column(1).to_pylist()
            starts = batch.column(2).to_pylist()
            keep: list[str] = []
            for value, file, start in zip(values, paths, starts, strict=True):
                if file != path:  # a split's lines come in file order, a file at a time
                    path, seen = file, 0
                seen += 1
                if start == 0 and seen <= plan.skip:
                    continue  # the lines above the data, at the start of each file
                keep.append(value)
            yield from plan.parse(keep).to_batches()

    return lines.mapInArrow(parse, schema)
