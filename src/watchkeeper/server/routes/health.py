"""Operations: /healthz for load balancers and orchestrators, /metrics for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from watchkeeper.server.routes.deps import AUTH_ERRORS, ServerDep, as_json, authorize_metrics

router = APIRouter(tags=["operations"])


class BackfillProgress(BaseModel):
    through: int = Field(description="Last batch (seq) whose records are rebuilt")
    done: int = Field(description="Batches up to this seq are done")
    batches_left: int = Field(description="Batches of the event log still to read for it")


class Health(BaseModel):
    status: str = Field(description='"ok" while the server answers')
    models: int = Field(description="Models with a suite in service")
    fold_errors: int
    leader: bool = Field(description="This server holds the fold lease")
    loading: list[str] = Field(description="Models still being rebuilt")
    folding: bool = Field(description=(
        "This server folds the event log and is caught up (every model rebuilt after a "
        "start or takeover, no backfill running, no batch waiting over 5 s)"))
    lag_seconds: float | None = Field(description=(
        "Age of the oldest batch not folded yet (0 with none; null if the store cannot be "
        "read)"))
    backlog_batches: int | None = Field(description="Batches not folded yet")
    backfill: dict[str, BackfillProgress] | None = Field(default=None, description=(
        "Models whose prediction records of batches folded before a store upgrade are "
        "being rebuilt from the event log (their fold waits until it is done), with its "
        "progress; empty with none"))
    store: str | None = Field(default=None, description="Why the store cannot be read (absent "
                              "while it can)")


@router.get("/healthz", response_model=Health, response_model_exclude_unset=True)
def health(server: ServerDep) -> dict[str, object]:
    """``folding``: this server folds the event log and is caught up (every model rebuilt
    after a start or takeover, no backfill running, no batch waiting over 5 s); ``leader``:
    it holds the fold lease; ``lag_seconds`` and ``backlog_batches``: what is not folded
    yet; ``backfill``: prediction records being rebuilt after an upgrade, per model."""
    hub = server.hub
    return {"status": "ok", "models": len(hub.models),
            "fold_errors": hub.counters["fold_errors"], **hub.health()}


@router.get("/metrics", response_class=PlainTextResponse,
            dependencies=[Depends(authorize_metrics)], responses={
                **as_json(AUTH_ERRORS), 200: {"content": {CONTENT_TYPE_LATEST: {}},
                                              "description": "Prometheus text exposition"}})
def metrics(server: ServerDep) -> Response:
    """Prometheus exposition; needs the metrics, read or write token unless the server runs
    with ``--metrics-open``."""
    return PlainTextResponse(generate_latest(server.registry), media_type=CONTENT_TYPE_LATEST)
