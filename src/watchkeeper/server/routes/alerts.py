"""Incidents (with their diagnosis and advice) and silences: list, acknowledge, add, end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from watchkeeper.alerts.advice import incident_view, incident_views
from watchkeeper.errors import DataError, NotFound
from watchkeeper.server.hub import AlertView, Hub
from watchkeeper.server.routes.body import read_body
from watchkeeper.server.routes.deps import AUTH_ERRORS, NOT_FOUND, Problem, ServerDep, authorize

router = APIRouter(tags=["alerts"], dependencies=[Depends(authorize)],
                   responses={**AUTH_ERRORS, **NOT_FOUND})


class IncidentState(BaseModel):
    """An incident: a group of related alerts, open until all of them resolve."""

    id: str
    model: str
    title: str
    opened: str = Field(description="The window it opened in")
    opened_at: str
    status: str = Field(description='"open" or "resolved"')
    severity: str
    last_window: str
    resolved: str | None = Field(description="The window it resolved in")
    resolved_at: str | None
    acknowledged: bool
    acknowledged_by: str | None
    notifications: int
    notified_index: int | None
    notified_severity: str | None
    notified_alerts: list[str]
    alerts: list[dict[str, Any]] = Field(description="Its alerts: monitor, column, values, "
                                         "when first and last seen...")


class Cause(BaseModel):
    kind: str = Field(description="column, segment, client or service")
    name: str
    score: float
    detail: str


class Advice(BaseModel):
    diagnosis: str
    began: str | None
    actions: list[str]
    causes: list[Cause] = Field(description="Most likely first")
    evidence: dict[str, Any]


class IncidentView(IncidentState):
    advice: Advice


class Incidents(BaseModel):
    model: str
    incidents: list[IncidentView] = Field(description="Newest first")


class Silence(BaseModel):
    id: str
    matchers: dict[str, str] = Field(description='Label → value, or "=~regex"')
    until: str
    starts: str | None
    created_by: str | None
    comment: str | None


class Silences(BaseModel):
    model: str
    silences: list[Silence] = Field(description="By when they end")


def shown(hub: Hub, model: str) -> AlertView:
    """The model's alert state as shown (a copy the fold never changes afterwards), with
    the suite in service; 404 when no suite is deployed for it."""
    found = hub.alert_view(model)
    if found is None:
        raise NotFound(f"no suite deployed for model {model!r}")
    return found


@router.get("/v1/models/{model}/incidents", response_model=Incidents)
def incidents(model: str, server: ServerDep, status: str | None = None) -> dict[str, Any]:
    """Incidents, newest first, each with its diagnosis and recommended actions."""
    hub = server.hub
    state = shown(hub, model)
    return {"model": model, "incidents": incident_views(
        state.alerts.incidents.values(), state.suite.importance,
        is_open=None if status is None else status == "open")}


@router.get("/v1/models/{model}/incidents/{incident_id}", response_model=IncidentView)
def incident(model: str, incident_id: str, server: ServerDep) -> dict[str, Any]:
    hub = server.hub
    state = shown(hub, model)
    found = state.alerts.incidents.get(incident_id)
    if found is None:
        raise NotFound(f"no incident {incident_id!r}")
    return incident_view(found, state.suite.importance)


@router.post("/v1/models/{model}/incidents/{incident_id}/ack", response_model=IncidentState)
def acknowledge(model: str, incident_id: str, server: ServerDep,
                by: str | None = None) -> dict[str, Any]:
    hub = server.hub
    shown(hub, model)
    try:  # saved in the store before it is answered
        return hub.acknowledge(model, incident_id, by).to_dict()
    except KeyError:
        raise NotFound(f"no incident {incident_id!r}") from None


@router.get("/v1/models/{model}/silences", response_model=Silences)
def silences(model: str, server: ServerDep) -> dict[str, Any]:
    """Silences in force (or yet to start), by when they end."""
    hub = server.hub
    found = [s.to_dict() for s in sorted(shown(hub, model).alerts.silences,
                                         key=lambda s: (s.until, s.id))]
    return {"model": model, "silences": found}


@router.post("/v1/models/{model}/silences", response_model=Silence, responses={
    422: {"model": Problem, "description": "A bad silence (matchers, hours)"}})
async def silence(model: str, request: Request, server: ServerDep) -> dict[str, Any]:
    """Body: {"matchers": {"column": "SCHL", "monitor": "=~.*drift"}, "hours": 2,
    "comment": "..."}; silenced alerts are tracked but not notified until it expires."""
    hub = server.hub
    raw = await read_body(server, request)  # 408/400 for a body that stalls or stops short
    try:
        body = json.loads(raw or b"{}")
        until = datetime.now(UTC) + timedelta(hours=float(body.get("hours", 2)))
        shown(hub, model)
        made = hub.silence(model, dict(body["matchers"]), until,
                           created_by=body.get("created_by"),
                           comment=body.get("comment"))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"bad silence: {exc}") from None
    return made.to_dict()


@router.delete("/v1/models/{model}/silences/{silence_id}", response_model=Silence)
def unsilence(model: str, silence_id: str, server: ServerDep) -> dict[str, Any]:
    """End a silence now; the alerts it hid are notified again at the next window."""
    hub = server.hub
    shown(hub, model)
    try:
        return hub.unsilence(model, silence_id).to_dict()
    except KeyError:
        raise NotFound(f"no silence {silence_id!r}") from None
