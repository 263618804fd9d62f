"""A model's suite versions: deploy one (YAML body), list them, read one, activate one
(roll back or forward)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from watchkeeper.server.routes.body import read_body
from watchkeeper.server.routes.deps import (
    AUTH_ERRORS,
    NOT_FOUND,
    Problem,
    ServerDep,
    as_json,
    authorize,
)
from watchkeeper.suite import file as suitefile
from watchkeeper.suite.core import Suite
from watchkeeper.suite.diff import diff

#: A suite version in a path: what the store's column holds (beyond it, 422 rather than a
#: driver's overflow)
SuiteNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]

router = APIRouter(tags=["suites"], dependencies=[Depends(authorize)], responses=AUTH_ERRORS)


def load_suite(text: str) -> Suite:
    return Suite.from_dict(suitefile.parse(text, "suite"))


class Deployed(BaseModel):
    """A suite version registered and made active."""

    model: str
    version: int = Field(description="The new version, in service from the next window")
    previous: int | None = Field(description="The version active before, if any")
    diff: dict[str, Any] | None = Field(default=None, description=(
        "What changed against the previous version (absent without one): reference rows, "
        "columns and monitors added or removed, roles changed, thresholds moved, settings "
        "changed"))
    summary: str | None = Field(default=None, description="The same, as text (absent without one)")


class SuiteVersionInfo(BaseModel):
    version: int
    hash: str = Field(description="sha256 of the suite file")
    created_at: str
    created_by: str | None
    note: str | None
    active: bool


class SuiteVersions(BaseModel):
    model: str
    versions: list[SuiteVersionInfo] = Field(description="Oldest first")


class Activated(BaseModel):
    model: str
    version: int
    active: bool


@router.post("/v1/models/{model}/suites", response_model_exclude_unset=True, responses={
    422: {"model": Problem, "description": "An invalid suite (the message names the field)"}})
async def deploy(model: str, request: Request, server: ServerDep, note: str | None = None,
                 created_by: str | None = None) -> Deployed:
    """Register a suite (YAML body) as the model's new active version, in service from the
    next window. An invalid suite is refused (422, naming the field) and the active version
    stays. The answer says what changed against the previous version."""
    text = (await read_body(server, request)).decode("utf-8", errors="replace")

    def register() -> Deployed:
        previous = server.store.active_suite(model)
        version = server.hub.register(model, text, created_by=created_by, note=note)
        out = Deployed(model=model, version=version,
                       previous=previous.version if previous else None)
        if previous is not None:
            change = diff(load_suite(previous.text), load_suite(text))
            out.diff, out.summary = change.to_dict(), change.to_text()
        return out

    return await run_in_threadpool(register)


@router.get("/v1/models/{model}/suites")
def suite_versions(model: str, server: ServerDep) -> SuiteVersions:
    return SuiteVersions(model=model, versions=[
        SuiteVersionInfo(version=v.version, hash=v.hash, created_at=v.created_at.isoformat(),
                         created_by=v.created_by, note=v.note, active=v.active)
        for v in server.store.suite_versions(model)])


@router.get("/v1/models/{model}/suites/{version}", response_class=PlainTextResponse,
            responses={**as_json({**AUTH_ERRORS, **NOT_FOUND}), 200: {
                "content": {"application/yaml": {}}, "description": "The suite file"}})
def suite_text(model: str, version: SuiteNumber, server: ServerDep) -> Response:
    found = server.store.suite_version(model, version)  # RecordNotFound: 404
    return PlainTextResponse(found.text, media_type="application/yaml")


@router.post("/v1/models/{model}/suites/{version}/activate", responses=NOT_FOUND)
async def activate(model: str, version: SuiteNumber, server: ServerDep) -> Activated:
    """Roll back (or forward) to a stored version, from the next window on."""
    await run_in_threadpool(server.hub.rollback, model, version)  # RecordNotFound: 404
    return Activated(model=model, version=version, active=True)
