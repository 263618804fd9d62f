"""What the store hands out: suite versions, logged events, window records (its errors are
in watchkeeper.errors: StoreError, LeaseLost, Conflict, RecordNotFound)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
    #: when the fold set it aside after failing on it repeatedly (None: it was not), and why
    quarantined_at: datetime | None = None
    error: str | None = None
    #: the client's Idempotency-Key of the batch, if it sent one
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Appended:
    """What logging a batch did: its seq, kind and rows as stored, and whether a batch with
    the same idempotency key was stored already (then nothing was stored this time, and
    ``seq``, ``kind`` and ``rows`` are the first one's)."""

    seq: int
    kind: str
    rows: int
    duplicate: bool = False


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


@dataclass(frozen=True)
class Lease:
    """Who holds a lease (the fold lease: which server folds the event log) and until when.

    Times are seconds since 1970 by the database's clock, which every server shares:
    ``now`` is that clock when the lease was read. ``epoch`` grows by one whenever another
    owner takes the lease, so a holder's writes fenced by (owner, epoch) are refused once
    anyone else has taken it, even if it took it back since.
    """

    scope: str
    owner: str
    epoch: int
    acquired_at: float
    expires_at: float
    now: float

    @property
    def expired(self) -> bool:
        return self.expires_at <= self.now

    @property
    def remaining(self) -> float:
        """Seconds it still runs (≤ 0 once expired), as of ``now``."""
        return self.expires_at - self.now


@dataclass
class LabelRecords:
    """What a fold step changed in a model's prediction records for late labels (written
    with its windows and watermark, in their transaction): new records (``rows``: parts,
    each an iterable of dicts id, start, version, codes, label, made as they are written so
    that a step's records are never all held as dicts; an id logged again replaces its
    record) and the labels joined to records stored before (``labels``: id, label)."""

    rows: list[Iterable[dict[str, Any]]] = field(default_factory=list)
    labels: list[tuple[str, float | None]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows or self.labels)

    def extend(self, other: LabelRecords) -> None:
        self.rows += other.rows
        self.labels += other.labels
