"""An :class:`~watchkeeper.sdk.EmbeddedSink` in a child process of its own, so profiling,
window evaluation and store writes use another core and never hold the model server's GIL.

The model server's side only writes each table as an Arrow IPC stream to a socket and waits
for the answer (in the client's background thread, without the GIL); the child
(:func:`child_main`) runs the embedded sink and answers each message. It ignores SIGINT and
SIGTERM and ends when the socket closes (after flushing), so it neither dies before the
model server has sent its last rows nor outlives it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from watchkeeper.errors import SinkError, SinkUnavailable
from watchkeeper.sdk.sinks import EmbeddedSink
from watchkeeper.wire import from_ipc, to_ipc

__all__ = ["SubprocessSink"]

#: Seconds to wait for the child to start (it imports watchkeeper and opens the store).
START_TIMEOUT = 120.0
#: Seconds to wait for the child to answer one message.
ANSWER_TIMEOUT = 300.0
_CHILD = ("import sys; from watchkeeper.sdk.subprocess_sink import child_main; "
          "child_main(int(sys.argv[1]))")


class SubprocessSink:
    """Runs ``EmbeddedSink(suite, store_url, model, window, grace=...)`` in a child process;
    the same methods (``send_events``, ``send_labels``, ``tick``, ``close``, ``windows()``,
    ``incidents()``). An error in the child is raised here as :class:`SinkError`; a child
    that died as :class:`SinkUnavailable` (a new one is started at the next call).

    >>> import watchkeeper as wk
    >>> from watchkeeper.sdk import Client
    >>> suite = wk.init(pa.table({"x": [float(i % 10) for i in range(500)]}))
    >>> sink = SubprocessSink(suite, store_url=None, window="1m")
    >>> client = Client(sink)
    >>> client.log({"x": 1.0}, None, ts=60.0)
    >>> client.flush(timeout=60)
    True
    >>> [(w["start"], w["rows"]) for w in sink.windows()]
    [('1970-01-01T00:01:00+00:00', 1)]
    >>> client.close()
    """

    def __init__(
        self,
        suite: Any = None,
        store_url: str | None = "sqlite:///watchkeeper.db",
        model: str = "default",
        window: str | timedelta = "5m",
        *,
        grace: str | timedelta | None = None,
    ) -> None:
        from watchkeeper.suite import file as suitefile
        from watchkeeper.suite.core import Suite, load

        if suite is not None and not isinstance(suite, Suite):
            suite = load(suite)
        self.model = model
        self.options = {"suite": None if suite is None else suitefile.dump(suite.to_dict()),
                        "store_url": store_url, "model": model, "window": window,
                        "grace": grace}
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._start()

    def __repr__(self) -> str:
        return f"SubprocessSink(model={self.model!r}, store={self.options['store_url']!r})"

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._call("start", self.options, START_TIMEOUT)

    def _call(self, op: str, payload: Any = None, timeout: float = ANSWER_TIMEOUT) -> Any:
        conn = self._conn
        if conn is None:
            raise SinkUnavailable("the embedded sink's process is not running")
        try:
            conn.send((op, payload))
            if not conn.poll(timeout):
                raise TimeoutError(f"no answer to {op!r} within {timeout:g} s")
            status, answer = conn.recv()
        except (OSError, EOFError, TimeoutError) as exc:
            self._stop()
            raise SinkUnavailable(f"the embedded sink's process ended: "
                                  f"{type(exc).__name__}: {exc}") from None
        if status != "ok":
            raise SinkError(f"embedded sink ({op}): {answer}")
        return answer

    def _request(self, op: str, payload: Any = None) -> Any:
        with self._lock:
            if self._conn is None and op != "close":
                self._start()
            return self._call(op, payload)

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None

    def send_events(self, table: pa.Table) -> None:
        self._request("events", to_ipc(table))

    def send_labels(self, table: pa.Table) -> None:
        self._request("labels", to_ipc(table))

    def tick(self) -> None:
        self._request("tick")

    def windows(self) -> list[dict[str, Any]]:
        """As :meth:`EmbeddedSink.windows`."""
        return self._request("windows")

    def incidents(self, open_only: bool = True) -> list[dict[str, Any]]:
        """As :meth:`EmbeddedSink.incidents`."""
        return self._request("incidents", open_only)

    def close(self) -> None:
        with self._lock:
            try:
                if self._conn is not None:
                    self._call("close")
            finally:
                self._stop()

    def _after_fork_in_child(self) -> None:
        # the socket and the process are the parent's: a forked child starts its own
        self._lock = threading.Lock()
        self._conn = None
        self._proc = None


def _serve(conn: Connection) -> None:
    """The child's loop: one EmbeddedSink, driven by the messages on ``conn``."""
    sink: EmbeddedSink | None = None
    while True:
        try:
            op, payload = conn.recv()
        except (EOFError, OSError):  # the model server is gone: flush what we have
            if sink is not None:
                sink.close()
            return
        try:
            answer = None
            if op == "start":
                sink = _embedded(payload)
            elif sink is None:
                raise RuntimeError("not started")
            elif op in ("events", "labels"):
                sink._send(from_ipc(payload), op)
            elif op == "tick":
                sink.tick()
            elif op == "windows":
                answer = sink.windows()
            elif op == "incidents":
                answer = sink.incidents(payload)
            elif op == "close":
                sink.close()
                conn.send(("ok", None))
                return
            conn.send(("ok", answer))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _embedded(options: dict[str, Any]) -> EmbeddedSink:
    from watchkeeper.suite import file as suitefile
    from watchkeeper.suite.core import Suite

    text = options.pop("suite")
    suite = None if text is None else Suite.from_dict(suitefile.parse(text, "suite"))
    grace = options.pop("grace")
    return EmbeddedSink(suite, **options, grace=grace)


def child_main(fd: int) -> None:
    """The child process: serve the socket ``fd``, then leave."""
    import signal

    for stop in (signal.SIGINT, signal.SIGTERM):  # it ends when the model server does
        signal.signal(stop, signal.SIG_IGN)
    _serve(Connection(fd))
    os._exit(0)
