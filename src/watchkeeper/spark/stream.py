"""Structured Streaming sinks: each micro-batch profiled on Spark into the store.

:class:`ServerSink` feeds a running ``watchkeeper serve``: each micro-batch's window
profiles are logged in the store's event log, once per idempotency key
``spark:<query id>:<batch id>``, and the server's fold merges them into its windows, judges,
alerts and shows them as the events it ingests over HTTP.

:class:`StoreSink` is the sink of a model no server folds: it writes the windows itself.

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
from watchkeeper.io.pii import key_check, key_from_env
from watchkeeper.io.times import from_epoch
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.shipped import profiled_batch
from watchkeeper.run.check import Calendar, WindowLength
from watchkeeper.spark.engine import _EMPTY, _EXTRA, _MISSING, KEY, _merged, _Plan, records_of
from watchkeeper.store import Store, WindowRecord
from watchkeeper.suite.core import Suite
from watchkeeper.wire import TS, to_ipc

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


class ServerSink:
    """A ``foreachBatch`` function that feeds a running ``watchkeeper serve`` through its
    store: each micro-batch is profiled on Spark (per partition, merged on the executors)
    with the suite version the server has in service for ``model``, cut into windows of
    the server's length (``window``: its ``serve --window``) on the ``_ts`` column (or
    ``time``: another timestamp column), and logged in the store's event log as one batch
    of window profiles (:mod:`watchkeeper.profiles.shipped`) with the idempotency key
    ``spark:<query id>:<batch id>``. The server folds it like the events posted over HTTP
    (windows, findings, alerts, incidents, the dashboard); a micro-batch Spark runs again
    (after a failure, or a restart from the checkpoint) has the same key and is not
    logged twice. Rows without a time count in the window of the time their micro-batch
    is logged, as rows posted without one.

    Rows are profiled, never sent. When the suite joins late labels (its task has an id
    column) and the stream has the id column, the batch also carries the prediction
    records of the rows with an id (id, packed row codes, label code: made on the
    executors, gathered on the driver), which the fold keeps as it keeps those of rows
    posted over HTTP: labels posted later join them alike. The suite's personal-data
    columns (``pii``) are hashed on the executors with ``pii_key`` (default: the
    ``WATCHKEEPER_PII_KEY`` of the environment), or dropped without a key, before
    profiling, as the server does: raw values never reach the store, and the fold refuses
    a batch hashed with another key than its own (a digest of the key travels, never the
    key). ``query``:
    the stream's name in the keys (default: the query's id, which a restart from the same
    checkpoint keeps).

    Example (see docs/spark.md)::

        sink = ServerSink("postgresql://wk@db/wk", "churn", window="5m")
        events.writeStream.foreachBatch(sink).option("checkpointLocation", "/chk").start()
    """

    def __init__(self, store: Store | str, model: str, *, window: str = "5m",
                 time: str | None = None, query: str | None = None,
                 pii_key: str | bytes | None = None) -> None:
        self.length = WindowLength.parse(window)
        if self.length.fixed is None:
            raise DataError(f"window: the server's windows have a fixed length, got {window!r}")
        self.store = store if isinstance(store, Store) else Store(store)
        self.model, self.time, self.query = model, time, query
        key = key_from_env() if pii_key is None else pii_key
        self.pii_key = key.encode("utf-8") if isinstance(key, str) else key
        self._suites: dict[int, Suite] = {}

    def suite(self) -> tuple[int, Suite]:
        """The version in service for the model, and its suite."""
        from watchkeeper.suite import file as suitefile

        active = self.store.active_suite(self.model)
        if active is None:
            raise DataError(f"model {self.model!r}: no suite deployed in this store; deploy "
                            "one (watchkeeper deploy) before starting the stream")
        if active.version not in self._suites:
            suite = Suite.from_dict(suitefile.parse(active.text, f"{self.model} "
                                                                  f"v{active.version}"))
            self._suites[active.version] = suite
        return active.version, self._suites[active.version]

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        """Log micro-batch ``batch_id`` (Spark calls this once per micro-batch, and again
        with the same id when it replays one)."""
        key = f"spark:{self.query or _query_id(df)}:{batch_id}"
        version, suite = self.suite()
        column = self.time or (TS if TS in df.columns else None)
        if column is not None and column not in df.columns:
            raise DataError(f"time: column {column!r} is not in the stream's columns")
        task = suite.schema.task
        records = task is not None and task.id is not None and task.id in df.columns
        pii = tuple(sorted(suite.schema.pii.items()))  # hashed or dropped as the server does
        if column is None:
            plan = _Plan(suite.schema, "all", drop=(KEY,), records=records, pii=pii,
                         key=self.pii_key)
        else:  # a time the server could not window is as none (counted), as over HTTP
            plan = _Plan(suite.schema, "time", column, self.length, None, (KEY,),
                         now=time.time(), records=records, pii=pii, key=self.pii_key)
        merged = _merged(df, plan)
        merged.pop(_EMPTY, None)
        extras: list[Any] = [merged.pop(k) for k in [k for k in merged if _kind(k) == _EXTRA]]
        step = self.length.fixed
        assert step is not None
        calendar = Calendar(self.length, None)
        keys = sorted(merged, key=lambda k: calendar.start(k[1]) if _kind(k) == "time" else -1.0)
        windows = [(calendar.start(k[1]) if _kind(k) == "time" else None, merged[k][0])
                   for k in keys]
        rows = sum(p.rows for _, p in windows)
        self.store.append_batch(self.model, to_ipc(profiled_batch(
            version, step.total_seconds(), windows, records=records_of(extras, keys),
            bad_times=sum(e["bad"] for e in extras), pii=bool(pii),
            pii_key=key_check(self.pii_key))), rows, "events", key=key)


def _kind(key: Any) -> Any:
    """What a merged key is: "time" (a time window), "extra"... (0: all the rows)."""
    return key[0] if isinstance(key, tuple) else key


def _query_id(df: DataFrame) -> str:
    """The id of the streaming query running this micro-batch (kept across restarts from
    its checkpoint)."""
    found = df.sparkSession.sparkContext.getLocalProperty("sql.streaming.queryId")
    if not found:
        raise DataError("query: the streaming query's id cannot be read here; give "
                        "ServerSink(..., query=NAME), a name unique to the stream")
    return str(found)
