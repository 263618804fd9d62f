"""Where the SDK's tables go: a watchkeeper server, an in-process monitor, or memory.

A sink has three methods, called from the client's background thread only:
``send_events(table)``, ``send_labels(table)`` and ``close()``. Each table carries its batch
id in its schema metadata (:func:`batch_id`), the same however often it is sent. A sink may
raise: :class:`SinkUnavailable` (or an ``OSError``) means "not now", and the client keeps
the batch and sends it again later with backoff; anything else means "never", and the client
counts the rows as rejected. A sink may also have ``tick()``, called once per flush cycle even
when nothing was logged (the embedded sink closes due windows there).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import ssl
import threading
import time
import urllib.parse
import uuid
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pyarrow as pa

from watchkeeper.errors import SinkError, SinkUnavailable
from watchkeeper.wire import ARROW_STREAM, to_ipc

if TYPE_CHECKING:
    from watchkeeper.online.monitor import OnlineMonitor
    from watchkeeper.store import Store
    from watchkeeper.suite.core import Suite

__all__ = ["ARROW_STREAM", "BATCH_ID", "EmbeddedSink", "MemorySink", "RemoteSink", "Sink",
           "batch_id", "with_batch_id"]

#: The longest Retry-After honoured (seconds): a sink never sleeps longer on one batch.
MAX_RETRY_AFTER = 30.0
#: Schema metadata key of a table's batch id (sent as the ``Idempotency-Key`` header).
BATCH_ID = b"watchkeeper.batch_id"


def with_batch_id(table: pa.Table, batch: str) -> pa.Table:
    """The table with ``batch`` as its batch id (kept in its schema metadata).

    >>> batch_id(with_batch_id(pa.table({"x": [1]}), "b-1"))
    'b-1'
    """
    metadata = dict(table.schema.metadata or {})
    metadata[BATCH_ID] = batch.encode()
    return table.replace_schema_metadata(metadata)


def batch_id(table: pa.Table) -> str | None:
    """The batch id a client gave the table, if any."""
    value = (table.schema.metadata or {}).get(BATCH_ID)
    return value.decode("utf-8", "replace") if value else None


@runtime_checkable
class Sink(Protocol):
    """Receives the client's Arrow tables, from its background thread."""

    def send_events(self, table: pa.Table) -> None: ...

    def send_labels(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Keeps the tables it gets, for tests and notebooks; the oldest go beyond ``max_rows``.

    >>> sink = MemorySink()
    >>> sink.send_events(pa.table({"x": [1.0]}))
    >>> sink.events_table().num_rows, sink.rows, sink.evicted_rows
    (1, 1, 0)
    """

    def __init__(self, max_rows: int = 1_000_000) -> None:
        self.max_rows = max_rows
        self.events: deque[pa.Table] = deque()
        self.labels: deque[pa.Table] = deque()
        self.rows = 0  # rows received (events and labels)
        self.evicted_rows = 0
        self.closed = False
        self._held = 0
        self._lock = threading.Lock()

    def _keep(self, where: deque[pa.Table], table: pa.Table) -> None:
        with self._lock:
            where.append(table)
            self.rows += table.num_rows
            self._held += table.num_rows
            while self._held > self.max_rows and (self.events or self.labels):
                oldest = self.events if self.events else self.labels
                gone = oldest.popleft()
                self._held -= gone.num_rows
                self.evicted_rows += gone.num_rows

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def send_events(self, table: pa.Table) -> None:
        self._keep(self.events, table)

    def send_labels(self, table: pa.Table) -> None:
        self._keep(self.labels, table)

    def close(self) -> None:
        self.closed = True

    def events_table(self) -> pa.Table:
        """Every kept event table as one (types unified across batches)."""
        return _concat(list(self.events))

    def labels_table(self) -> pa.Table:
        """Every kept label table as one."""
        return _concat(list(self.labels))

    def __repr__(self) -> str:
        return f"MemorySink(rows={self.rows})"


def _concat(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


class RemoteSink:
    """Posts each table to a watchkeeper server as an Arrow IPC stream.

    ``POST {url}/v1/models/{model}/events`` (and ``/labels``) with
    ``Content-Type: application/vnd.apache.arrow.stream`` and, when a token is given,
    ``Authorization: Bearer <token>``; standard library only, one keep-alive connection.
    Each request carries the table's batch id as ``Idempotency-Key`` (the same on every
    retry, here and by the client, so a server that keeps keys stores a batch once).
    Connection errors, timeouts, 408, 429 and 5xx are retried ``retries`` times with
    exponential backoff (``backoff`` seconds, doubled each time, with jitter), waiting at
    least what the server asks for in ``Retry-After`` (up to 30 s: a busy server answers 503
    with it); then :class:`SinkUnavailable` is raised and the client keeps the batch for a
    later try. Other answers (401, 403, 413, 422, …) raise :class:`SinkError` at once (the
    client counts the rows as rejected). ``compression="zstd"`` or ``"lz4"`` compresses the
    stream's buffers (Arrow IPC compression, read transparently by pyarrow).
    """

    def __init__(
        self,
        url: str,
        model: str,
        token: str | None = None,
        timeout: float = 5.0,
        *,
        retries: int = 3,
        backoff: float = 0.25,
        compression: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port][/path], got {url!r}")
        if not model or not isinstance(model, str):
            raise ValueError("model must be a non-empty string")
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.compression = compression
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        base = parts.path.rstrip("/") + f"/v1/models/{urllib.parse.quote(model, safe='')}"
        self._paths = {"events": base + "/events", "labels": base + "/labels"}
        self._headers = {"Content-Type": ARROW_STREAM, "Accept": "application/json",
                         "User-Agent": "watchkeeper-sdk"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self.requests = 0  # HTTP requests made (retries included)
        self.accepted = 0  # rows the server said it accepted
        self.last_status: int | None = None
        #: rows the client has dropped so far, sent with each batch so the server can show
        #: them in /metrics (per source: this sink's random id)
        self.dropped = 0
        self.source = uuid.uuid4().hex[:12]
        self._reset()

    def _reset(self) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._used_at = 0.0
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def _after_fork_in_child(self) -> None:
        # the parent's socket stays the parent's: forget it without closing it
        self._reset()

    def __repr__(self) -> str:
        return f"RemoteSink({self.url!r}, model={self.model!r})"

    def send_events(self, table: pa.Table) -> None:
        self._post("events", table)

    def send_labels(self, table: pa.Table) -> None:
        self._post("labels", table)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            self._disconnect()

    # -- HTTP ------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        # an idle keep-alive connection may have been closed by the server: start afresh
        if self._conn is not None and time.monotonic() - self._used_at > 2.0:
            self._disconnect()
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout,
                    context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=self.timeout)
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def _request(self, path: str, body: bytes, key: str | None
                 ) -> tuple[int, bytes, float | None]:
        """Status, body and the Retry-After the server asked for (seconds, if any)."""
        conn = self._connection()
        self.requests += 1
        headers = {**self._headers, "Content-Length": str(len(body)),
                   "X-Watchkeeper-Source": self.source,
                   "X-Watchkeeper-Dropped": str(self.dropped)}
        if key:
            headers["Idempotency-Key"] = key
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            self._disconnect()
            raise
        self._used_at = time.monotonic()
        if response.will_close:
            self._disconnect()
        return response.status, data, _retry_after(response.getheader("Retry-After"))

    def _post(self, kind: str, table: pa.Table) -> None:
        body = to_ipc(table, self.compression)
        # a table sent without the client's batch id still gets one key for all its tries
        key = batch_id(table) or uuid.uuid4().hex
        path = self._paths[kind]
        problem = ""
        made = 0
        asked = 0.0  # the wait the server asked for in its last answer (Retry-After)
        with self._lock:
            for attempt in range(self.retries + 1):
                if attempt:
                    delay = self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                    if self._closing.wait(max(delay, asked)) and attempt > 1:
                        break  # closing: one retry at most, then give up
                made += 1
                asked = 0.0
                try:
                    status, data, retry_after = self._request(path, body, key)
                    asked = min(retry_after or 0.0, MAX_RETRY_AFTER)
                except (OSError, http.client.HTTPException) as exc:
                    problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    continue
                self.last_status = status
                if 200 <= status < 300:
                    self.accepted += _accepted(data, table.num_rows)
                    return
                problem = f"HTTP {status}: {_snippet(data)}"
                if status not in (408, 429) and status < 500:
                    raise SinkError(f"{self.url}{path} refused a batch of {table.num_rows} "
                                    f"rows: {problem}")
        raise SinkUnavailable(f"{self.url}{path}: a batch of {table.num_rows} rows not "
                              f"delivered after {made} attempts; last: {problem}")


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header given in seconds (the form watchkeeper's server sends); None
    for an absent or unreadable one (an HTTP date falls back to the backoff)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0.0 <= seconds < float("inf") else None


def _accepted(data: bytes, default: int) -> int:
    try:
        return int(json.loads(data)["accepted"])
    except (ValueError, KeyError, TypeError):
        return default


def _snippet(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip().replace("\n", " ")
    try:
        detail = json.loads(text).get("detail")
        if detail:
            text = detail if isinstance(detail, str) else json.dumps(detail)
    except (ValueError, AttributeError):
        pass
    return text[:300] or "(empty body)"


class EmbeddedSink:
    """Profiles events in-process: windows of ``window`` (e.g. "5m") are evaluated when they
    close and saved to the store at ``store_url`` (None: keep them in memory only).

    With a store, the sink runs what the server runs (its event log, windows, suite
    versions and incidents): ``suite`` may be omitted to use the model's active suite in
    the store, and a version activated there later (``watchkeeper deploy --store``) is
    picked up at the next flush. A suite given here (or a path) is added to the store as
    the model's active version when it differs from the one there.

    One process per model and store: the windows live in this process. Servers with several
    worker processes should send to a watchkeeper server (:class:`RemoteSink`) instead.

    >>> import watchkeeper as wk
    >>> from watchkeeper.sdk import Client
    >>> suite = wk.init(pa.table({"x": [float(i % 10) for i in range(500)]}))
    >>> sink = EmbeddedSink(suite, store_url=None, window="1m")
    >>> client = Client(sink)
    >>> for i in range(3):
    ...     client.log({"x": 1.0}, None, ts=60.0 + i)
    >>> client.close()
    >>> [(w.label, w.profile.rows) for w in sink.monitor.windows.values()]
    [('1970-01-01T00:01:00+00:00/1970-01-01T00:02:00+00:00', 3)]
    """

    def __init__(
        self,
        suite: Suite | str | os.PathLike[str] | None = None,
        store_url: str | None = "sqlite:///watchkeeper.db",
        model: str = "default",
        window: str | timedelta = "5m",
        *,
        grace: str | timedelta | None = None,
    ) -> None:
        from watchkeeper.online.monitor import OnlineMonitor
        from watchkeeper.run.check import parse_duration
        from watchkeeper.suite.core import Suite, load

        if suite is not None and not isinstance(suite, Suite):
            suite = load(suite)
        length = window if isinstance(window, timedelta) else parse_duration(window)
        options: dict[str, Any] = {}
        if grace is not None:
            options["grace"] = (grace if isinstance(grace, timedelta)
                                else parse_duration(grace, "grace"))
        self.model = model
        self.store: Store | None = None
        self.hub: Any = None
        self._lock = threading.Lock()
        if not store_url:
            if suite is None:
                raise ValueError("EmbeddedSink needs a suite, or a store that has one")
            self._monitor: OnlineMonitor = OnlineMonitor(suite, model=model, window=length,
                                                         **options)
            return
        from watchkeeper.server.hub import Hub
        from watchkeeper.store import Store

        self.store = Store(store_url)
        if suite is not None:
            _register_suite(self.store, model, suite)
        elif self.store.active_suite(model) is None:
            raise ValueError(f"no active suite for model {model!r} in {self.store.url}; "
                             "pass suite= or deploy one")
        self.hub = Hub(self.store, window=length, **options)
        self.hub.load()

    @property
    def monitor(self) -> OnlineMonitor:
        """The OnlineMonitor of the version in service now."""
        if self.hub is None:
            return self._monitor
        return self.hub.models[self.model].generations[-1].live

    def __repr__(self) -> str:
        where = self.store.url if self.store is not None else "memory"
        return f"EmbeddedSink(model={self.monitor.model!r}, store={where!r})"

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        if self.store is not None:  # never reuse the parent's connections
            self.store.forget_connections()

    def _send(self, table: pa.Table, kind: str) -> None:
        with self._lock:
            if self.hub is not None:
                self.hub.append(self.model, table, kind)  # durable first, then folded
                self.hub.step()
            elif kind == "labels":
                self._monitor.ingest_labels(table)
            else:
                self._monitor.ingest(table)
                self._monitor.tick()

    def send_events(self, table: pa.Table) -> None:
        self._send(table, "events")

    def send_labels(self, table: pa.Table) -> None:
        self._send(table, "labels")

    def tick(self) -> None:
        with self._lock:
            if self.hub is not None:
                self.hub.step()
            else:
                self._monitor.tick()

    def close(self) -> None:
        with self._lock:
            try:
                if self.hub is not None:
                    self.hub.step()
                    self.hub.stop()
                else:
                    self._monitor.tick()
            finally:
                if self.store is not None:
                    self.store.close()

    def windows(self) -> list[dict[str, Any]]:
        """The model's windows, oldest first, as ``GET /v1/models/M/windows`` lists them:
        start, end, rows, state, suite_version and metrics."""
        with self._lock:
            if self.store is not None:
                return [{"start": r.start.isoformat(), "end": r.end.isoformat(),
                         "rows": r.rows, "state": r.state, "suite_version": r.suite_version,
                         "metrics": r.metrics}
                        for r in self.store.load_windows(self.model)]
            return [{"start": w.start.isoformat(), "end": w.end.isoformat(),
                     "rows": w.profile.rows, "state": w.state, "suite_version": None,
                     "metrics": dict(w.result.metrics) if w.result is not None else {}}
                    for w in sorted(self._monitor.windows.values(), key=lambda w: w.start)]

    def incidents(self, open_only: bool = True) -> list[dict[str, Any]]:
        """The model's incidents, newest first, each with its diagnosis and recommended
        actions (``advice``), as ``watchkeeper incidents`` shows them. Incidents need a
        store: without one the list is empty."""
        from watchkeeper.alerts.advice import incident_views

        with self._lock:
            shown = None if self.hub is None else self.hub.alert_view(self.model)
        if shown is None:
            return []
        return incident_views(shown.alerts.incidents.values(), shown.suite.importance,
                              is_open=True if open_only else None)


def _register_suite(store: Store, model: str, suite: Suite) -> int:
    """The store's version of this suite for the model, added when it is new."""
    from watchkeeper.suite import file as suitefile

    text = suitefile.dump(suite.to_dict())
    active = store.active_suite(model)
    if active is not None and active.text == text:
        return active.version
    return store.add_suite(model, text, created_by="watchkeeper.sdk").version
