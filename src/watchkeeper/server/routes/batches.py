"""Ingest: prediction events and late labels, each POST one batch, acknowledged once it is
committed to the store (and once per Idempotency-Key)."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from watchkeeper.baseline.schema import Kind
from watchkeeper.errors import DataError, NotFound, RequestError
from watchkeeper.server.ingest import check_batch, idempotency_key, parse_body
from watchkeeper.server.routes.body import busy, read_body
from watchkeeper.server.routes.deps import (
    AUTH_ERRORS,
    NOT_FOUND,
    Problem,
    Server,
    ServerDep,
    authorize,
)
from watchkeeper.wire import RESERVED

#: The Idempotency-Key header of ingest requests (checked by ``ingest.idempotency_key``).
KEY_HEADER = Header(None, alias="Idempotency-Key", description=(
    "One key per batch (e.g. a UUID; 1 to 255 printable ASCII characters, no spaces), the "
    "same on every retry: a batch sent again with its key is answered again "
    '("duplicate": true) and stored once.'))

router = APIRouter(tags=["ingest"], dependencies=[Depends(authorize)], responses={
    **AUTH_ERRORS, **NOT_FOUND,
    400: {"model": Problem, "description": "A malformed Idempotency-Key or Content-Length, "
          "or a body cut short"},
    408: {"model": Problem, "description": "The body stopped arriving"},
    413: {"model": Problem, "description": "A body over the largest accepted"},
    422: {"model": Problem, "description": "A batch that cannot be read or used"},
    503: {"model": Problem, "description": "The server's ingest budget is spent, or the "
          "store is unavailable: nothing was stored, send it again (Retry-After)"}})


class Accepted(BaseModel):
    """A batch stored (or one stored before, sent again with its Idempotency-Key)."""

    accepted: int = Field(description="Rows of the batch")
    seq: int = Field(description="Its place in the model's event log")
    duplicate: bool | None = Field(default=None, description=(
        "true: the batch was stored before under this Idempotency-Key (absent otherwise)"))


@router.post("/v1/models/{model}/events", response_model_exclude_unset=True)
async def post_events(model: str, request: Request, server: ServerDep,
                      idempotency_key: str | None = KEY_HEADER) -> Accepted:
    """Prediction events: JSON rows or columns, NDJSON, or an Arrow IPC stream. Columns:
    the model's features and outputs, plus optional _ts, _latency_ms, _client, _error."""
    return await ingest(server, model, request, "events", idempotency_key)


@router.post("/v1/models/{model}/labels", response_model_exclude_unset=True)
async def post_labels(model: str, request: Request, server: ServerDep,
                      idempotency_key: str | None = KEY_HEADER) -> Accepted:
    """Labels that arrived later: the suite's id and target columns."""
    return await ingest(server, model, request, "labels", idempotency_key)


async def ingest(server: Server, model: str, request: Request, kind: str,
                 key_header: str | None) -> Accepted:
    hub, budget = server.hub, server.budget
    if model not in hub.models:
        raise NotFound(f"no suite deployed for model {model!r}")
    try:
        key = idempotency_key(key_header)
    except RequestError:
        hub.reject(model, "invalid")
        raise
    held = 0  # bytes of the ingest budget this request holds, given back once answered

    def take(size: int) -> None:  # as the bytes arrive: a stalled client holds few
        nonlocal held
        if not budget.take(size):
            raise busy(server)
        held += size

    try:
        body = await read_body(server, request, take)
        return await parse_and_append(server, model, request, kind, body, key)
    finally:
        budget.give(held)


async def parse_and_append(server: Server, model: str, request: Request, kind: str,
                           body: bytes, key: str | None) -> Accepted:
    hub = server.hub

    def parse() -> Any:
        table = parse_body(body, request.headers.get("content-type", ""),
                           width_limit(server, model))
        check_batch(table, kind, label_columns(server, model), vector_columns(server, model))
        return table

    try:
        table = await run_in_threadpool(parse)
        if table.num_rows == 0:
            raise DataError("empty batch: no rows")
    except DataError:
        hub.reject(model, "invalid")
        raise
    source = request.headers.get("x-watchkeeper-source")
    if source:  # what the SDK had to drop so far, shown in /metrics
        with suppress(ValueError):  # a malformed count is ignored, the batch is not
            hub.sdk_dropped.setdefault(model, {})[source[:64]] = int(
                request.headers.get("x-watchkeeper-dropped", "0"))
    # acknowledged only once the batch is committed to the store (StoreError: 503)
    table = await run_in_threadpool(server.privacy.scrub, model, table)
    done = await run_in_threadpool(hub.append, model, table, kind, key)
    if not done.duplicate:
        return Accepted(accepted=done.rows, seq=done.seq)
    if (done.kind, done.rows) != (kind, table.num_rows):
        hub.reject(model, "invalid")
        raise DataError(f"Idempotency-Key {key!r} was used for another batch ({done.rows} "
                        f"rows of {done.kind}, seq {done.seq}): use a new key for each batch")
    return Accepted(accepted=done.rows, seq=done.seq, duplicate=True)


def width_limit(server: Server, model: str) -> int:
    """Columns a batch of the model may have: those of its widest suite version in service,
    the reserved ones, and ``max_columns`` others."""
    widest = max(len(g.live.suite.schema.columns)
                 for g in server.hub.models[model].generations)
    return widest + len(RESERVED) + server.max_columns


def vector_columns(server: Server, model: str) -> frozenset[str]:
    """The columns that hold one vector a row (embeddings), in any suite version in
    service: a list a row is theirs to take."""
    return frozenset(c.name for g in server.hub.models[model].generations
                     for c in g.live.suite.schema if c.kind == Kind.EMBEDDING and not c.members)


def label_columns(server: Server, model: str) -> list[str]:
    """The id and target columns labels need, of every suite version in service that joins
    labels."""
    out = []
    for g in server.hub.models[model].generations:
        task = g.live.suite.schema.task
        if task is not None and task.id is not None and task.target is not None:
            out += [task.id, task.target]
    return out
