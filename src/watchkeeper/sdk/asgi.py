"""Service events from any ASGI app (FastAPI, Starlette, …) without importing either, and a
lifespan that flushes the client when the app stops."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from watchkeeper.sdk import context
from watchkeeper.sdk.client import Client, release_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["DEFAULT_EXCLUDE", "ASGIMiddleware", "lifespan"]

_perf = time.perf_counter

#: Path prefixes that are not the model's: documentation, health probes, metrics, assets.
DEFAULT_EXCLUDE = ("/docs", "/redoc", "/openapi.json", "/health", "/healthz", "/livez",
                   "/readyz", "/ready", "/live", "/ping", "/metrics", "/favicon.ico",
                   "/static")


class ASGIMiddleware:
    """Gives the prediction rows logged while a request runs its caller, latency and error,
    so per-client security monitors and the service monitors work with no other code.

    The caller is the ``client_header`` header, else the peer address; the latency runs
    until the app returns (streamed body included); the error is a 5xx answer or an
    exception (re-raised unchanged). Rows logged with ``client.log()``, ``log_batch()`` or
    ``timed`` during the request (in its task, or a thread run with its context, as FastAPI
    runs sync endpoints) wait for its end and take these values where they have none; a
    request that logged no row is logged as a service event of its own (no features).

    Watched: HTTP requests whose path starts with one of ``include`` (every path by
    default) and with none of ``exclude`` (by default :data:`DEFAULT_EXCLUDE`: docs, health
    probes, metrics, static files); ``prefix=`` is ``include=(prefix,)``. When the server
    shuts the app down (ASGI lifespan), the client is flushed first. Anything that goes
    wrong in the middleware itself is swallowed: it never breaks the app.

    >>> import asyncio
    >>> from watchkeeper.sdk import Client, MemorySink
    >>> sink = MemorySink()
    >>> client = Client(sink)
    >>> async def app(scope, receive, send):
    ...     client.log({"x": 1.0}, 1)    # the model's code, knowing nothing of the caller
    ...     await send({"type": "http.response.start", "status": 200, "headers": []})
    ...     await send({"type": "http.response.body", "body": b"ok"})
    >>> wrapped = ASGIMiddleware(app, client)
    >>> async def call(path):
    ...     async def receive():
    ...         return {"type": "http.request", "body": b""}
    ...     async def send(message):
    ...         pass
    ...     scope = {"type": "http", "path": path, "headers": [(b"x-client-id", b"team-a")],
    ...              "client": ("10.0.0.7", 5123)}
    ...     await wrapped(scope, receive, send)
    >>> asyncio.run(call("/predict")); asyncio.run(call("/healthz"))
    >>> client.close()
    >>> sink.events_table().select(["x", "_client", "_error"]).to_pylist()
    [{'x': 1.0, '_client': 'team-a', '_error': False},
     {'x': 1.0, '_client': None, '_error': None}]
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Client,
        *,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = DEFAULT_EXCLUDE,
        prefix: str | None = None,
        client_header: str | None = "x-client-id",
    ) -> None:
        self.app = app
        self.client = client
        if prefix is not None:
            include = (prefix,)
        self.include = None if include is None else tuple(include)
        self.exclude = tuple(exclude or ())
        self.header = client_header.lower().encode("latin-1") if client_header else None

    def watches(self, path: str) -> bool:
        """Whether requests to ``path`` are recorded.

        >>> m = ASGIMiddleware(None, None, exclude=("/health",))
        >>> m.watches("/predict"), m.watches("/healthz")
        (True, False)
        """
        if self.include is not None and not path.startswith(self.include):
            return False
        return not (self.exclude and path.startswith(self.exclude))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "lifespan":
            await self.app(scope, receive, self._flush_before_shutdown(send))
            return
        try:
            watched = scope.get("type") == "http" and self.watches(str(scope.get("path", "")))
        except Exception:
            watched = False
        if not watched:
            await self.app(scope, receive, send)
            return
        start = _perf()
        status: list[int] = []
        request = context.Request(None)
        token = context.current.set(request)

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
            self._record(scope, request, start, True)
            raise
        finally:
            with contextlib.suppress(Exception):
                context.current.reset(token)
        self._record(scope, request, start, not status or status[0] >= 500)

    def _flush_before_shutdown(self, send: Send) -> Send:
        """``send`` for the lifespan protocol that flushes the client (within its
        ``shutdown_timeout``) before the app reports its shutdown done: the server has
        drained its requests then, and may end the process right after."""

        async def send_after_flush(message: Message) -> None:
            if str(message.get("type", "")).startswith("lifespan.shutdown."):
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.client.flush, self.client.shutdown_timeout)
            await send(message)

        return send_after_flush

    def _record(self, scope: Scope, request: context.Request, start: float,
                error: bool) -> None:
        try:
            latency_ms = (_perf() - start) * 1e3
            caller = self._caller(scope)
            if request.held:
                release_request(request, caller, latency_ms, error)
            else:
                request.finish()
                self.client.log(None, None, latency_ms=latency_ms, client=caller, error=error)
        except Exception:
            pass

    def _caller(self, scope: Scope) -> str | None:
        if self.header is not None:
            for name, value in scope.get("headers") or ():
                if name.lower() == self.header:
                    return bytes(value).decode("latin-1")
        peer = scope.get("client")
        return str(peer[0]) if peer else None


def lifespan(client: Client, app_lifespan: Callable[[Any], Any] | None = None,
             timeout: float | None = None) -> Callable[[Any], Any]:
    """A FastAPI/Starlette ``lifespan`` that closes (flushes) ``client`` when the app
    stops, within ``timeout`` seconds (the client's ``shutdown_timeout`` by default), around
    the app's own lifespan if given. The SDK also flushes on SIGTERM and at exit by itself;
    this makes the flush part of the server's own graceful shutdown.

    >>> from watchkeeper.sdk import Client, MemorySink
    >>> wk = Client(MemorySink())
    >>> wk.log({"x": 1.0}, 1)
    >>> async def serve():
    ...     async with lifespan(wk)(app=None):
    ...         pass
    >>> asyncio.run(serve())
    >>> wk.stats["flushed_rows"]
    1
    """

    @contextlib.asynccontextmanager
    async def manage(app: Any) -> AsyncIterator[Any]:
        try:
            if app_lifespan is None:
                yield None
            else:
                async with app_lifespan(app) as state:
                    yield state
        finally:
            await asyncio.to_thread(client.close, timeout)

    return manage
