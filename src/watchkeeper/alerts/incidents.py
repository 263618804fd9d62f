"""Incidents: firing alerts that belong together in one time span, notified as one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from watchkeeper.alerts.labels import required_time, to_time
from watchkeeper.alerts.lifecycle import Alert
from watchkeeper.alerts.rules import GroupRule, Rules
from watchkeeper.io.display import html_of
from watchkeeper.io.times import as_utc
from watchkeeper.monitors.base import Family, Severity

Status = Literal["open", "updated", "resolved"]
_OUTCOME = {"prediction_drift", "performance", "estimated_performance", "fairness"}
_DRIFT = {"feature_drift", "prediction_drift", "target_drift", "text_drift", "embedding_drift"}
_BREAK = {"missing_column", "type_change"}


@dataclass
class Incident:
    """A group of related alerts: opened when the first fires, ``updated`` when its severity
    rises or an alert joins, resolved when all its alerts have resolved.

    ``notified_*`` remember what was last sent, so only a material change (higher severity,
    a new alert) or the repeat interval notifies again.
    """

    id: str
    model: str
    opened: str
    opened_at: datetime
    alerts: dict[str, Alert] = field(default_factory=dict)
    status: Status = "open"
    severity: Severity = Severity.WARNING
    last_window: str = ""
    resolved: str | None = None
    resolved_at: datetime | None = None
    acknowledged: bool = False
    acknowledged_by: str | None = None
    notifications: int = 0
    notified_index: int | None = None
    notified_severity: Severity | None = None
    notified_alerts: list[str] = field(default_factory=list)

    @staticmethod
    def make_id(model: str, window: str, at: datetime, fingerprints: list[str]) -> str:
        key = "\x1f".join([model, window, as_utc(at).isoformat(), *sorted(fingerprints)])
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"

    def _repr_html_(self) -> str | None:
        """The incident with its advice, as the report shows it (in Jupyter)."""
        return html_of(self)

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.firing]

    @property
    def title(self) -> str:
        """What the incident is about, from its alerts."""
        alerts = list(self.alerts.values())
        monitors = sorted({a.monitor for a in alerts})
        columns = {a.column for a in alerts}
        if len(alerts) == 1:
            a = alerts[0]
            return f"{a.what} on {a.where}" if a.where else a.what
        if _OUTCOME & set(monitors):
            return "model degradation: " + ", ".join(monitors)
        if set(monitors) <= _BREAK and len(columns) > 1:
            named = sorted(c for c in columns if c)
            return (f"{' and '.join(monitors)} on {len(named)} columns: "
                    + ", ".join(named[:5]) + (" and more" if len(named) > 5 else ""))
        drifted = {a.column for a in alerts if a.monitor in _DRIFT}
        if len(drifted) > 1:
            began = min((a.first_seen_at, a.first_seen) for a in alerts
                        if a.first_seen_at)[1] \
                if any(a.first_seen_at for a in alerts) else self.opened
            others = sorted(set(monitors) - _DRIFT - {"multivariate_drift"})  # joins them
            return (f"{len(drifted)} columns drifted together from window {began}"
                    + (f" (with {', '.join(others)})" if others else ""))
        if all(a.family == Family.SERVICE or a.monitor == "volume" for a in alerts):
            return "service: " + ", ".join(monitors)
        if len(columns) == 1 and None not in columns:
            return f"{columns.pop()}: " + ", ".join(monitors)
        segments = {a.segment for a in alerts}
        if all(a.family == Family.SECURITY for a in alerts) and len(segments) == 1:
            return f"security on {segments.pop()}: " + ", ".join(monitors)
        if len(segments) == 1 and None not in segments:
            return f"segment {segments.pop()}: " + ", ".join(monitors)
        return ", ".join(monitors)

    def add(self, alert: Alert) -> bool:
        """Attach a firing alert (a new episode of a fingerprint replaces the old one).
        True when its fingerprint is new to the incident."""
        new = alert.fingerprint not in self.alerts
        self.alerts[alert.fingerprint] = alert
        alert.incident = self.id
        return new

    def refresh(self) -> bool:
        """Severity is the highest of its alerts; True when that rose."""
        top = max((a.severity for a in self.alerts.values()), key=lambda s: s.rank,
                  default=Severity.WARNING)
        if top.rank > self.severity.rank:
            self.severity = top
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "model": self.model, "title": self.title,
            "opened": self.opened, "opened_at": self.opened_at.isoformat(),
            "status": self.status, "severity": self.severity.value,
            "last_window": self.last_window, "resolved": self.resolved,
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
            "acknowledged": self.acknowledged, "acknowledged_by": self.acknowledged_by,
            "notifications": self.notifications, "notified_index": self.notified_index,
            "notified_severity": None if self.notified_severity is None
            else self.notified_severity.value,
            "notified_alerts": list(self.notified_alerts),
            "alerts": [a.to_dict() for a in self.alerts.values()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], live: dict[str, Alert] | None = None) -> Incident:
        """Rebuild an incident; its alerts that are still the live episode in ``live`` (the
        manager's alerts by fingerprint) are shared with it rather than copied."""
        live = live or {}
        alerts: dict[str, Alert] = {}
        for a in d.get("alerts", []):
            current = live.get(a["fingerprint"])
            use = current if current is not None and current.incident == d["id"] else None
            alerts[a["fingerprint"]] = use or Alert.from_dict(a)
        opened_at = required_time(d, "opened_at", f"incident {d.get('id')!r}")
        return cls(
            id=d["id"], model=d["model"], opened=d["opened"], opened_at=opened_at,
            alerts=alerts, status=d["status"], severity=Severity(d["severity"]),
            last_window=d.get("last_window", ""), resolved=d.get("resolved"),
            resolved_at=to_time(d.get("resolved_at")),
            acknowledged=bool(d.get("acknowledged")), acknowledged_by=d.get("acknowledged_by"),
            notifications=int(d.get("notifications", 0)), notified_index=d.get("notified_index"),
            notified_severity=None if d.get("notified_severity") is None
            else Severity(d["notified_severity"]),
            notified_alerts=list(d.get("notified_alerts", [])),
        )


def group(new: list[Alert], open_incidents: list[Incident],
          rules: Rules) -> list[tuple[Incident | None, list[Alert]]]:
    """Decide where alerts that started firing this window go.

    Alerts related to each other (by ``rules.group``, transitively) form one group with
    the open incidents any of them relates to (through a firing alert). A group with an
    open incident joins the oldest one (open incidents are never merged: what was notified
    stands); a group without one opens a new incident (None).

    Each rule indexes the alerts by the labels they must share, so a window in which
    thousands of alerts start firing takes linear time, not a comparison of every pair.
    """
    m = len(open_incidents)
    parent = list(range(m + len(new)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    labels = [a.labels for a in new]
    firing = [(i, b, b.labels) for i, inc in enumerate(open_incidents) for b in inc.firing]
    for rule in rules.group:
        for members in _related_new(rule, labels):
            first = min(members)
            for j in members:
                union(m + first, m + j)
        if not rule.same_window:  # open incidents' alerts started firing earlier
            for i, j in _related_open(rule, new, labels, firing):
                union(i, m + j)
    groups: dict[int, list[Alert]] = {}
    for j, a in enumerate(new):
        groups.setdefault(find(m + j), []).append(a)
    # Roots are the smallest index of their set: an incident's index when one is present,
    # and incidents are passed oldest first.
    return [(open_incidents[root] if root < m else None, alerts)
            for root, alerts in groups.items()]


def _related_new(rule: GroupRule, labels: list[dict[str, str]]) -> list[set[int]]:
    """Sets of new alerts (indexes) that ``rule`` relates. Within one value of its
    ``equal`` labels, every alert matching ``left`` relates to every other matching
    ``right``; when both sides are present and there are two alerts or more, that
    connects them all."""
    buckets: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
    for j, lab in enumerate(labels):
        key = rule.key(lab)
        left, right = rule.sides(lab) if key is not None else (False, False)
        if left or right:
            lefts, rights = buckets.setdefault(key or (), ([], []))
            if left:
                lefts.append(j)
            if right:
                rights.append(j)
    return [set(lefts) | set(rights) for lefts, rights in buckets.values()
            if lefts and rights and len(set(lefts) | set(rights)) > 1]


def _related_open(rule: GroupRule, new: list[Alert], labels: list[dict[str, str]],
                  firing: list[tuple[int, Alert, dict[str, str]]]) -> list[tuple[int, int]]:
    """(open incident, new alert) pairs that ``rule`` relates through one of the
    incident's firing alerts (another alert than the new one itself)."""
    # per key: incident → its first two firing alerts matching left, and right
    index: dict[tuple[str, ...], dict[int, tuple[list[Alert], list[Alert]]]] = {}
    for i, b, lab in firing:
        key = rule.key(lab)
        left, right = rule.sides(lab) if key is not None else (False, False)
        if left or right:
            lefts, rights = index.setdefault(key or (), {}).setdefault(i, ([], []))
            for side, hit in ((lefts, left), (rights, right)):
                if hit and len(side) < 2:
                    side.append(b)
    out = []
    for j, (a, lab) in enumerate(zip(new, labels, strict=True)):
        key = rule.key(lab)
        if key is None or key not in index:
            continue
        left, right = rule.sides(lab)
        for i, (lefts, rights) in index[key].items():
            others = (rights if left else []) + (lefts if right else [])
            if any(b is not a for b in others):
                out.append((i, j))
    return out
