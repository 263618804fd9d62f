"""One alert per fingerprint: pending → firing after ``for`` windows → resolved after
``clear_for`` clean windows (hysteresis)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from watchkeeper.alerts.labels import fingerprint, to_time
from watchkeeper.io.jsonable import plain
from watchkeeper.io.times import as_utc
from watchkeeper.monitors.base import Finding, Severity

State = Literal["pending", "firing", "resolved"]
#: Values kept per alert: (window, value, severity), newest last.
HISTORY = 48


@dataclass
class Alert:
    """The state of one condition (model, monitor, column, segment, metric) over windows.

    ``hits`` counts consecutive windows with a finding, ``clean`` consecutive windows
    without; ``severity`` is the highest seen in this episode. An inhibited finding is
    recorded (value, history) but moves neither count: the cause it echoes is alerting.
    """

    fingerprint: str
    model: str
    monitor: str
    family: str
    column: str | None = None
    segment: str | None = None
    metric: str | None = None
    state: State = "pending"
    severity: Severity = Severity.WARNING
    value: float = math.nan
    threshold: float = math.nan
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    first_seen: str = ""
    first_seen_at: datetime | None = None
    last_seen: str = ""
    last_seen_at: datetime | None = None
    fired: str | None = None
    fired_at: datetime | None = None
    resolved: str | None = None
    resolved_at: datetime | None = None
    hits: int = 0
    clean: int = 0
    history: list[tuple[str, float, str]] = field(default_factory=list)
    silenced_by: list[str] = field(default_factory=list)
    inhibited_by: str | None = None
    incident: str | None = None

    @classmethod
    def start(cls, model: str, f: Finding, window: str, at: datetime) -> Alert:
        """A new pending alert for the condition a finding describes."""
        return cls(fingerprint(model, f.monitor, f.column, f.segment, f.metric), model,
                   f.monitor, f.family, f.column, f.segment, f.metric,
                   severity=Severity(f.severity), first_seen=window, first_seen_at=as_utc(at))

    @property
    def what(self) -> str:
        """The monitor, and its metric when it has one (``monitor:metric``)."""
        return f"{self.monitor}:{self.metric}" if self.metric else self.monitor

    @property
    def where(self) -> str | None:
        """The segment, else the column, the alert is about (None: the whole model)."""
        return self.segment or self.column

    @property
    def labels(self) -> dict[str, str]:
        """Labels for matching (silences, grouping); absent ones are ""."""
        return {"model": self.model, "alertname": self.monitor, "monitor": self.monitor,
                "family": self.family, "column": self.column or "",
                "segment": self.segment or "", "metric": self.metric or "",
                "severity": self.severity.value}

    @property
    def firing(self) -> bool:
        return self.state == "firing"

    @property
    def silenced(self) -> bool:
        return bool(self.silenced_by)

    def _record(self, f: Finding, window: str, at: datetime) -> None:
        self.value, self.threshold = float(f.value), float(f.threshold)
        self.message, self.evidence = f.message, plain(f.evidence, finite=False)
        self.last_seen, self.last_seen_at = window, as_utc(at)
        self.history = [*self.history, (window, self.value, Severity(f.severity).value)]
        del self.history[:-HISTORY]

    def observe(self, f: Finding, window: str, at: datetime, for_windows: int) -> bool:
        """The condition holds in this window. True when the alert starts firing now."""
        self._record(f, window, at)
        self.hits, self.clean, self.inhibited_by = self.hits + 1, 0, None
        if Severity(f.severity).rank > self.severity.rank:
            self.severity = Severity(f.severity)
        if self.state == "pending" and self.hits >= for_windows:
            self.state, self.fired, self.fired_at = "firing", window, as_utc(at)
            return True
        return False

    def hold(self, f: Finding, window: str, at: datetime, reason: str) -> None:
        """The condition holds but is inhibited by its cause: recorded, counts frozen."""
        self._record(f, window, at)
        self.inhibited_by = reason

    def miss(self, window: str, at: datetime, clear_for: int) -> Literal["drop", "resolve"] | None:
        """No finding this window: a pending alert is dropped (``for`` needs consecutive
        windows); a firing one resolves after ``clear_for`` clean windows in a row."""
        self.hits, self.inhibited_by = 0, None
        if self.state == "pending":
            return "drop"
        if self.state == "firing":
            self.clean += 1
            if self.clean >= clear_for:
                self.state, self.resolved, self.resolved_at = "resolved", window, as_utc(at)
                return "resolve"
        return None

    def describe(self) -> str:
        """One line a person can read."""
        where = self.where
        return (f"{self.severity.value} {self.what}" + (f" {where}" if where else "")
                + f": {self.message} (value {self.value:.4g}, threshold {self.threshold:.4g}"
                + f", since {self.fired or self.first_seen})")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if isinstance(v, datetime):
                v = v.isoformat()
            elif isinstance(v, Severity):
                v = v.value
            elif isinstance(v, float) or name == "history":
                v = plain(v)
            out[name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for k in ("first_seen_at", "last_seen_at", "fired_at", "resolved_at"):
            kw[k] = to_time(kw.get(k))
        for k in ("value", "threshold"):
            kw[k] = math.nan if kw.get(k) is None else float(kw[k])
        kw["severity"] = Severity(kw.get("severity", "warning"))
        kw["history"] = [(str(w), math.nan if x is None else float(x), str(s))
                         for w, x, s in kw.get("history", [])]
        kw["silenced_by"] = list(kw.get("silenced_by", []))
        return cls(**kw)
