"""Notification: what to tell people about an incident now, in Alertmanager's webhook shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from watchkeeper.alerts.labels import required_time, rfc3339
from watchkeeper.alerts.lifecycle import Alert
from watchkeeper.io.times import as_utc
from watchkeeper.monitors.base import Severity

Kind = Literal["open", "update", "repeat", "acknowledge", "resolve"]
_TAG = {"open": "FIRING", "update": "FIRING, updated", "repeat": "FIRING, still open",
        "acknowledge": "ACKNOWLEDGED", "resolve": "RESOLVED"}


@dataclass
class Notification:
    """One message about one incident: ``open`` (once), ``update`` (severity rose or an
    alert joined), ``repeat`` (still open after the repeat interval), ``acknowledge``
    (someone is on it; only to notifiers that take it, see ``Notifier``), ``resolve`` (once).
    ``alerts`` are copies taken when it was made; silenced alerts are left out."""

    kind: Kind
    incident: str
    model: str
    title: str
    severity: Severity
    window: str
    at: datetime
    alerts: list[Alert] = field(default_factory=list)
    number: int = 1
    opened: str = ""
    acknowledged_by: str | None = None
    receiver: str = "watchkeeper"
    external_url: str = ""

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "resolved" if self.kind == "resolve" else "firing"

    @property
    def key(self) -> str:
        """What tells this notification from every other: its incident and its number in
        it (a notification sent twice, after a crash between sending and recording it, has
        the same key both times: a receiver that keeps keys can drop the second)."""
        return f"{self.incident}/{self.number}"

    @property
    def subject(self) -> str:
        """One line: ``[FIRING] churn: SCHL: missing_rate, out_of_range (critical)``."""
        return f"[{_TAG[self.kind]}] {self.model}: {self.title} ({self.severity.value})"

    def text(self) -> str:
        """The subject, one line per alert, and where to look."""
        lines = [self.subject, ""]
        lines += [f"- {'resolved ' if a.state == 'resolved' else ''}{a.describe()}"
                  for a in self.alerts]
        lines += ["", f"incident {self.incident}, opened in window {self.opened}; "
                      f"this window {self.window}"]
        if self.external_url:
            lines.append(self.link)
        return "\n".join(lines)

    @property
    def link(self) -> str:
        return f"{self.external_url.rstrip('/')}/incidents/{self.incident}" \
            if self.external_url else ""

    def to_alertmanager(self) -> dict[str, Any]:
        """The body Alertmanager's webhook receiver POSTs (version 4), so existing routing
        and tooling keep working. One incident is one alert group."""
        alerts = [self._alert(a) for a in self.alerts]
        return {
            "version": "4",
            "groupKey": f'{{}}:{{incident="{self.incident}", model="{self.model}"}}',
            "truncatedAlerts": 0,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": {"incident": self.incident, "model": self.model},
            "commonLabels": _common([a["labels"] for a in alerts]),
            "commonAnnotations": _common([a["annotations"] for a in alerts]),
            "externalURL": self.external_url,
            "alerts": alerts,
        }

    def _alert(self, a: Alert) -> dict[str, Any]:
        labels = {"alertname": a.monitor, "model": a.model, "family": a.family,
                  "severity": a.severity.value, "incident": self.incident}
        for key in ("column", "segment", "metric"):
            if getattr(a, key):
                labels[key] = getattr(a, key)
        annotations = {"summary": a.message, "description": a.describe(),
                       "value": f"{a.value:.6g}", "threshold": f"{a.threshold:.6g}",
                       "window": a.last_seen}
        if a.inhibited_by:
            annotations["inhibited_by"] = a.inhibited_by
        status = "resolved" if a.state == "resolved" or self.kind == "resolve" else "firing"
        ends = a.resolved_at if a.resolved_at is not None else (
            as_utc(self.at) if status == "resolved" else None)
        return {
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(a.fired_at or a.first_seen_at),
            "endsAt": rfc3339(ends),
            "generatorURL": self.link,
            "fingerprint": a.fingerprint,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "incident": self.incident, "model": self.model,
                "title": self.title, "severity": self.severity.value, "window": self.window,
                "at": as_utc(self.at).isoformat(), "alerts": [a.to_dict() for a in self.alerts],
                "number": self.number, "opened": self.opened,
                "acknowledged_by": self.acknowledged_by, "receiver": self.receiver,
                "external_url": self.external_url}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Notification:
        at = required_time(d, "at", f"notification of incident {d.get('incident')!r}")
        return cls(d["kind"], d["incident"], d["model"], d["title"], Severity(d["severity"]),
                   d["window"], at, [Alert.from_dict(a) for a in d.get("alerts", [])],
                   int(d.get("number", 1)), d.get("opened", ""), d.get("acknowledged_by"),
                   d.get("receiver", "watchkeeper"), d.get("external_url", ""))


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """Key/value pairs every map shares (Alertmanager's commonLabels/commonAnnotations)."""
    if not maps:
        return {}
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}
