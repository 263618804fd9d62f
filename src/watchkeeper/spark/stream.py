"""A Structured Streaming sink: each micro-batch profiled on Spark into the store's windows.

``df.writeStream.foreachBatch(StoreSink(...))`` profiles every micro-batch as
:func:`watchkeeper.spark.check` profiles a DataFrame (per partition, merged on the
executors), cut into the time windows of the suite's timestamp column, merges each into
the model's stored window of that time, judges it with the suite, and saves the windows
with their metrics and findings. Exactly once per micro-batch: the windows and the batch
id are saved in one transaction (as the model's watermark, batch id + 1), and a batch
whose id is below the watermark, one Spark runs again after a failure or a restart from
its checkpoint, is skipped.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from watchkeeper.baseline.schema import Role
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.jsonable import RESULT_DIGITS, plain
from watchkeeper.io.times import from_epoch
from watchkeeper.profiles.core import Profile
from watchkeeper.run.check import Calendar, WindowLength
from watchkeeper.spark.engine import _EMPTY, _MISSING, KEY, _merged, _Plan
from watchkeeper.store import Store, WindowRecord
from watchkeeper.suite.core import Suite

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class StoreSink:
    """A ``foreachBatch`` function that writes window profiles into a watchkeeper store.

    ``store``: a :class:`~watchkeeper.store.Store` or its URL (SQLite file, PostgreSQL);
    ``model``: the model whose windows these are, fed by this sink alone (its watermark
    records the micro-batches written; a model a server folds HTTP events into keeps its
    own); ``window``: the length of a window (``1h``, ``1d``...) on the suite's timestamp
    column. Rows without a timestamp count in the window of the time their micro-batch
    is written, as the server counts rows that come without one.

    Example (a Kafka topic of JSON predictions; see docs/spark.md)::

        sink = StoreSink("postgresql://wk@db/wk", "churn", wk.load("churn.yaml"), window="1h")
        (events.writeStream.foreachBatch(sink)
               .option("checkpointLocation", "/chk/churn").start())
    """

    def __init__(self, store: Store | str, model: str, suite: Suite, *, window: str = "1h",
                 suite_version: int | None = None) -> None:
        if not isinstance(suite, Suite):
            raise SuiteError("suite", f"expected a Suite (watchkeeper.init() or "
                                      f"Suite.load()), got a {type(suite).__name__}")
        stamps = suite.schema.by_role(Role.TIMESTAMP)
        if not stamps:
            raise SuiteError("window", "the stream's windows need a timestamp column; "
                                       "re-run init() with timestamp=COLUMN")
        self.length = WindowLength.parse(window)
        if self.length.fixed is None:
            raise DataError(f"window: a stream's windows have a fixed length, got {window!r}")
        self.store = store if isinstance(store, Store) else Store(store)
        self.model, self.suite, self.suite_version = model, suite, suite_version
        self.plan = _Plan(suite.schema, "time", stamps[0].name, self.length, None, (KEY,))

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        """Write micro-batch ``batch_id`` (Spark calls this once per micro-batch, and again
        with the same id when it replays one)."""
        if batch_id < self.store.watermark(self.model):
            return  # written before a failure or restart: Spark replays it, we do not
        merged = _merged(df, self.plan)
        merged.pop(_EMPTY, None)
        calendar = Calendar(self.length, None)
        if _MISSING in merged:  # no timestamp: the window of now
            now = int(calendar.keys(np.array([time.time()]))[0])
            p = merged.pop(_MISSING)[0]
            key = ("time", now)
            merged[key] = (p.merge(merged[key][0]) if key in merged else p, None, None, False)
        step = self.length.fixed
        assert step is not None
        records = []
        for (_, key), (p, _lo, _hi, _) in sorted(merged.items()):
            start = from_epoch(calendar.start(key))
            stored = self.store.load_windows(self.model, since=start,
                                             until=start + timedelta(microseconds=1))
            if stored:
                p = Profile.from_dict(stored[0].profile).merge(p)
            p.start, p.end = start, start + step
            findings, metrics = self.suite.assess(p)
            for f in findings:
                f.window = start.isoformat()
            # findings first: a crash before the windows are saved replays this batch,
            # which replaces them with the same
            self.store.save_findings(self.model, start, [f.to_dict() for f in findings])
            records.append(WindowRecord(self.model, start, start + step, self.suite_version,
                                        p.rows, "open", p.to_dict(),
                                        plain(metrics, digits=RESULT_DIGITS)))
        self.store.save_windows(self.model, records, watermark=batch_id + 1)

    def windows(self) -> list[Any]:
        """The model's stored windows, oldest first (records with their profiles)."""
        return self.store.load_windows(self.model)
