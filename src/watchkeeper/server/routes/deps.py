"""What every route shares: the server's parts (``Server``, found in ``app.state``), the
authentication dependency routers declare, and the answer an error is given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from watchkeeper.errors import Forbidden, TooManyAttempts
from watchkeeper.server.auth import COOKIE, SAFE_METHODS, LoginLimiter, Tokens, authenticate
from watchkeeper.server.hub import Hub
from watchkeeper.server.ingest import IngestBudget
from watchkeeper.server.privacy import Privacy
from watchkeeper.store import Store
from watchkeeper.store.sessions import session_access


@dataclass
class Server:
    """The parts of one server and its limits, built once by ``create_app``."""

    hub: Hub
    store: Store
    tokens: Tokens
    limiter: LoginLimiter
    budget: IngestBudget
    privacy: Privacy
    registry: CollectorRegistry
    #: largest request body accepted, in bytes
    max_body: int
    #: seconds a body may stop arriving before the request is answered 408
    body_timeout: float
    #: columns a batch may have besides its suite's and the reserved ones
    max_columns: int
    #: /metrics needs no token
    metrics_open: bool

    def session(self, cookie: str) -> str | None:
        """What the dashboard's session cookie allows ("read", "write"), or None."""
        return session_access(self.store, cookie, {"read": self.tokens.read,
                                                   "write": self.tokens.write})

    async def require(self, request: Request, need: str) -> None:
        """Raise unless the request may ``need`` (auth.authenticate); a refusal is counted
        (against the model it names, where the security monitors see it).

        Runs in the event loop, as the route's first step (an ingest reads its body at
        once after it): only a session cookie's look-up in the store goes to a thread."""
        session: Callable[[str], str | None] = self.session
        cookie = request.cookies.get(COOKIE)
        if self.tokens.enabled and cookie and not request.headers.get("authorization"):
            access = await run_in_threadpool(self.session, cookie)
            session = lambda _: access  # noqa: E731
        try:
            authenticate(self.tokens, self.limiter,
                         request.client.host if request.client else None, request.headers,
                         request.cookies, request.method, need, session)
        except TooManyAttempts:
            self.hub.counters["rejected_auth_limited"] += 1
            raise
        except Forbidden:
            model = request.path_params.get("model")
            if model in self.hub.models:
                self.hub.reject(model, "auth")
            else:
                self.hub.counters["rejected_auth"] += 1
            raise


async def get_server(request: Request) -> Server:
    """(async, as every dependency here: a sync one would cost a thread hop per request)"""
    server: Server = request.app.state.server
    return server


ServerDep = Annotated[Server, Depends(get_server)]


async def authorize(request: Request, server: ServerDep) -> None:
    """The API routers' dependency: reading (GET, HEAD) needs the read token (or the write
    token, or a session), anything else the write token."""
    await server.require(request, "read" if request.method.upper() in SAFE_METHODS else "write")


async def authorize_metrics(request: Request, server: ServerDep) -> None:
    """/metrics: the metrics, read or write token, unless the server runs with
    ``--metrics-open``."""
    if not server.metrics_open:
        await server.require(request, "metrics")


class Problem(BaseModel):
    """An error's answer: what went wrong, in one line."""

    detail: str


#: The answers of a route behind ``authorize``, besides its own.
AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "No bearer token (nor session cookie)"},
    403: {"model": Problem, "description": "A token or session that may not do this"},
    429: {"model": Problem, "description": "Too many wrong tokens from this address lately "
          "(Retry-After says when to try again)"},
}
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such model, version, incident or silence"},
}


def as_json(responses: dict[int | str, dict[str, object]]) -> dict[int | str, dict[str, object]]:
    """Error answers for a route whose own answer is not JSON (its response_class would
    otherwise be shown as theirs): each model's schema, as JSON."""
    return {code: {"description": r["description"], "content": {"application/json": {
        "schema": Problem.model_json_schema()}}} for code, r in responses.items()}
