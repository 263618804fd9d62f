"""Silences: alerts matching them are still tracked, but not notified, until they expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watchkeeper.alerts.labels import check_matchers, matches, required_time, to_time
from watchkeeper.io.times import as_utc


@dataclass
class Silence:
    """Mutes alerts whose labels match every matcher (``value``, ``!=value``, ``=~regex``,
    ``!~regex``) from ``starts`` (None: always) until ``until``.

    >>> from datetime import UTC, datetime
    >>> s = Silence("s1", {"column": "=~SCHL|AGEP"}, datetime(2024, 2, 1, tzinfo=UTC))
    >>> s.covers({"column": "AGEP"}, datetime(2024, 1, 15, tzinfo=UTC))
    True
    >>> s.covers({"column": "AGEP"}, datetime(2024, 2, 1, tzinfo=UTC))  # expired
    False
    """

    id: str
    matchers: dict[str, str]
    until: datetime
    starts: datetime | None = None
    created_by: str | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError("matchers: a silence needs at least one matcher; give one")
        self.matchers = check_matchers(self.matchers, "silence")
        self.until = as_utc(self.until)
        self.starts = None if self.starts is None else as_utc(self.starts)

    def active(self, at: datetime) -> bool:
        at = as_utc(at)
        return (self.starts is None or self.starts <= at) and at < self.until

    def covers(self, labels: dict[str, str], at: datetime) -> bool:
        return self.active(at) and matches(self.matchers, labels)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": dict(self.matchers),
                "until": self.until.isoformat(),
                "starts": None if self.starts is None else self.starts.isoformat(),
                "created_by": self.created_by, "comment": self.comment}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Silence:
        until = required_time(d, "until", f"silence {d.get('id')!r}")
        return cls(str(d["id"]), dict(d["matchers"]), until, to_time(d.get("starts")),
                   d.get("created_by"), d.get("comment"))
