"""One taxonomy: every error has its HTTP status and CLI exit code; the server answers them
with one handler."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest

from watchkeeper import errors
from watchkeeper.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    NotFound,
    RecordNotFound,
    ServerBusy,
    StoreError,
    Unauthorized,
    WatchkeeperError,
    WorkerLost,
)

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass)
           if issubclass(c, Exception) and not c.__name__.startswith("_")]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_says_how_it_is_answered(cls: type[WatchkeeperError]) -> None:
    assert issubclass(cls, WatchkeeperError)
    assert 400 <= cls.http_status < 600
    # the CLI's code for every user error, as before; 3 for work that could not finish
    assert cls.exit_code == (EXIT_FAILED if cls is WorkerLost else EXIT_USAGE)


def test_a_missing_record_is_not_found_not_a_store_outage() -> None:
    missing = RecordNotFound("model 'm' has no suite version 9")
    assert isinstance(missing, NotFound) and isinstance(missing, StoreError)
    assert (missing.http_status, missing.detail) == (404, "model 'm' has no suite version 9")
    down = StoreError("database is locked")
    assert (down.http_status, down.detail) == (503, "store unavailable: database is locked")


def test_the_server_answers_an_error_as_its_class_says() -> None:
    pytest.importorskip("fastapi")
    from starlette.requests import Request

    from watchkeeper.server.app import answer_error

    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": []})
    for error, status, headers in [
        (ServerBusy("busy", 2), 503, {"retry-after": "2"}),
        (Unauthorized("missing bearer token"), 401, {"www-authenticate": "Bearer"}),
        (NotFound("no incident 'x'"), 404, {}),
    ]:
        answer = asyncio.run(answer_error(request, error))
        assert answer.status_code == status
        assert json.loads(bytes(answer.body)) == {"detail": str(error)}
        assert {k: answer.headers[k] for k in headers} == headers
    internal = asyncio.run(answer_error(request, errors.BatchFailed("model m: batch 3")))
    assert (internal.status_code, bytes(internal.body)) == (500, b"Internal Server Error")
