"""Labels of findings and alerts, fingerprints, Alertmanager-style matchers, timestamps."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from functools import lru_cache
from typing import Any

from watchkeeper.errors import DataError
from watchkeeper.io.times import as_utc
from watchkeeper.monitors.base import Finding, Severity

#: Labels a silence or rule may match on (a missing label matches as "").
LABELS = ("model", "alertname", "monitor", "family", "column", "segment", "metric", "severity",
          "direction", "role")
#: Alertmanager's "no end yet" timestamp for firing alerts.
ZERO_TIME = "0001-01-01T00:00:00Z"


def fingerprint(model: str, monitor: str, column: str | None, segment: str | None,
                metric: str | None) -> str:
    """16 hex digits identifying one alert: (model, monitor, column, segment, metric).

    >>> fingerprint("churn", "feature_drift", "AGEP", None, None)
    'ec98c68223a5ba3d'
    """
    key = "\x1f".join((model, monitor, column or "", segment or "", metric or ""))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def finding_labels(model: str, f: Finding) -> dict[str, str]:
    """Labels of a finding in one window. ``direction`` is ``below`` when the value is under
    its threshold (a volume collapse, a throughput drop) and ``above`` otherwise; ``role``
    is the role of a schema finding's column (``prediction``, ``proba``, ``feature``...)."""
    return {
        "model": model,
        "alertname": f.monitor,
        "monitor": f.monitor,
        "family": f.family,
        "column": f.column or "",
        "segment": f.segment or "",
        "metric": f.metric or "",
        "severity": Severity(f.severity).value,
        "direction": "below" if f.value < f.threshold else "above",
        "role": str(f.evidence.get("role", "")),
    }


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def check_matchers(matchers: dict[str, str], where: str = "matchers") -> dict[str, str]:
    """Validate matchers (known labels, valid regexes); returns them as plain strings."""
    out = {}
    for key, value in matchers.items():
        if key not in LABELS:
            raise ValueError(f"{where}: unknown label {key!r}; known: {', '.join(LABELS)}")
        value = str(value)
        if value.startswith(("=~", "!~")):
            try:
                _compile(value[2:])
            except re.error as e:
                raise ValueError(f"{where}: bad regex for {key!r}: {e}") from None
        out[key] = value
    return out


def matches(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether labels satisfy every matcher. A matcher value is ``value`` or ``=value``
    (equal), ``!=value``, ``=~regex`` or ``!~regex`` (anchored, as in Alertmanager).

    >>> matches({"monitor": "=~feature_drift|out_of_range", "column": "SCHL"},
    ...         {"monitor": "out_of_range", "column": "SCHL"})
    True
    >>> matches({"column": "!=SCHL"}, {"column": "SCHL"})
    False
    """
    for key, spec in matchers.items():
        have = labels.get(key, "")
        if spec.startswith("=~"):
            ok = _compile(spec[2:]).fullmatch(have) is not None
        elif spec.startswith("!~"):
            ok = _compile(spec[2:]).fullmatch(have) is None
        elif spec.startswith("!="):
            ok = have != spec[2:]
        else:
            ok = have == (spec[1:] if spec.startswith("=") else spec)
        if not ok:
            return False
    return True


def rfc3339(t: datetime | None) -> str:
    """RFC 3339 with a ``Z``, as Alertmanager writes; the zero time for None."""
    if t is None:
        return ZERO_TIME
    return as_utc(t).isoformat().replace("+00:00", "Z")


def to_time(text: str | None) -> datetime | None:
    return None if text is None else as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def required_time(d: dict[str, Any], key: str, where: str) -> datetime:
    """``d[key]`` read as a time: a clear error when saved state lacks it or holds
    something else (edited, or cut short)."""
    try:
        at = to_time(d.get(key))
    except (TypeError, ValueError, AttributeError):
        at = None
    if at is None:
        raise DataError(f"{where}.{key}: expected an ISO 8601 time, got {d.get(key)!r}")
    return at
