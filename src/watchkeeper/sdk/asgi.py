"""Service events from any ASGI app (FastAPI, Starlette, …) without importing either."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from watchkeeper.sdk.client import Client

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_perf = time.perf_counter


class ASGIMiddleware:
    """Times every HTTP request whose path starts with ``prefix`` and logs it as a service
    event: ``_latency_ms`` (until the app returns, streamed body included), ``_client`` (the
    ``client_header`` header, else the peer address) and ``_error`` (a 5xx answer, or an
    exception, which is re-raised unchanged). No features or prediction: log those with
    ``client.log()`` or use a client of its own for service events. Anything that goes wrong
    in the middleware itself is swallowed: it never breaks the app.

    >>> import asyncio
    >>> from watchkeeper.sdk import Client, MemorySink
    >>> async def app(scope, receive, send):
    ...     await send({"type": "http.response.start", "status": 200, "headers": []})
    ...     await send({"type": "http.response.body", "body": b"ok"})
    >>> sink = MemorySink()
    >>> client = Client(sink)
    >>> wrapped = ASGIMiddleware(app, client, prefix="/predict")
    >>> async def call(path):
    ...     async def receive():
    ...         return {"type": "http.request", "body": b""}
    ...     async def send(message):
    ...         pass
    ...     scope = {"type": "http", "path": path, "headers": [(b"x-client-id", b"team-a")],
    ...              "client": ("10.0.0.7", 5123)}
    ...     await wrapped(scope, receive, send)
    >>> asyncio.run(call("/predict/v1")); asyncio.run(call("/healthz"))
    >>> client.close()
    >>> sink.events_table().select(["_client", "_error"]).to_pylist()
    [{'_client': 'team-a', '_error': False}]
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Client,
        *,
        prefix: str = "/",
        client_header: str | None = "x-client-id",
    ) -> None:
        self.app = app
        self.client = client
        self.prefix = prefix
        self.header = client_header.lower().encode("latin-1") if client_header else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            watched = scope.get("type") == "http" and str(scope.get("path", "")).startswith(
                self.prefix)
        except Exception:
            watched = False
        if not watched:
            await self.app(scope, receive, send)
            return
        start = _perf()
        status: list[int] = []

        async def send_status(message: Message) -> None:
            try:
                if message.get("type") == "http.response.start":
                    status.append(int(message.get("status", 0)))
            except Exception:
                pass
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            self._record(scope, start, True)
            raise
        self._record(scope, start, not status or status[0] >= 500)

    def _record(self, scope: Scope, start: float, error: bool) -> None:
        try:
            latency_ms = (_perf() - start) * 1e3
            self.client.log(None, None, latency_ms=latency_ms, client=self._caller(scope),
                            error=error)
        except Exception:
            pass

    def _caller(self, scope: Scope) -> str | None:
        if self.header is not None:
            for name, value in scope.get("headers") or ():
                if name.lower() == self.header:
                    return bytes(value).decode("latin-1")
        peer = scope.get("client")
        return str(peer[0]) if peer else None
