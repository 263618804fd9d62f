"""Errors a user can act on. The CLI prints them as one line, never as a traceback."""

from __future__ import annotations


class WatchkeeperError(Exception):
    """Base class for every error caused by input the user controls."""


class DataError(WatchkeeperError, ValueError):
    """Input data that cannot be read or used (missing file, empty data, unknown format)."""


class SuiteError(WatchkeeperError, ValueError):
    """A suite file or suite argument that is invalid; the message names the field."""

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}")


class RequestError(WatchkeeperError, ValueError):
    """An HTTP request the server cannot take as sent (a malformed header, a body cut short,
    a body that stopped arriving): the client can fix it and send it again."""
