"""The request being served, so that rows logged while it runs carry its caller, latency
and error without the model code passing them.

:class:`~watchkeeper.sdk.ASGIMiddleware` opens a :class:`Request` for each request it
watches; ``Client.log()`` and ``Client.log_batch()`` called while it runs (in the same task,
or a thread started with its context, as FastAPI runs sync endpoints) hand their rows to it
instead of the buffer; when the request ends its caller, latency and error fill what the
rows left empty, and the rows go to their client's buffer.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

__all__ = ["Request", "current"]


class Request:
    """Rows logged while one request runs, held until it ends (at most ``limit`` of them)."""

    __slots__ = ("_lock", "caller", "closed", "held", "limit")

    def __init__(self, caller: str | None, limit: int = 100_000) -> None:
        self.caller = caller
        self.held: list[tuple[Any, str, Any]] = []  # (client, "row" | "batch", item)
        self.closed = False
        self.limit = limit
        self._lock = threading.Lock()

    def hold(self, client: Any, kind: str, item: Any) -> bool:
        """Keep the item until the request ends; False when the request is over (a
        background task logging after the answer) or holds too much already."""
        with self._lock:
            if self.closed or len(self.held) >= self.limit:
                return False
            self.held.append((client, kind, item))
            return True

    def finish(self) -> list[tuple[Any, str, Any]]:
        """Close the request and take what it held."""
        with self._lock:
            self.closed = True
            held, self.held = self.held, []
            return held


#: The request the current task or thread is serving, if a middleware opened one.
current: ContextVar[Request | None] = ContextVar("watchkeeper_request", default=None)
