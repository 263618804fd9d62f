"""Instants in UTC: what the store, the alerts and the check windows keep.

>>> from datetime import datetime, timedelta, timezone
>>> as_utc(datetime(2024, 1, 1, 9, tzinfo=timezone(timedelta(hours=2)))).isoformat()
'2024-01-01T07:00:00+00:00'
>>> as_utc(datetime(2024, 1, 1)).isoformat(), from_epoch(0.0).isoformat()
('2024-01-01T00:00:00+00:00', '1970-01-01T00:00:00+00:00')
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def from_epoch(seconds: float) -> datetime:
    """Seconds since the Unix epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)
