"""What the server knows of its models: their names, windows, findings, and the batches the
fold set aside."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from watchkeeper.server.routes.deps import AUTH_ERRORS, ServerDep, authorize

router = APIRouter(tags=["models"], dependencies=[Depends(authorize)], responses=AUTH_ERRORS)


class Models(BaseModel):
    models: list[str] = Field(description="Models with a suite in service, sorted")


class Window(BaseModel):
    start: str
    end: str
    rows: int
    state: str = Field(description='"open" or "closed"')
    suite_version: int | None
    metrics: dict[str, Any] = Field(description="What each monitor measured")


class Windows(BaseModel):
    model: str
    windows: list[Window]


class QuarantinedBatch(BaseModel):
    seq: int
    kind: str = Field(description='"events" or "labels"')
    rows: int
    bytes: int
    received_at: str
    quarantined_at: str | None
    error: str | None = Field(description="Why the fold set it aside")


class Quarantine(BaseModel):
    model: str
    batches: list[QuarantinedBatch]


class StoredFinding(BaseModel):
    """What one monitor found in one window (as the check's JSON result writes it)."""

    monitor: str
    family: str
    column: str | None
    value: int | float | None = Field(description="None for NaN or ±inf")
    threshold: int | float | None
    severity: str = Field(description='"info", "warning" or "critical"')
    message: str
    evidence: dict[str, Any]
    window: str | None
    metric: str | None
    segment: str | None
    window_start: str


class Findings(BaseModel):
    model: str
    findings: list[StoredFinding]


@router.get("/v1/models")
def list_models(server: ServerDep) -> Models:
    return Models(models=sorted(server.hub.models))


@router.get("/v1/models/{model}/windows")
def windows(model: str, server: ServerDep, since: datetime | None = None,
            until: datetime | None = None) -> Windows:
    records = server.store.load_windows(model, since=since, until=until)
    return Windows(model=model, windows=[
        Window(start=r.start.isoformat(), end=r.end.isoformat(), rows=r.rows, state=r.state,
               suite_version=r.suite_version, metrics=r.metrics)
        for r in records])


@router.get("/v1/models/{model}/quarantine")
def quarantine(model: str, server: ServerDep) -> Quarantine:
    """The model's batches the fold set aside after failing on them (kept in the store, not
    folded): when each arrived and was set aside, its rows and why."""
    return Quarantine(model=model, batches=[
        QuarantinedBatch(
            seq=e.seq, kind=e.kind, rows=e.rows, bytes=len(e.payload),
            received_at=e.received_at.isoformat(),
            quarantined_at=e.quarantined_at.isoformat() if e.quarantined_at else None,
            error=e.error)
        for e in server.store.quarantined_events(model)])


@router.get("/v1/models/{model}/findings")
def findings(model: str, server: ServerDep, since: datetime | None = None,
             until: datetime | None = None,
             min_severity: Literal["info", "warning", "critical"] | None = None) -> Findings:
    found = server.store.findings(model, since=since, until=until, min_severity=min_severity)
    for f in found:
        f["window_start"] = f["window_start"].isoformat()
    return Findings(model=model, findings=[StoredFinding(**f) for f in found])
