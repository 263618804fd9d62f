"""Flush on SIGTERM and SIGINT, whatever the web server does with them.

Docker, Kubernetes and systemd stop a server with SIGTERM. Servers react differently:
gunicorn's sync worker leaves through ``sys.exit`` (so ``atexit`` runs), hypercorn returns
normally, but uvicorn (alone or as a gunicorn worker) restores the handler it found and
raises the signal again once it has shut down, so a default handler kills the process before
any ``atexit`` code runs. The SDK therefore installs one handler per signal (from the main
thread, when the first client is made) that chains to the handler it replaced:

- the one it replaced is a Python function (uvicorn's, gunicorn's, ``KeyboardInterrupt``):
  it is called, and the signal is blocked in the main thread first, so that a server that
  raises it again after its graceful shutdown does not kill the process before the clients
  flush at exit; once they have (within their ``shutdown_timeout``) the signal is delivered
  again and ends the process as it would have;
- it was the default action: every client is closed (within its ``shutdown_timeout``), then
  the signal is raised again with the default action;
- it was "ignore": nothing happens.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["SIGNALS", "install", "release_deferred"]

#: The signals a server is stopped with.
SIGNALS = (signal.SIGTERM, signal.SIGINT)

_previous: dict[int, Any] = {}
_deferred: set[int] = set()
_lock = threading.Lock()
_closer: Callable[[], None] | None = None


def install(close_all: Callable[[], None]) -> bool:
    """Put the SDK's handler in front of the current one for each of :data:`SIGNALS`; True
    when it is in place (only the main thread may set handlers)."""
    global _closer
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        _closer = close_all
        for sig in SIGNALS:
            try:
                current = signal.getsignal(sig)
                if current is _on_signal:
                    continue
                signal.signal(sig, _on_signal)
            except (ValueError, OSError):  # not the main interpreter, or an odd platform
                return False
            _previous[sig] = current
    return True


def _on_signal(signum: int, frame: FrameType | None) -> None:
    previous = _previous.get(signum, signal.SIG_DFL)
    if previous == signal.SIG_IGN:
        return
    if callable(previous):
        _defer(signum)
        previous(signum, frame)
        return
    # the default action (or a handler set from C, which Python cannot call): flush, then die
    if _closer is not None:
        with contextlib.suppress(Exception):
            _closer()
    _deliver(signum)


def _defer(signum: int) -> None:
    """Hold the signal in the main thread: a server raising it again after its own shutdown
    then leaves it pending until :func:`release_deferred`."""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        _deferred.add(signum)


def release_deferred() -> None:
    """After the exit flush: unblock what :func:`_defer` held; a signal that was raised again
    meanwhile now takes its default action (ends the process as the server meant it to)."""
    if not _deferred or threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(ValueError, OSError, AttributeError):
        pending = signal.sigpending() & _deferred
        for sig in pending:
            signal.signal(sig, signal.SIG_DFL)
        held = set(_deferred)
        _deferred.clear()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _deliver(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    signal.raise_signal(signum)
