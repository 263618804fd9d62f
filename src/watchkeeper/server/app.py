"""The HTTP API: ingest events and labels, deploy suites, query windows and findings,
health and Prometheus metrics (routes/, one router per concern); the dashboard
(dashboard.py). OpenAPI at /docs and /openapi.json.

Errors are raised as ``watchkeeper.errors`` classes wherever they happen and answered by
one handler here: ``{"detail": ...}`` with the class's ``http_status`` (and headers such as
Retry-After)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib import metadata as _metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry

from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import WatchkeeperError
from watchkeeper.server.auth import LoginLimiter, Tokens
from watchkeeper.server.dashboard import add_dashboard
from watchkeeper.server.hub import Hub
from watchkeeper.server.ingest import MAX_BODY, MAX_COLUMNS, IngestBudget
from watchkeeper.server.metrics import HubCollector
from watchkeeper.server.otel import MetricsPusher
from watchkeeper.server.privacy import Privacy
from watchkeeper.server.routes import ROUTERS
from watchkeeper.server.routes.deps import Server
from watchkeeper.store import Store

log = logging.getLogger("watchkeeper.server")


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
    own_log: bool = False,
    fold_bytes: int = 64 * 2**20,
    ingest_bytes: int = 256 * 2**20,
    login_failures: int = 5,
    login_window: float = 60.0,
    show_clients: bool = False,
    metrics_open: bool = False,
    body_timeout: float = 10.0,
    max_columns: int = MAX_COLUMNS,
    exporter: Any = None,
    export_interval: float = 60.0,
) -> FastAPI:
    """Build the app. ``suites`` maps model → suite YAML to deploy at start when that model
    has no active suite yet (``watchkeeper serve --suite``). Several servers may share a
    store: the one holding the fold lease (``lease_ttl`` seconds, renewed every third of
    that) folds the event log; None folds without a lease (this process must be alone).
    ``own_log`` (SQLite files): ingested batches go to an event-log file of this server's
    own, copied into the store by the folding server (store/logs.py).

    At most ``ingest_bytes`` of request bodies are ingested at once, taken as their bytes
    arrive (a request that runs out of it is answered 503 with Retry-After; a body larger
    than that, 413); a body that stops arriving for ``body_timeout`` seconds is answered
    408, one cut short 400. A batch with more than ``max_columns`` columns besides its
    suite's and the reserved ones is refused (422) before its table is built. After
    ``login_failures`` failed dashboard logins or wrong bearer tokens within
    ``login_window`` seconds, a client address is answered 429 until the window has passed
    (0: no limit). Personal data outside the suite is scrubbed before storage and client
    ids pseudonymised unless ``show_clients`` (privacy.py); /metrics needs a token unless
    ``metrics_open``. ``exporter`` (``run.otlp.OtlpExporter``) is given each judged
    window and incident transition, and every ``export_interval`` seconds the metrics of
    /metrics (otel.py); it is closed when the app stops."""
    tokens = tokens or Tokens()
    budget = IngestBudget(ingest_bytes)
    limiter = LoginLimiter(login_failures, login_window)
    store = Store(store_url)
    hub = Hub(store, window=window, grace=grace, retention=retention,
              dispatcher=Dispatcher(notifiers) if notifiers else None,
              lease_ttl=lease_ttl, own_log=own_log, fold_bytes=fold_bytes,
              exporter=exporter)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(HubCollector(hub, budget=budget, limiter=limiter))
    server = Server(hub=hub, store=store, tokens=tokens, limiter=limiter, budget=budget,
                    privacy=Privacy(hub, show_clients=show_clients), registry=registry,
                    max_body=min(MAX_BODY, ingest_bytes),  # one that can never fit: too large
                    body_timeout=body_timeout, max_columns=max_columns,
                    metrics_open=metrics_open)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for model, text in (suites or {}).items():
            if store.active_suite(model) is None:
                hub.register(model, text, created_by="serve --suite")
        hub.start()
        pusher = None if exporter is None else MetricsPusher(registry, exporter,
                                                              export_interval)
        if pusher is not None:
            pusher.start()
        yield
        hub.stop()
        if pusher is not None:
            pusher.stop()
        store.close()
        if exporter is not None:
            exporter.close(timeout=5.0)

    app = FastAPI(title="watchkeeper", version=_metadata.version("watchkeeper"), lifespan=lifespan)
    app.state.server = server
    app.state.hub = hub
    for router in ROUTERS:
        app.include_router(router)
    add_dashboard(app, hub, tokens, limiter, server.session)
    app.add_exception_handler(WatchkeeperError, answer_error)
    return app


async def answer_error(request: Request, exc: Exception) -> Response:
    """A WatchkeeperError as its class says: ``{"detail": ...}`` with its ``http_status``
    and headers. One with status 500 is a fault of the server, not of the request: logged
    with its traceback, answered without its message."""
    if not isinstance(exc, WatchkeeperError):  # (registered for these only)
        raise exc
    if exc.http_status == 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return PlainTextResponse("Internal Server Error", status_code=500)
    return JSONResponse({"detail": exc.detail}, status_code=exc.http_status,
                        headers=dict(exc.headers) if exc.headers else None)
