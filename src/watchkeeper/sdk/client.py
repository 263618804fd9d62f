"""The one line in a model server: ``wk.log(features, prediction)``.

``log()`` appends one tuple to a bounded buffer and returns: no validation, no I/O, no
lock on the way in. A daemon thread wakes every ``flush_interval`` seconds (or as soon as
``flush_rows`` rows are waiting), takes the buffered rows, turns them into Arrow tables
(counting bad values, :mod:`watchkeeper.sdk.rows`), each with a batch id, and hands them to
a sink. A batch the sink cannot take now (server down, busy, timing out) stays in the buffer
and is sent again, under the same id, with backoff; with ``spool_dir`` it waits on disk
instead, where a restarted process finds it. Nothing reaches the caller: rows that do not
fit are dropped and counted, and a warning is logged at most once a minute. SIGTERM and
SIGINT flush the buffer before the process ends (:mod:`watchkeeper.sdk.shutdown`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa

from watchkeeper.sdk import context, shutdown
from watchkeeper.sdk.delivery import Delivery, Parcel
from watchkeeper.sdk.rows import Columns, batch_rows
from watchkeeper.sdk.sinks import Sink
from watchkeeper.sdk.spool import Spool
from watchkeeper.sdk.timed import wrap
from watchkeeper.wire import CLIENT, ERROR, LATENCY, TS

__all__ = ["Client"]

logger = logging.getLogger("watchkeeper.sdk")

#: Seconds between two warnings about dropped rows or sink errors.
WARN_EVERY = 60.0

_time = time.time
_clients: weakref.WeakSet[Client] = weakref.WeakSet()

F = TypeVar("F", bound=Callable[..., Any])


class Client(Delivery):
    """Logs model events from a serving process to a sink, without slowing or breaking it.

    ``features`` is a dict of name → value, or a sequence aligned with ``feature_names``.
    Column names: ``feature_names`` (plus any new keys), ``prediction``, ``proba`` and
    ``id`` (when given or when rows carry them; "proba" and "id" by default), and the
    reserved ``_ts``, ``_latency_ms``, ``_client``, ``_error``. Labels that arrive later go
    in ``id`` and ``target`` columns ("id" and "target" by default).

    ``capacity`` bounds the rows held in memory: logged and not yet converted, and converted
    but not yet taken by the sink (during an outage). ``spool_dir`` keeps the batches the
    sink could not take on disk instead (at most ``spool_bytes``), where this process or
    the next one started on the directory sends them. ``shutdown_timeout`` bounds the flush
    at exit, on SIGTERM/SIGINT (``handle_signals``) and by ``close()``.

    >>> from watchkeeper.sdk import Client, MemorySink
    >>> sink = MemorySink()
    >>> wk = Client(sink, feature_names=["age", "city"])
    >>> wk.log({"age": 41, "city": "Boston"}, 1, latency_ms=3.2)
    >>> wk.log([29, "Salem"], 0)                      # aligned with feature_names
    >>> wk.log({"age": float("nan"), "city": b"?"}, 0)  # two bad values: counted, not raised
    >>> wk.flush(timeout=10)
    True
    >>> sink.events_table().select(["age", "city", "prediction", "_latency_ms"]).to_pylist()[:2]
    [{'age': 41.0, 'city': 'Boston', 'prediction': 1, '_latency_ms': 3.2},
     {'age': 29.0, 'city': 'Salem', 'prediction': 0, '_latency_ms': None}]
    >>> {k: wk.stats[k] for k in ("logged", "flushed_rows", "dropped", "bad_values")}
    {'logged': 3, 'flushed_rows': 3, 'dropped': 0, 'bad_values': 2}
    >>> wk.close()
    """

    def __init__(
        self,
        sink: Sink,
        *,
        feature_names: list[str] | None = None,
        prediction: str = "prediction",
        proba: str | None = None,
        id: str | None = None,
        target: str | None = None,
        capacity: int = 100_000,
        flush_rows: int = 10_000,
        flush_interval: float = 1.0,
        shutdown_timeout: float = 5.0,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_bytes: int = 256 << 20,
        backoff: float = 1.0,
        handle_signals: bool = True,
    ) -> None:
        for name, value in (("capacity", capacity), ("flush_rows", flush_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        for name, number in (("flush_interval", flush_interval),
                             ("shutdown_timeout", shutdown_timeout), ("backoff", backoff)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) \
                    or not number > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {number!r}")
        names = None if feature_names is None else tuple(feature_names)
        if names is not None and (not all(isinstance(n, str) and n for n in names)
                                  or len(set(names)) != len(names)):
            raise ValueError("feature_names must be distinct non-empty strings")
        for label, column in (("prediction", prediction), ("proba", proba), ("id", id),
                              ("target", target)):
            if column is not None and (not isinstance(column, str) or not column):
                raise ValueError(f"{label} must be a column name (a non-empty string)")
        self.sink = sink
        self.columns = Columns(names, prediction, proba, id)
        clash = sorted(set(names or ()) & self.columns.taken())
        if clash:
            raise ValueError(f"feature_names {clash} clash with the columns the client fills "
                             f"itself ({', '.join(sorted(self.columns.taken()))})")
        self.target = target or "target"
        self.capacity = capacity
        self.flush_rows = flush_rows
        self.flush_interval = float(flush_interval)
        self.shutdown_timeout = float(shutdown_timeout)
        self.backoff = float(backoff)
        self.spool = None if spool_dir is None else Spool(spool_dir, spool_bytes)
        self._closed = False
        self._reset()
        _clients.add(self)
        if handle_signals:
            shutdown.install(_close_all)

    def _reset(self) -> None:
        """Fresh buffer, locks, counters and no thread (at start, and in a forked child)."""
        self._buf: deque[tuple[Any, ...]] = deque()
        self._batches: deque[tuple[str, Any, Any, int, float]] = deque()
        self._pending = 0  # rows in _batches
        self._outbox: deque[Parcel] = deque()  # converted, waiting for the sink
        self._held = 0  # rows taken from the buffer and not yet delivered (or lost)
        self._limit = 0 if self._closed else self.capacity  # what log() checks
        self._wake_at = self.flush_rows - 1
        self._side = threading.Lock()  # counters, _pending, _batches, _outbox
        self._take = threading.Lock()  # taking rows out of the buffer
        self._starting = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition(threading.Lock())
        self._requested = 0
        self._completed = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._retry_at = 0.0  # monotonic time of the next try after a failed send
        self._failures = 0  # failed sends in a row
        self._taken = 0
        self._flushed = 0
        self._dropped_full = 0
        self._dropped_shutdown = 0
        self._rejected = 0
        self._retried = 0
        self._spooled = 0
        self._sink_errors = 0
        self._bad = 0
        self._last_error: str | None = None
        self._last_bad: str | None = None
        self._warned_at = -math.inf
        self._warned = (0, 0)

    # -- the caller's side -----------------------------------------------------------------
    def log(
        self,
        features: Any,
        prediction: Any = None,
        *,
        proba: Any = None,
        id: Any = None,
        latency_ms: Any = None,
        client: Any = None,
        ts: Any = None,
        error: Any = None,
    ) -> None:
        """Log one prediction: appends one tuple to the buffer, nothing else.

        ``ts`` is the event time (epoch seconds or datetime; now by default), ``error`` says
        the call failed (bool, or the exception). Values are read later, in the background
        (so do not change the features dict after the call): bad ones are counted in
        ``stats["bad_values"]``, never raised. Inside a request watched by
        :class:`~watchkeeper.sdk.ASGIMiddleware`, the row waits for the request's end and
        takes its caller, latency and error where they were not given."""
        try:
            row = (features, prediction, proba, id, latency_ms, client,
                   _time() if ts is None else ts, error)
            request = context.current.get()
            if request is not None and request.hold(self, "row", row):
                return
            self._append(row)
        except Exception:  # nothing above raises short of MemoryError; never into the caller
            pass

    def _append(self, row: tuple[Any, ...]) -> None:
        buf = self._buf
        n = len(buf)
        if n + self._pending + self._held < self._limit:
            buf.append(row)
            if self._thread is None:
                self._start()
            if n >= self._wake_at:
                self._nudge()
        else:
            self._drop(1)

    def log_batch(
        self,
        X: Any,
        predictions: Any = None,
        probas: Any = None,
        ids: Any = None,
        *,
        latency_ms: Any = None,
        client: Any = None,
        ts: Any = None,
        error: Any = None,
    ) -> None:
        """Log many predictions at once, one row per row of ``X``: a 2-D numpy array
        (columns named by ``feature_names``, else ``x0``, ``x1``, …), a pandas or polars
        DataFrame, a pyarrow Table or a list of dict (or ``feature_names``-aligned) rows.
        ``predictions``, ``probas`` (``predict_proba``'s (n, 2) output gives the positive
        class's column; (n, k) the top class's probability) and ``ids`` are per-row
        sequences; ``latency_ms``, ``client``, ``ts`` and ``error`` a value for every row (or
        a sequence). A frame may also carry any of these columns itself. The data is handed
        over (do not change it afterwards) and converted in the background; its rows count
        against ``capacity``, all or none.

        >>> import numpy as np
        >>> from watchkeeper.sdk import MemorySink
        >>> sink = MemorySink()
        >>> wk = Client(sink, feature_names=["age", "hours"], id="rid")
        >>> wk.log_batch(np.array([[41, 40], [29, 20]]), [1, 0],
        ...              np.array([[0.2, 0.8], [0.9, 0.1]]), ids=["r1", "r2"])
        >>> wk.close()
        >>> sink.events_table().drop_columns(["_ts"]).to_pylist()
        [{'age': 41, 'hours': 40, 'prediction': 1, 'proba': 0.8, 'rid': 'r1'},
         {'age': 29, 'hours': 20, 'prediction': 0, 'proba': 0.1, 'rid': 'r2'}]
        """
        try:
            if isinstance(X, (str, bytes)) or not (hasattr(X, "__len__")
                                                    or hasattr(X, "num_rows")):
                self._note_bad(1, f"log_batch: a {type(X).__name__} is not a batch of rows")
                return
            extra = {self.columns.prediction: predictions, self.columns.proba_name: probas,
                     self.columns.id_name: ids, LATENCY: latency_ms, CLIENT: client,
                     ERROR: error, TS: ts}
            if probas is not None:
                from watchkeeper.sdk.rows import proba_values

                extra[self.columns.proba_name] = proba_values(probas)
            item = (X, extra, batch_rows(X))
            request = context.current.get()
            if request is not None and request.hold(self, "batch", item):
                return
            self._enqueue("events", X, extra, item[2])
        except Exception as exc:
            self._note_bad(1, f"log_batch: {type(exc).__name__}: {exc}")

    def log_labels(self, ids: Any, labels: Any) -> None:
        """Log labels that arrived later, joined downstream by id to their predictions."""
        try:
            if not hasattr(ids, "__len__"):
                ids = list(ids)
            if not hasattr(labels, "__len__"):
                labels = list(labels)
            self._enqueue("labels", ids, labels, min(len(ids), len(labels)))
        except Exception as exc:
            self._note_bad(1, f"log_labels: {type(exc).__name__}: {exc}")

    def timed(self, fn: F | None = None, *, features_arg: int | str = 0) -> Any:
        """Decorator for a predict function (sync or async): logs its input (the argument at
        position or name ``features_arg``) and its return value as the prediction, with the
        call's latency. An exception is logged with ``error=True`` and re-raised unchanged.
        On a method (first parameter ``self``), position 0 means the first one after self.

        A batch input (a 2-D array, a data frame, an Arrow table, a list of rows: what
        scikit-learn, XGBoost and LightGBM models take) is logged one row per input row
        (:meth:`log_batch`): the output of ``predict`` as predictions, that of
        ``predict_proba`` (or any 2-D output) as scores.

        >>> from watchkeeper.sdk import MemorySink
        >>> wk = Client(MemorySink())
        >>> @wk.timed
        ... def predict(features):
        ...     return int(features["x"] > 0)
        >>> predict({"x": 3})
        1
        >>> wk.close()
        """
        return wrap(self, fn, features_arg)

    def flush(self, timeout: float | None = None) -> bool:
        """Hand everything logged so far to the sink now (batches waiting after a failed
        send are tried again at once); True when that finished within ``timeout`` seconds
        and nothing is left waiting for the sink."""
        try:
            if self._closed:
                return not self._buf and not self._batches and not self._outbox
            thread = self._thread
            if thread is threading.current_thread():  # called by the sink itself
                self._cycle(force=True)
                return not self._outbox
            if thread is None or not thread.is_alive():
                self._thread = None
                self._start()
            if self._thread is None:
                return False
            with self._done:
                self._requested += 1
                target = self._requested
            self._wake.set()
            with self._done:
                finished = self._done.wait_for(lambda: self._completed >= target, timeout)
            return finished and not self._outbox and not (
                self.spool is not None and self.spool.waiting())
        except Exception as exc:
            self._note_error(f"flush: {type(exc).__name__}: {exc}")
            return False

    def close(self, timeout: float | None = None) -> None:
        """Flush what is buffered, close the sink and stop the thread, within ``timeout``
        seconds (``shutdown_timeout`` by default). What the sink could not take by then is
        written to the spool, or dropped and counted in ``stats["dropped_shutdown"]``. Later
        calls to ``log()`` are counted as dropped. Runs at exit and on SIGTERM/SIGINT."""
        with self._starting:
            if self._closed:
                return
            self._closed = True
            self._limit = 0
        timeout = self.shutdown_timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            thread = self._thread
            if thread is None or not thread.is_alive():
                thread = self._spawn()
            self._stopping = True
            self._wake.set()
            if thread is None:  # no thread to be had (interpreter shutting down)
                self._cycle(force=True)
                self._finish()
            else:
                thread.join(max(deadline - time.monotonic(), 0.0))
                if thread.is_alive():
                    lost = self._take_all(spool=True)
                    if lost:
                        self._count_shutdown(lost, f"close: {lost} rows not flushed within "
                                                   f"{timeout:g} s")
                    logger.warning("watchkeeper: close() timed out after %g s (sink %r); "
                                   "%d buffered rows dropped", timeout, self.sink, lost)
                    return
            late = self._take_all()  # logged while closing, after the last flush
            if late:
                self._count_shutdown(late, f"close: {late} rows logged while closing")
        except Exception as exc:
            self._note_error(f"close: {type(exc).__name__}: {exc}")
        finally:
            _clients.discard(self)

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters. ``logged``: rows accepted (events, batch rows and
        labels); ``flushed_rows``: rows the sink took; ``buffered``: rows waiting in memory
        (logged, or converted and waiting for the sink); ``dropped``: rows lost, the sum of
        ``dropped_full`` (over ``capacity``, or the spool full), ``dropped_shutdown`` (not
        sent within ``shutdown_timeout`` when closing, and not spooled) and ``rejected`` (the
        sink refused them for good, or they could not be converted); ``spooled``: rows
        written to the spool; ``retried``: sends that failed and were kept for another try;
        ``sink_errors``: failed sends of either kind; ``bad_values``: values counted as bad."""
        with self._take, self._side:
            buffered = len(self._buf) + self._pending + self._held
            return {
                "logged": self._taken + len(self._buf) + self._pending,
                "dropped": self._dropped,
                "dropped_full": self._dropped_full,
                "dropped_shutdown": self._dropped_shutdown,
                "rejected": self._rejected,
                "flushed_rows": self._flushed,
                "retried": self._retried,
                "spooled": self._spooled,
                "sink_errors": self._sink_errors,
                "bad_values": self._bad,
                "buffered": buffered,
                "last_error": self._last_error,
                "last_bad_values": self._last_bad,
            }

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Client({self.sink!r}, {state})"

    # -- internals ---------------------------------------------------------------------------
    def _start(self) -> None:
        with self._starting:
            if self._thread is None and not self._closed:
                self._spawn()

    def _spawn(self) -> threading.Thread | None:
        thread = threading.Thread(target=self._run, name="watchkeeper-sdk", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down
            return None
        self._thread = thread
        return thread

    def _nudge(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def _drop(self, rows: int) -> None:
        with self._side:
            self._dropped_full += rows

    def _enqueue(self, kind: str, first: Any, second: Any, rows: int) -> None:
        with self._side:
            if len(self._buf) + self._pending + self._held + rows > self._limit:
                self._dropped_full += rows
                return
            self._pending += rows
            self._batches.append((kind, first, second, rows, _time()))
        if self._thread is None:
            self._start()
        if len(self._buf) + self._pending > self._wake_at:
            self._nudge()

    def _note_bad(self, n: int, what: str) -> None:
        with self._side:
            self._bad += n
            self._last_bad = what

    def _count_shutdown(self, rows: int, what: str) -> None:
        with self._side:
            self._dropped_shutdown += rows
            self._last_error = what[:500]

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._done:
                target = self._requested
                forced = target > self._completed
            stopping = self._stopping
            self._cycle(force=forced or stopping)
            with self._done:
                self._completed = max(self._completed, target)
                self._done.notify_all()
            if stopping:
                self._finish()
                return

    def _finish(self) -> None:
        """After the last flush: what the sink did not take goes to the spool or is counted
        as lost at shutdown; then the sink is closed."""
        with self._side:
            left = list(self._outbox)
            self._outbox.clear()
            self._held = 0
        lost = 0
        for parcel in left:
            if not self._to_spool(parcel):
                lost += parcel.rows
                self._count_shutdown(parcel.rows, f"close: a batch of {parcel.rows} rows "
                                                  f"not delivered: {self._last_error}")
        if left:
            logger.warning("watchkeeper: closing with %d rows the sink did not take: %d "
                           "spooled, %d dropped", sum(p.rows for p in left),
                           sum(p.rows for p in left) - lost, lost)
        try:
            self.sink.close()
        except Exception as exc:
            self._note_error(f"sink close: {type(exc).__name__}: {exc}")

    def _take_all(self, spool: bool = False) -> int:
        """Empty the buffer without sending (close timed out): returns the rows lost, those
        converted and waiting for the sink written to the spool first when ``spool``."""
        with self._take:
            n = len(self._buf)
            for _ in range(n):
                self._buf.popleft()
            with self._side:
                batches = list(self._batches)
                self._batches.clear()
                self._pending = 0
                waiting = list(self._outbox)
                self._outbox.clear()
                self._held -= sum(p.rows for p in waiting)
            rows = n + sum(b[3] for b in batches)
            self._taken += rows
        # a batch being sent right now may also arrive: it keeps its id, so it counts once
        return rows + sum(p.rows for p in waiting if not (spool and self._to_spool(p)))

    def _cycle(self, force: bool = False) -> None:
        """One round of the background thread: convert what is buffered, send what waits
        (unless backing off after a failure, or ``force``), tick, warn."""
        try:
            with self._take:
                # log() reads the buffer, _pending and _held without a lock: rows count as
                # held before they leave the buffer or _pending, never after, so a caller
                # may see them twice for a moment (and drop a row early) but never not at all
                # (and overfill the buffer past capacity)
                with self._side:
                    n = len(self._buf)
                    batches = [self._batches.popleft() for _ in range(len(self._batches))]
                    taken = n + sum(b[3] for b in batches)
                    # held from now on, until converted (then held as the batch they form)
                    self._held += taken
                    self._pending -= taken - n
                pop = self._buf.popleft
                rows = [pop() for _ in range(n)]
                self._taken += taken
            unposted = [taken]
            try:
                tables: list[tuple[str, pa.Table]] = []
                step = self.flush_rows
                for i in range(0, n, step):
                    tables += self._convert_rows(rows[i:i + step])
                del rows
                for batch in batches:
                    tables += self._convert_batch(*batch)
                self._post(tables, unposted)
            finally:
                self._unhold(unposted[0])  # rows that could not be converted
            if force or time.monotonic() >= self._retry_at:
                self._deliver_all()
            elif self.spool is not None:
                self._spool_outbox()
        except Exception as exc:  # a bug here must not kill the thread
            self._note_error(f"flush: {type(exc).__name__}: {exc}")
        tick = getattr(self.sink, "tick", None)
        if callable(tick):
            try:
                tick()
            except Exception as exc:
                self._note_error(f"sink tick: {type(exc).__name__}: {exc}")
        self._maybe_warn()

    def _maybe_warn(self) -> None:
        now = time.monotonic()
        if now - self._warned_at < WARN_EVERY:
            return
        dropped, errors = self._dropped, self._sink_errors
        if (dropped, errors) == self._warned:
            return
        logger.warning(
            "watchkeeper: %d rows dropped so far (%d since the last warning; buffer capacity "
            "%d), %d rows waiting for the sink, %d failed sends; last error: %s", dropped,
            dropped - self._warned[0], self.capacity, self._held, errors, self._last_error)
        self._warned_at = now
        self._warned = (dropped, errors)

    def _after_fork_in_child(self) -> None:
        self._reset()
        reset = getattr(self.sink, "_after_fork_in_child", None)
        if callable(reset):
            with contextlib.suppress(Exception):
                reset()


def release_request(request: context.Request, caller: str | None, latency_ms: float,
                    error: bool) -> None:
    """The rows a request held (:mod:`watchkeeper.sdk.context`) go to their clients'
    buffers, with its caller, latency and error where they had none (the middleware's end of
    a request)."""
    for owner, kind, item in request.finish():
        try:
            if kind == "row":
                f, p, pr, i, lat, cl, ts, err = item
                owner._append((f, p, pr, i, latency_ms if lat is None else lat,
                               caller if cl is None else cl, ts, error if err is None else err))
            else:
                X, extra, rows = item
                for name, value in ((LATENCY, latency_ms), (CLIENT, caller), (ERROR, error)):
                    if extra.get(name) is None:
                        extra[name] = value
                owner._enqueue("events", X, extra, rows)
        except Exception as exc:
            owner._note_error(f"request rows: {type(exc).__name__}: {exc}")


def _close_all() -> None:
    """Close every client, all within the longest ``shutdown_timeout`` among them; then let
    a termination signal held meanwhile take its course (:mod:`watchkeeper.sdk.shutdown`)."""
    clients = list(_clients)
    if clients:
        deadline = time.monotonic() + max(c.shutdown_timeout for c in clients)
        for client in clients:
            client.close(timeout=max(deadline - time.monotonic(), 0.1))
    shutdown.release_deferred()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork_in_child()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
