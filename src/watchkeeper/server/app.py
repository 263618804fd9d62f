"""The HTTP API: ingest events and labels, deploy suites, query windows and findings,
health and Prometheus metrics. OpenAPI at /docs and /openapi.json."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from importlib import metadata as _metadata
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from watchkeeper.alerts import AlertManager, Incident
from watchkeeper.alerts.advice import incident_view
from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import DataError, RequestError, StoreError, SuiteError
from watchkeeper.server.auth import LoginLimiter, Tokens, bearer
from watchkeeper.server.dashboard import add_dashboard
from watchkeeper.server.hub import Hub
from watchkeeper.server.ingest import (
    MAX_BODY,
    MAX_COLUMNS,
    RETRY_AFTER,
    IngestBudget,
    check_batch,
    idempotency_key,
    parse_body,
)
from watchkeeper.server.metrics import HubCollector
from watchkeeper.server.privacy import Privacy
from watchkeeper.store import Store
from watchkeeper.store.sessions import session_access
from watchkeeper.suite import file as suitefile
from watchkeeper.suite.core import Suite
from watchkeeper.suite.diff import diff
from watchkeeper.wire import RESERVED

log = logging.getLogger("watchkeeper.server")
#: A suite version in a path: what the store's column holds (beyond it, 422 rather than a
#: driver's overflow)
SuiteNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]
#: The Idempotency-Key header of ingest requests (checked by ``ingest.idempotency_key``).
KEY_HEADER = Header(None, alias="Idempotency-Key", description=(
    "One key per batch (e.g. a UUID; 1 to 255 printable ASCII characters, no spaces), the "
    "same on every retry: a batch sent again with its key is answered again "
    '("duplicate": true) and stored once.'))


def load_suite(text: str) -> Suite:
    return Suite.from_dict(suitefile.parse(text, "suite"))


def create_app(
    store_url: str = "sqlite:///watchkeeper.db",
    *,
    tokens: Tokens | None = None,
    window: timedelta = timedelta(minutes=5),
    grace: timedelta = timedelta(minutes=1),
    retention: timedelta = timedelta(days=7),
    suites: dict[str, str] | None = None,
    notifiers: list[Any] | None = None,
    lease_ttl: float | None = 15.0,
    fold_bytes: int = 64 * 2**20,
    ingest_bytes: int = 256 * 2**20,
    login_failures: int = 5,
    login_window: float = 60.0,
    show_clients: bool = False,
    metrics_open: bool = False,
    body_timeout: float = 10.0,
    max_columns: int = MAX_COLUMNS,
) -> FastAPI:
    """Build the app. ``suites`` maps model → suite YAML to deploy at start when that model
    has no active suite yet (``watchkeeper serve --suite``). Several servers may share a
    store: the one holding the fold lease (``lease_ttl`` seconds, renewed every third of
    that) folds the event log; None folds without a lease (this process must be alone).

    At most ``ingest_bytes`` of request bodies are ingested at once, taken as their bytes
    arrive (a request that runs out of it is answered 503 with Retry-After; a body larger
    than that, 413); a body that stops arriving for ``body_timeout`` seconds is answered
    408, one cut short 400. A batch with more than ``max_columns`` columns besides its
    suite's and the reserved ones is refused (422) before its table is built. After
    ``login_failures`` failed dashboard logins or wrong bearer tokens within
    ``login_window`` seconds, a client address is answered 429 until the window has passed
    (0: no limit). Personal data outside the suite is scrubbed before storage and client
    ids pseudonymised unless ``show_clients`` (privacy.py); /metrics needs a token unless
    ``metrics_open``."""
    tokens = tokens or Tokens()
    budget = IngestBudget(ingest_bytes)
    max_body = min(MAX_BODY, ingest_bytes)  # a body that can never fit is too large
    limiter = LoginLimiter(login_failures, login_window)
    store = Store(store_url)
    hub = Hub(store, window=window, grace=grace, retention=retention,
              dispatcher=Dispatcher(notifiers) if notifiers else None,
              lease_ttl=lease_ttl, fold_bytes=fold_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for model, text in (suites or {}).items():
            if store.active_suite(model) is None:
                hub.register(model, text, created_by="serve --suite")
        hub.start()
        yield
        hub.stop()
        store.close()

    app = FastAPI(title="watchkeeper", version=_metadata.version("watchkeeper"), lifespan=lifespan)
    app.state.hub = hub
    privacy = Privacy(hub, show_clients=show_clients)

    def session(cookie: str) -> str | None:
        return session_access(store, cookie, {"read": tokens.read, "write": tokens.write})
    registry = CollectorRegistry(auto_describe=True)
    registry.register(HubCollector(hub, budget=budget, limiter=limiter))

    def require(request: Request, need: str) -> None:
        """A bearer token, or the dashboard's session cookie (auth.py); an address that sent
        too many wrong tokens lately is answered 429 whatever its token."""
        address = request.client.host if request.client else None
        header = request.headers.get("authorization")
        if tokens.enabled and bearer(header) is not None:
            wait = limiter.retry_after(address)
            if wait > 0:
                hub.counters["rejected_auth_limited"] += 1
                seconds = str(max(1, math.ceil(wait)))
                raise HTTPException(429, f"too many wrong tokens from your address: try "
                                    f"again in {seconds} s", headers={"Retry-After": seconds})
            if tokens.is_guess(header):
                limiter.failed(address)
        status, reason = tokens.check_request(request.headers, request.cookies,
                                              request.method, need, session)
        if status == 401:
            raise HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})
        if status == 403:
            model = request.path_params.get("model")
            if model in hub.models:
                hub.reject(model, "auth")
            else:
                hub.counters["rejected_auth"] += 1
            raise HTTPException(403, reason)

    def too_large() -> HTTPException:
        hub.counters["rejected_too_large"] += 1
        return HTTPException(413, f"body over {max_body} bytes: send smaller batches")

    def busy() -> HTTPException:
        hub.counters["rejected_busy"] += 1
        return HTTPException(
            503, f"the server is ingesting as many request bodies as it may at once "
            f"({budget.limit} bytes): nothing of this batch was stored, send it again in "
            f"{RETRY_AFTER} s", headers={"Retry-After": str(RETRY_AFTER)})

    def declared_size(request: Request) -> int | None:
        """The body's Content-Length (None without one: a chunked body); 413 past the
        largest body accepted."""
        text = request.headers.get("content-length")
        if text is None:
            return None
        try:
            size = int(text)
        except ValueError:
            raise HTTPException(400, "Content-Length is not a number") from None
        if size > max_body:
            raise too_large()
        return size

    async def body_of(request: Request,
                      taking: Callable[[int], None] | None = None) -> bytes:
        """The body, cut off past the largest accepted (a chunked body has no declared
        size); ``taking`` is told each chunk's size before it is kept. A body that stops
        arriving for ``body_timeout`` seconds is answered 408, one shorter than its
        Content-Length 400 (each logged in one line)."""
        declared = declared_size(request)
        chunks, size = [], 0
        stream = request.stream()
        while True:
            try:
                chunk = await asyncio.wait_for(anext(stream), body_timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise cut_short(request, 408, f"no byte of the body for {body_timeout:g} s "
                                f"after {size} bytes") from None
            except ClientDisconnect:
                raise cut_short(request, 400, f"the connection closed after {size} bytes of "
                                "the body") from None
            size += len(chunk)
            if size > max_body:
                raise too_large()
            if taking is not None:
                taking(len(chunk))
            chunks.append(chunk)
        if declared is not None and size != declared:  # (the HTTP parser guards this too)
            raise cut_short(request, 400, f"{size} bytes of body, not {declared}")
        return b"".join(chunks)

    def cut_short(request: Request, status: int, what: str) -> HTTPException:
        """A body that did not arrive whole: counted, logged in one line, nothing stored."""
        hub.counters["rejected_incomplete"] += 1
        client = request.client.host if request.client else "?"
        log.warning("%s %s from %s: %s; answered %d, nothing stored", request.method,
                    request.url.path, client, what, status)
        return HTTPException(status, f"incomplete request body: {what}; nothing of it was "
                             "stored, send it again", headers={"Connection": "close"})

    def width_limit(model: str) -> int:
        """Columns a batch of the model may have: those of its widest suite version in
        service, the reserved ones, and ``max_columns`` others."""
        widest = max(len(g.live.suite.schema.columns) for g in hub.models[model].generations)
        return widest + len(RESERVED) + max_columns

    def label_columns(model: str) -> list[str]:
        """The id and target columns labels need, of every suite version in service that
        joins labels."""
        out = []
        for g in hub.models[model].generations:
            task = g.live.suite.schema.task
            if task is not None and task.id is not None and task.target is not None:
                out += [task.id, task.target]
        return out

    async def ingest(model: str, request: Request, kind: str,
                     key_header: str | None) -> dict[str, Any]:
        require(request, "write")
        if model not in hub.models:
            raise HTTPException(404, f"no suite deployed for model {model!r}")
        try:
            key = idempotency_key(key_header)
        except RequestError as exc:
            hub.reject(model, "invalid")
            raise HTTPException(400, str(exc)) from None
        held = 0  # bytes of the ingest budget this request holds, given back once answered

        def take(size: int) -> None:  # as the bytes arrive: a stalled client holds few
            nonlocal held
            if not budget.take(size):
                raise busy()
            held += size

        try:
            body = await body_of(request, take)
            return await parse_and_append(model, request, kind, body, key)
        finally:
            budget.give(held)

    async def parse_and_append(model: str, request: Request, kind: str, body: bytes,
                               key: str | None) -> dict[str, Any]:
        def parse() -> Any:
            table = parse_body(body, request.headers.get("content-type", ""),
                               width_limit(model))
            check_batch(table, kind, label_columns(model))
            return table

        try:
            table = await run_in_threadpool(parse)
        except DataError as exc:
            hub.reject(model, "invalid")
            raise HTTPException(422, str(exc)) from None
        if table.num_rows == 0:
            hub.reject(model, "invalid")
            raise HTTPException(422, "empty batch: no rows")
        source = request.headers.get("x-watchkeeper-source")
        if source:  # what the SDK had to drop so far, shown in /metrics
            with suppress(ValueError):  # a malformed count is ignored, the batch is not
                hub.sdk_dropped.setdefault(model, {})[source[:64]] = int(
                    request.headers.get("x-watchkeeper-dropped", "0"))
        try:  # acknowledged only once the batch is committed to the store
            table = await run_in_threadpool(privacy.scrub, model, table)
            done = await run_in_threadpool(hub.append, model, table, kind, key)
        except StoreError as exc:
            raise HTTPException(503, f"store unavailable: {exc}") from None
        if not done.duplicate:
            return {"accepted": done.rows, "seq": done.seq}
        if (done.kind, done.rows) != (kind, table.num_rows):
            hub.reject(model, "invalid")
            raise HTTPException(422, f"Idempotency-Key {key!r} was used for another batch "
                                f"({done.rows} rows of {done.kind}, seq {done.seq}): use a "
                                "new key for each batch")
        return {"accepted": done.rows, "seq": done.seq, "duplicate": True}

    @app.post("/v1/models/{model}/events")
    async def post_events(model: str, request: Request,
                          idempotency_key: str | None = KEY_HEADER) -> dict[str, Any]:
        """Prediction events: JSON rows or columns, NDJSON, or an Arrow IPC stream. Columns:
        the model's features and outputs, plus optional _ts, _latency_ms, _client, _error."""
        return await ingest(model, request, "events", idempotency_key)

    @app.post("/v1/models/{model}/labels")
    async def post_labels(model: str, request: Request,
                          idempotency_key: str | None = KEY_HEADER) -> dict[str, Any]:
        """Labels that arrived later: the suite's id and target columns."""
        return await ingest(model, request, "labels", idempotency_key)

    @app.post("/v1/models/{model}/suites")
    async def deploy(model: str, request: Request, note: str | None = None,
                     created_by: str | None = None) -> dict[str, Any]:
        """Register a suite (YAML body) as the model's new active version, in service from
        the next window. An invalid suite is refused (422, naming the field) and the active
        version stays. The answer says what changed against the previous version."""
        require(request, "write")
        text = (await body_of(request)).decode("utf-8", errors="replace")

        def register() -> dict[str, Any]:
            previous = store.active_suite(model)
            version = hub.register(model, text, created_by=created_by, note=note)
            out: dict[str, Any] = {"model": model, "version": version,
                                   "previous": previous.version if previous else None}
            if previous is not None:
                change = diff(load_suite(previous.text), load_suite(text))
                out["diff"], out["summary"] = change.to_dict(), change.to_text()
            return out

        try:
            return await run_in_threadpool(register)
        except SuiteError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/v1/models/{model}/suites")
    def suite_versions(model: str, request: Request) -> dict[str, Any]:
        require(request, "read")
        return {"model": model, "versions": [
            {"version": v.version, "hash": v.hash, "created_at": v.created_at.isoformat(),
             "created_by": v.created_by, "note": v.note, "active": v.active}
            for v in store.suite_versions(model)]}

    @app.get("/v1/models/{model}/suites/{version}")
    def suite_text(model: str, version: SuiteNumber, request: Request) -> Response:
        require(request, "read")
        try:
            found = store.suite_version(model, version)
        except StoreError as exc:
            raise HTTPException(404, str(exc)) from None
        return PlainTextResponse(found.text, media_type="application/yaml")

    @app.post("/v1/models/{model}/suites/{version}/activate")
    async def activate(model: str, version: SuiteNumber, request: Request) -> dict[str, Any]:
        """Roll back (or forward) to a stored version, from the next window on."""
        require(request, "write")
        try:
            await run_in_threadpool(hub.rollback, model, version)
        except StoreError as exc:
            raise HTTPException(404, str(exc)) from None
        return {"model": model, "version": version, "active": True}

    @app.get("/v1/models")
    def list_models(request: Request) -> dict[str, Any]:
        require(request, "read")
        return {"models": sorted(hub.models)}

    @app.get("/v1/models/{model}/windows")
    def windows(model: str, request: Request, since: datetime | None = None,
                until: datetime | None = None) -> dict[str, Any]:
        require(request, "read")
        records = store.load_windows(model, since=since, until=until)
        return {"model": model, "windows": [
            {"start": r.start.isoformat(), "end": r.end.isoformat(), "rows": r.rows,
             "state": r.state, "suite_version": r.suite_version, "metrics": r.metrics}
            for r in records]}

    @app.get("/v1/models/{model}/quarantine")
    def quarantine(model: str, request: Request) -> dict[str, Any]:
        """The model's batches the fold set aside after failing on them (kept in the store,
        not folded): when each arrived and was set aside, its rows and why."""
        require(request, "read")
        return {"model": model, "batches": [
            {"seq": e.seq, "kind": e.kind, "rows": e.rows, "bytes": len(e.payload),
             "received_at": e.received_at.isoformat(),
             "quarantined_at": e.quarantined_at.isoformat() if e.quarantined_at else None,
             "error": e.error}
            for e in store.quarantined_events(model)]}

    @app.get("/v1/models/{model}/findings")
    def findings(model: str, request: Request, since: datetime | None = None,
                 until: datetime | None = None,
                 min_severity: Literal["info", "warning", "critical"] | None = None
                 ) -> dict[str, Any]:
        require(request, "read")
        found = store.findings(model, since=since, until=until, min_severity=min_severity)
        for f in found:
            f["window_start"] = f["window_start"].isoformat()
        return {"model": model, "findings": found}

    def manager(model: str) -> AlertManager:
        state = hub.models.get(model)
        if state is None or state.alerts is None:
            raise HTTPException(404, f"no suite deployed for model {model!r}")
        return state.alerts

    def view(model: str, incident: Incident) -> dict[str, Any]:
        suite = hub.models[model].generations[-1].live.suite
        return incident_view(incident, suite.importance)

    @app.get("/v1/models/{model}/incidents")
    def incidents(model: str, request: Request, status: str | None = None) -> dict[str, Any]:
        """Incidents, newest first, each with its diagnosis and recommended actions."""
        require(request, "read")
        with hub._lock:
            found = [view(model, i) for i in manager(model).incidents.values()
                     if status is None or (status == "open") == i.is_open]
        return {"model": model, "incidents": sorted(found, key=lambda i: i["opened_at"],
                                                   reverse=True)}

    @app.get("/v1/models/{model}/incidents/{incident_id}")
    def incident(model: str, incident_id: str, request: Request) -> dict[str, Any]:
        require(request, "read")
        with hub._lock:
            found = manager(model).incidents.get(incident_id)
            if found is None:
                raise HTTPException(404, f"no incident {incident_id!r}")
            return view(model, found)

    @app.post("/v1/models/{model}/incidents/{incident_id}/ack")
    def acknowledge(model: str, incident_id: str, request: Request,
                    by: str | None = None) -> dict[str, Any]:
        require(request, "write")
        with hub._lock:
            manager(model)
            try:  # saved in the store before it is answered
                return hub.acknowledge(model, incident_id, by).to_dict()
            except KeyError:
                raise HTTPException(404, f"no incident {incident_id!r}") from None

    @app.get("/v1/models/{model}/silences")
    def silences(model: str, request: Request) -> dict[str, Any]:
        """Silences in force (or yet to start), by when they end."""
        require(request, "read")
        with hub._lock:
            found = [s.to_dict() for s in sorted(manager(model).silences,
                                                 key=lambda s: (s.until, s.id))]
        return {"model": model, "silences": found}

    @app.post("/v1/models/{model}/silences")
    async def silence(model: str, request: Request) -> dict[str, Any]:
        """Body: {"matchers": {"column": "SCHL", "monitor": "=~.*drift"}, "hours": 2,
        "comment": "..."}; silenced alerts are tracked but not notified until it expires."""
        require(request, "write")
        try:
            body = json.loads(await request.body() or b"{}")
            until = datetime.now(UTC) + timedelta(hours=float(body.get("hours", 2)))
            with hub._lock:
                manager(model)
                made = hub.silence(model, dict(body["matchers"]), until,
                                   created_by=body.get("created_by"),
                                   comment=body.get("comment"))
        except (ValueError, KeyError, TypeError) as exc:
            raise HTTPException(422, f"bad silence: {exc}") from None
        return made.to_dict()

    @app.delete("/v1/models/{model}/silences/{silence_id}")
    def unsilence(model: str, silence_id: str, request: Request) -> dict[str, Any]:
        """End a silence now; the alerts it hid are notified again at the next window."""
        require(request, "write")
        with hub._lock:
            manager(model)
            try:
                return hub.unsilence(model, silence_id).to_dict()
            except KeyError:
                raise HTTPException(404, f"no silence {silence_id!r}") from None

    @app.get("/healthz")
    def health() -> dict[str, Any]:
        """``folding``: this server folds the event log and is caught up (every model
        rebuilt after a start or takeover, no batch waiting over 5 s); ``leader``: it holds
        the fold lease; ``lag_seconds`` and ``backlog_batches``: what is not folded yet."""
        return {"status": "ok", "models": len(hub.models),
                "fold_errors": hub.counters["fold_errors"], **hub.health()}

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        """Prometheus exposition; needs the metrics, read or write token unless the server
        runs with ``--metrics-open``."""
        if not metrics_open:
            require(request, "metrics")
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    add_dashboard(app, hub, tokens, limiter, session)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    return app
