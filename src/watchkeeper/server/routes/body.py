"""Reading a request body within the server's limits: its size (Content-Length, and what
arrives), a body that stops arriving, and the ingest budget it is taken from."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import Request
from starlette.requests import ClientDisconnect

from watchkeeper.errors import BodyTooLarge, RequestError, RequestTimeout, ServerBusy
from watchkeeper.server.ingest import RETRY_AFTER
from watchkeeper.server.routes.deps import Server

log = logging.getLogger("watchkeeper.server")


def too_large(server: Server) -> BodyTooLarge:
    server.hub.counters["rejected_too_large"] += 1
    return BodyTooLarge(f"body over {server.max_body} bytes: send smaller batches")


def busy(server: Server) -> ServerBusy:
    server.hub.counters["rejected_busy"] += 1
    return ServerBusy(
        f"the server is ingesting as many request bodies as it may at once "
        f"({server.budget.limit} bytes): nothing of this batch was stored, send it again in "
        f"{RETRY_AFTER} s", RETRY_AFTER)


def declared_size(server: Server, request: Request) -> int | None:
    """The body's Content-Length (None without one: a chunked body); 413 past the largest
    body accepted."""
    text = request.headers.get("content-length")
    if text is None:
        return None
    try:
        size = int(text)
    except ValueError:
        raise RequestError("Content-Length is not a number") from None
    if size > server.max_body:
        raise too_large(server)
    return size


async def read_body(server: Server, request: Request,
                    taking: Callable[[int], None] | None = None) -> bytes:
    """The body, cut off past the largest accepted (a chunked body has no declared size);
    ``taking`` is told each chunk's size before it is kept. A body that stops arriving for
    ``body_timeout`` seconds is answered 408, one shorter than its Content-Length 400 (each
    logged in one line)."""
    declared = declared_size(server, request)
    chunks, size = [], 0
    stream = request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(anext(stream), server.body_timeout)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise cut_short(server, request, RequestTimeout,
                            f"no byte of the body for {server.body_timeout:g} s after "
                            f"{size} bytes") from None
        except ClientDisconnect:
            raise cut_short(server, request, RequestError,
                            f"the connection closed after {size} bytes of the body") from None
        size += len(chunk)
        if size > server.max_body:
            raise too_large(server)
        if taking is not None:
            taking(len(chunk))
        chunks.append(chunk)
    if declared is not None and size != declared:  # (the HTTP parser guards this too)
        raise cut_short(server, request, RequestError, f"{size} bytes of body, not {declared}")
    return b"".join(chunks)


def cut_short(server: Server, request: Request, error: type[RequestError],
              what: str) -> RequestError:
    """A body that did not arrive whole: counted, logged in one line, nothing stored."""
    server.hub.counters["rejected_incomplete"] += 1
    client = request.client.host if request.client else "?"
    log.warning("%s %s from %s: %s; answered %d, nothing stored", request.method,
                request.url.path, client, what, error.http_status)
    return error(f"incomplete request body: {what}; nothing of it was stored, send it again",
                 headers={"Connection": "close"})
