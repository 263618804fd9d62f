"""``init`` on Spark: the reference read by Spark in the two passes of a streamed init.

Pass 1 scans each partition where it is, as a slice of the input that starts at the
partition's first row (:func:`watchkeeper.suite.streamed.scan_slice`: the sampling keys of
its rows, a quantile sketch per numeric column, exact category counts), and the slices'
scans merge in a tree (:meth:`~watchkeeper.suite.streamed.Scan.merge`), so the driver holds
one sample and one sketch per column, never the rows. The sample is the one a local
streamed init of the same rows in the same order keeps (the keys depend on a row's
position, not on who reads it); counts are exact; the merged sketches' quantiles are
within the same rank bound (:meth:`QuantileSketch.rank_error
<watchkeeper.stats.quantiles.QuantileSketch.rank_error>`: at most ``levels / k`` of the
rows, 0.29 % at 10 million), whatever the merge order. Kinds, roles, models and
calibration come from the sample on the driver, as locally; pass 2 profiles every row on
Spark with the suite's plan (as :func:`watchkeeper.spark.check` profiles a window) for
the exact reference profile.

A first job counts each partition's rows (their input positions); pass 1 and pass 2 read
the data once each.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from watchkeeper.baseline.schema import Schema
from watchkeeper.errors import DataError
from watchkeeper.profiles.core import Profile
from watchkeeper.spark.engine import _EMPTY, KEY, _merged, _Plan, partition_offsets
from watchkeeper.suite import streamed
from watchkeeper.suite.build import init as init_local
from watchkeeper.suite.core import Suite

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: Rows a partition gathers from Spark's Arrow batches before it tallies them.
GATHER_ROWS = 131_072


class SparkReference(streamed.TwoPass):
    """A Spark DataFrame as the reference of ``init`` (see the module)."""

    def __init__(self, df: DataFrame, *, source: str | None = None,
                 sample_rows: int | None = None) -> None:
        from pyspark.sql import DataFrame as SparkFrame

        if not isinstance(df, SparkFrame):
            raise DataError(f"reference: expected a Spark DataFrame, got a "
                            f"{type(df).__name__}; for data in memory use watchkeeper.init()")
        for name in df.columns:
            if name.startswith("__wk_"):
                raise DataError(f"reference: column {name!r} uses the prefix __wk_, which "
                                "the Spark engine keeps for its own columns; rename it")
        if sample_rows is not None and (isinstance(sample_rows, bool) or not isinstance(
                sample_rows, int) or sample_rows < 1):
            raise DataError(f"sample_rows: must be a positive integer, got {sample_rows!r}")
        self.df, self.source, self.sample_rows = df, source, sample_rows

    def scan(self, *, seed: int, progress: Callable[[int], None] | None = None
             ) -> streamed.Scan:
        offsets, total = partition_offsets(self.df)
        if total == 0:
            raise DataError("the reference data has no rows")
        part = _Slices(offsets, seed, self.sample_rows or streamed.SAMPLE_ROWS)
        scans = self.df.mapInArrow(part, "value binary").rdd.map(lambda row: bytes(row[0]))
        merged = pickle.loads(scans.treeReduce(_merge, depth=2))
        return streamed.finish(merged)

    def profile(self, schema: Schema) -> Profile:
        merged = _merged(self.df, _Plan(schema, "all", drop=(KEY,)))
        merged.pop(_EMPTY, None)
        return merged[0][0]


class _Slices:
    """The pass-1 function of a partition (shipped to the executors)."""

    def __init__(self, offsets: list[int], seed: int, sample_rows: int) -> None:
        self.offsets, self.seed, self.sample_rows = offsets, seed, sample_rows

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        assert context is not None
        at = context.partitionId()
        if at >= len(self.offsets):  # a partition past the last counted one had no rows
            if any(batch.num_rows for batch in batches):
                raise DataError("reference: Spark read rows that the count of each "
                                "partition's rows did not see; is the data being written?")
            return
        found = streamed.scan_slice(_gathered(batches), seed=self.seed,
                                    offset=self.offsets[at], sample_rows=self.sample_rows)
        if found.rows:
            yield pa.RecordBatch.from_pydict({"value": [pickle.dumps(found)]},
                                             schema=pa.schema([("value", pa.binary())]))


def _gathered(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.Table]:
    gathered: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        gathered.append(batch)
        rows += batch.num_rows
        if rows >= GATHER_ROWS:
            yield pa.Table.from_batches(gathered)
            gathered, rows = [], 0
    if gathered:
        yield pa.Table.from_batches(gathered)


def _merge(a: bytes, b: bytes) -> bytes:
    return pickle.dumps(pickle.loads(a).merge(pickle.loads(b)))


def init(df: DataFrame, *, sample_rows: int | None = None, source: str | None = None,
         **options: Any) -> Suite:
    """:func:`watchkeeper.init` of a Spark DataFrame: bins from quantile sketches merged
    across partitions, exact categories and reference profile, models and calibration on a
    seeded sample of ``sample_rows`` rows (default
    :data:`~watchkeeper.suite.streamed.SAMPLE_ROWS`) collected on the driver. ``options``
    are :func:`watchkeeper.init`'s (``target=``, ``timestamp=``, ``budget=``...); the suite
    equals a local streamed init of the same rows in the same order, bins within the
    sketches' rank error. See docs/spark.md."""
    for key in ("stream", "memory", "jobs", "layout", "notes"):
        if key in options:
            raise DataError(f"{key}: applies to a local init; size Spark with its own "
                            "settings (spark.executor.memory...)")
    return init_local(SparkReference(df, source=source, sample_rows=sample_rows), **options)
