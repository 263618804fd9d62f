"""The one line in a model server: ``wk.log(features, prediction)``.

``log()`` appends one tuple to a bounded buffer and returns: no validation, no I/O, no
lock on the way in. A daemon thread wakes every ``flush_interval`` seconds (or as soon as
``flush_rows`` rows are waiting), takes the buffered rows, turns them into Arrow tables
(counting bad values, :mod:`watchkeeper.sdk.rows`) and hands them to a sink. Nothing
reaches the caller: a full buffer drops the newest rows and counts them, sink failures are
counted, and a warning is logged at most once a minute.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
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

from watchkeeper.sdk.rows import (
    Columns,
    Tally,
    as_list,
    events_table,
    frame_table,
    labels_table,
    unify,
)
from watchkeeper.sdk.sinks import Sink

__all__ = ["Client"]

logger = logging.getLogger("watchkeeper.sdk")

#: Seconds between two warnings about dropped rows or sink errors.
WARN_EVERY = 60.0
#: Seconds the interpreter waits at exit for all clients to flush.
EXIT_TIMEOUT = 5.0
#: Rows converted in one go by the background thread (it holds the GIL meanwhile).
CONVERT_ROWS = 1_000

_time = time.time
_perf = time.perf_counter
_clients: weakref.WeakSet[Client] = weakref.WeakSet()

F = TypeVar("F", bound=Callable[..., Any])


class Client:
    """Logs model events from a serving process to a sink, without slowing or breaking it.

    ``features`` is a dict of name → value, or a sequence aligned with ``feature_names``.
    Column names: ``feature_names`` (plus any new keys), ``prediction``, ``proba`` and
    ``id`` (when given or when rows carry them; "proba" and "id" by default), and the
    reserved ``_ts``, ``_latency_ms``, ``_client``, ``_error``. Labels that arrive later go
    in ``id`` and ``target`` columns ("id" and "target" by default).

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
    ) -> None:
        for name, value in (("capacity", capacity), ("flush_rows", flush_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if not isinstance(flush_interval, (int, float)) or not flush_interval > 0:
            raise ValueError(f"flush_interval must be a number of seconds > 0, "
                             f"got {flush_interval!r}")
        names = None if feature_names is None else tuple(feature_names)
        if names is not None and (not all(isinstance(n, str) and n for n in names)
                                  or len(set(names)) != len(names)):
            raise ValueError("feature_names must be distinct non-empty strings")
        for label, value in (("prediction", prediction), ("proba", proba), ("id", id),
                             ("target", target)):
            if value is not None and (not isinstance(value, str) or not value):
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
        self._closed = False
        self._reset()
        _clients.add(self)

    def _reset(self) -> None:
        """Fresh buffer, locks, counters and no thread (at start, and in a forked child)."""
        self._buf: deque[tuple[Any, ...]] = deque()
        self._batches: deque[tuple[str, Any, Any, int, float]] = deque()
        self._pending = 0  # rows in _batches
        self._limit = 0 if self._closed else self.capacity  # what log() checks
        self._wake_at = self.flush_rows - 1
        self._side = threading.Lock()  # counters, _pending, _batches
        self._take = threading.Lock()  # taking rows out of the buffer
        self._starting = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition(threading.Lock())
        self._requested = 0
        self._completed = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._taken = 0
        self._dropped = 0
        self._flushed = 0
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
        ``stats["bad_values"]``, never raised."""
        try:
            buf = self._buf
            n = len(buf)
            if n + self._pending < self._limit:
                buf.append((features, prediction, proba, id, latency_ms, client,
                            _time() if ts is None else ts, error))
                if self._thread is None:
                    self._start()
                if n >= self._wake_at:
                    self._nudge()
            else:
                self._drop(1)
        except Exception:  # nothing above raises short of MemoryError; never into the caller
            pass

    def log_batch(self, frame: Any) -> None:
        """Log many events at once: a pandas or polars DataFrame, a pyarrow Table or a list of
        dict rows, with the same column names as ``log()`` writes. The whole frame is handed
        over (do not change it afterwards); its rows count against ``capacity``, all or none."""
        try:
            if isinstance(frame, (str, bytes)) or not hasattr(frame, "__len__"):
                self._note_bad(1, f"log_batch: a {type(frame).__name__} is not a frame")
                return
            rows = int(frame.num_rows) if hasattr(frame, "num_rows") else len(frame)
            self._enqueue("events", frame, None, rows)
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

        >>> from watchkeeper.sdk import MemorySink
        >>> wk = Client(MemorySink())
        >>> @wk.timed
        ... def predict(features):
        ...     return int(features["x"] > 0)
        >>> predict({"x": 3})
        1
        >>> wk.close()
        """

        def decorate(func: F) -> F:
            index, name = _argument(func, features_arg)

            def pick(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if index is not None and index < len(args):
                    return args[index]
                return kwargs.get(name) if name is not None else None

            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    start = _perf()
                    try:
                        result = await func(*args, **kwargs)
                    except Exception:
                        self.log(pick(args, kwargs), None, error=True,
                                 latency_ms=(_perf() - start) * 1e3)
                        raise
                    self.log(pick(args, kwargs), result, error=False,
                             latency_ms=(_perf() - start) * 1e3)
                    return result

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = _perf()
                try:
                    result = func(*args, **kwargs)
                except Exception:
                    self.log(pick(args, kwargs), None, error=True,
                             latency_ms=(_perf() - start) * 1e3)
                    raise
                self.log(pick(args, kwargs), result, error=False,
                         latency_ms=(_perf() - start) * 1e3)
                return result

            return wrapper  # type: ignore[return-value]

        return decorate(fn) if fn is not None else decorate

    def flush(self, timeout: float | None = None) -> bool:
        """Hand everything logged so far to the sink now; True when that finished within
        ``timeout`` seconds (rows the sink rejected are counted as dropped)."""
        try:
            if self._closed:
                return not self._buf and not self._batches
            thread = self._thread
            if thread is threading.current_thread():  # called by the sink itself
                self._cycle()
                return True
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
                return self._done.wait_for(lambda: self._completed >= target, timeout)
        except Exception as exc:
            self._note_error(f"flush: {type(exc).__name__}: {exc}")
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is buffered, close the sink and stop the thread, within ``timeout``
        seconds; later calls to ``log()`` are counted as dropped. Also runs at exit."""
        with self._starting:
            if self._closed:
                return
            self._closed = True
            self._limit = 0
        deadline = time.monotonic() + max(float(timeout), 0.0)
        try:
            thread = self._thread
            if thread is None or not thread.is_alive():
                thread = self._spawn()
            self._stopping = True
            self._wake.set()
            if thread is None:  # no thread to be had (interpreter shutting down)
                self._cycle()
                self._close_sink()
            else:
                thread.join(max(deadline - time.monotonic(), 0.0))
                if thread.is_alive():
                    lost = self._take_all()
                    if lost:
                        self._count_drop(lost, f"close: {lost} rows not flushed within "
                                               f"{timeout:g} s")
                    logger.warning("watchkeeper: close() timed out after %g s (sink %r); "
                                   "%d buffered rows dropped", timeout, self.sink, lost)
                    return
            late = self._take_all()  # logged while closing, after the last flush
            if late:
                self._count_drop(late, f"close: {late} rows logged while closing")
        except Exception as exc:
            self._note_error(f"close: {type(exc).__name__}: {exc}")
        finally:
            _clients.discard(self)

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters. ``logged``: rows accepted into the buffer (events,
        batch rows and labels); ``dropped``: rows lost (buffer full, sink failures, close
        timeout); ``flushed_rows``: rows the sink took; ``sink_errors``: failed sends;
        ``bad_values``: values counted as bad at flush; ``buffered``: rows waiting."""
        with self._take, self._side:
            buffered = len(self._buf) + self._pending
            return {
                "logged": self._taken + buffered,
                "dropped": self._dropped,
                "flushed_rows": self._flushed,
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
            self._dropped += rows

    def _enqueue(self, kind: str, first: Any, second: Any, rows: int) -> None:
        with self._side:
            if len(self._buf) + self._pending + rows > self._limit:
                self._dropped += rows
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

    def _note_error(self, what: str) -> None:
        with self._side:
            self._last_error = what[:500]

    def _count_drop(self, rows: int, what: str) -> None:
        with self._side:
            self._dropped += rows
            self._last_error = what[:500]

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._done:
                target = self._requested
            stopping = self._stopping
            self._cycle()
            with self._done:
                self._completed = max(self._completed, target)
                self._done.notify_all()
            if stopping:
                self._close_sink()
                return

    def _close_sink(self) -> None:
        try:
            self.sink.close()
        except Exception as exc:
            self._note_error(f"sink close: {type(exc).__name__}: {exc}")

    def _take_all(self) -> int:
        """Empty the buffer without sending (close timed out); returns the rows taken."""
        with self._take:
            n = len(self._buf)
            for _ in range(n):
                self._buf.popleft()
            with self._side:
                batches = list(self._batches)
                self._batches.clear()
                self._pending = 0
            rows = n + sum(b[3] for b in batches)
            self._taken += rows
        return rows

    def _cycle(self) -> None:
        """One round of the background thread: send what is buffered, tick, warn."""
        try:
            with self._take:
                n = len(self._buf)
                pop = self._buf.popleft
                rows = [pop() for _ in range(n)]
                with self._side:
                    batches = [self._batches.popleft() for _ in range(len(self._batches))]
                    self._pending -= sum(b[3] for b in batches)
                self._taken += n + sum(b[3] for b in batches)
            step = self.flush_rows
            for i in range(0, n, step):
                self._send_rows(rows[i:i + step])
            del rows
            for batch in batches:
                self._send_batch(*batch)
        except Exception as exc:  # a bug here must not kill the thread
            self._note_error(f"flush: {type(exc).__name__}: {exc}")
        tick = getattr(self.sink, "tick", None)
        if callable(tick):
            try:
                tick()
            except Exception as exc:
                self._note_error(f"sink tick: {type(exc).__name__}: {exc}")
        self._maybe_warn()

    def _convert(self, rows: list[tuple[Any, ...]], tally: Tally) -> tuple[pa.Table | None, int]:
        """The rows as one table, and how many rows could not be converted at all.

        Converted in parts of CONVERT_ROWS: the thread holds the GIL while it converts, and
        a short part keeps each stretch (what a logging thread may wait) short."""
        tables = []
        lost = 0
        for i in range(0, len(rows), CONVERT_ROWS):
            part = rows[i:i + CONVERT_ROWS]
            counted = Tally()
            try:
                tables.append(events_table(part, self.columns, counted))
                tally.merge(counted)
                continue
            except Exception:  # should not happen; rescue the rows one by one
                pass
            for row in part:
                counted = Tally()
                try:
                    tables.append(events_table([row], self.columns, counted))
                    tally.merge(counted)
                except Exception:
                    lost += 1
        if not tables:
            return None, lost
        try:
            return unify(tables), lost
        except Exception:
            return None, len(rows)

    def _send_rows(self, rows: list[tuple[Any, ...]]) -> None:
        tally = Tally()
        table, lost = self._convert(rows, tally)
        self._count_bad(tally)
        if lost:
            self._count_drop(lost, f"{lost} rows could not be converted")
        if table is not None:
            self._deliver(self.sink.send_events, table)

    def _send_batch(self, kind: str, first: Any, second: Any, rows: int, at: float) -> None:
        tally = Tally()
        try:
            if kind == "events":
                table = frame_table(first, at, tally)
            else:
                ids, labels = as_list(first), as_list(second)
                n = min(len(ids), len(labels))
                tally.add(abs(len(ids) - len(labels)), "log_labels: ids and labels differ "
                                                       "in length")
                table = labels_table(ids[:n], labels[:n], self.columns.id_name, self.target,
                                     tally)
        except Exception as exc:
            self._count_bad(tally)
            self._count_drop(rows, f"{kind} batch of {rows} rows unreadable: "
                                   f"{type(exc).__name__}: {exc}")
            return
        self._count_bad(tally)
        send = self.sink.send_events if kind == "events" else self.sink.send_labels
        self._deliver(send, table)

    def _count_bad(self, tally: Tally) -> None:
        if tally.bad:
            with self._side:
                self._bad += tally.bad
                self._last_bad = tally.summary()

    def _deliver(self, send: Callable[[pa.Table], None], table: pa.Table) -> None:
        if table.num_rows == 0:  # nothing to send (an empty batch or label list)
            return
        if hasattr(self.sink, "dropped"):  # a sink that reports drops to its server
            self.sink.dropped = self._dropped
        try:
            send(table)
        except Exception as exc:
            with self._side:
                self._sink_errors += 1
                self._dropped += table.num_rows
                self._last_error = f"{type(exc).__name__}: {exc}"[:500]
            return
        with self._side:
            self._flushed += table.num_rows

    def _maybe_warn(self) -> None:
        now = time.monotonic()
        if now - self._warned_at < WARN_EVERY:
            return
        dropped, errors = self._dropped, self._sink_errors
        if (dropped, errors) == self._warned:
            return
        logger.warning(
            "watchkeeper: %d rows dropped so far (%d since the last warning; buffer capacity "
            "%d) and %d sink errors; last error: %s", dropped, dropped - self._warned[0],
            self.capacity, errors, self._last_error)
        self._warned_at = now
        self._warned = (dropped, errors)

    def _after_fork_in_child(self) -> None:
        self._reset()
        reset = getattr(self.sink, "_after_fork_in_child", None)
        if callable(reset):
            with contextlib.suppress(Exception):
                reset()


def _argument(func: Callable[..., Any], which: int | str) -> tuple[int | None, str | None]:
    """Position and name of the features argument of ``func``."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if isinstance(which, int):
        if which == 0 and positional and positional[0].name in ("self", "cls"):
            which = 1  # a method: its features come after self
        name = None
        if which < len(positional) and positional[which].kind != positional[which].POSITIONAL_ONLY:
            name = positional[which].name
        return which, name
    index = next((i for i, p in enumerate(positional) if p.name == which), None)
    return index, which


def _close_all() -> None:
    deadline = time.monotonic() + EXIT_TIMEOUT
    for client in list(_clients):
        client.close(timeout=max(deadline - time.monotonic(), 0.1))


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork_in_child()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
