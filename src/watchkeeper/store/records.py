"""What the store hands out: suite versions, logged events, window records, and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from watchkeeper.errors import WatchkeeperError


class StoreError(WatchkeeperError):
    """A store that cannot be opened or used, or a record that is not there (one line)."""


@dataclass(frozen=True)
class SuiteVersion:
    """One version of a model's suite file; at most one version per model is active."""

    model: str
    version: int
    hash: str  # sha256 of text
    created_at: datetime
    created_by: str | None
    note: str | None
    active: bool
    text: str = field(repr=False)  # the suite YAML


@dataclass(frozen=True)
class Event:
    """One ingested batch as logged: ``payload`` is opaque bytes (an Arrow IPC stream)."""

    seq: int
    model: str
    kind: str  # "events" | "labels"
    received_at: datetime
    rows: int
    payload: bytes = field(repr=False)


@dataclass
class WindowRecord:
    """A window of a model as stored: its profile and metrics as plain JSON dicts."""

    model: str
    start: datetime
    end: datetime
    suite_version: int | None
    rows: int
    state: str  # "open" | "closed"
    profile: dict[str, Any] = field(repr=False)
    metrics: dict[str, Any] = field(repr=False)
    updated_at: datetime | None = None  # set by the store on save
