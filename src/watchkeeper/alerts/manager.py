"""AlertManager: turns per-window findings of one model into incidents and notifications."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from watchkeeper.alerts.incidents import Incident, group
from watchkeeper.alerts.labels import finding_labels, fingerprint, to_time
from watchkeeper.alerts.lifecycle import Alert
from watchkeeper.alerts.notification import Kind, Notification
from watchkeeper.alerts.rules import Rules
from watchkeeper.alerts.silences import Silence
from watchkeeper.io.times import as_utc
from watchkeeper.monitors.base import Finding, Severity

STATE_VERSION = 1


class AlertManager:
    """Alert lifecycle, inhibition, silences, grouping and notification decisions for one
    model. Pure and synchronous (no threads, no I/O, not thread-safe: call it from one
    thread or under a lock): feed it each window's findings in time order, send what
    :meth:`process` returns (see ``watchkeeper.alerts.notifiers``), persist :meth:`to_dict`.

    >>> from datetime import UTC, datetime, timedelta
    >>> from watchkeeper.monitors.base import Finding, Severity
    >>> day = datetime(2024, 1, 1, tzinfo=UTC)
    >>> drift = Finding("feature_drift", "drift", "AGEP", 0.21, 0.06, Severity.WARNING,
    ...                 "AGEP distribution changed")
    >>> am = AlertManager("churn")
    >>> am.process("day 1", day, [drift])            # drift must hold two windows
    []
    >>> [n.subject for n in am.process("day 2", day + timedelta(days=1), [drift])]
    ['[FIRING] churn: feature_drift on AGEP (warning)']
    >>> am.process("day 3", day + timedelta(days=2), [drift, drift])  # deduplicated, no news
    []
    >>> am.process("day 4", day + timedelta(days=3), [])  # one clean window: still open
    []
    >>> [n.kind for n in am.process("day 5", day + timedelta(days=4), [])]
    ['resolve']
    >>> [(i.title, i.status, i.notifications) for i in am.incidents.values()]
    [('feature_drift on AGEP', 'resolved', 2)]
    """

    def __init__(self, model: str, rules: Rules | None = None,
                 silences: list[Silence] | None = None, *, receiver: str = "watchkeeper",
                 external_url: str = "", keep_resolved: int = 1000) -> None:
        self.model = model
        self.rules = rules or Rules()
        self.silences: list[Silence] = list(silences or [])
        self.receiver = receiver
        self.external_url = external_url
        self.keep_resolved = keep_resolved
        self.alerts: dict[str, Alert] = {}
        self.incidents: dict[str, Incident] = {}
        self.windows = 0
        self.last_window: str | None = None
        self.last_start: datetime | None = None
        #: notifications made outside a window (acknowledgements), for the one who sends
        #: (:meth:`take_outbox`); saved with the state, so they are sent at least once
        self.outbox: list[Notification] = []
        self._silence_seq = 0

    # -- per window ----------------------------------------------------------------------

    def process(self, window: str, start: datetime, findings: list[Finding]) -> list[Notification]:
        """Take one window's findings; return the notifications to send now.

        Windows must come in time order (``start`` strictly increasing). Info findings never
        alert; several findings of one fingerprint in a window count once (the most severe).
        """
        start = as_utc(start)
        if self.last_start is not None and start <= self.last_start:
            raise ValueError(f"window {window!r} starts at {start.isoformat()}, not after the "
                             f"last processed window {self.last_window!r} "
                             f"({self.last_start.isoformat()}); windows must come in time order")
        chosen = self._alerting(findings)
        self.windows += 1
        self.last_window, self.last_start = window, start
        fired = self._advance(window, start, chosen)
        self.silences = [s for s in self.silences if s.until > start]  # time only moves on
        self._apply_silences(start)
        opened = self._group(window, start, fired)
        out = []
        for incident in self._open_incidents():
            note = self._update(incident, window, start, opened)
            if note is not None:
                out.append(note)
        self._prune()
        return out

    def _alerting(self, findings: list[Finding]) -> dict[str, Finding]:
        chosen: dict[str, Finding] = {}
        for f in findings:
            severity = _checked(f)
            if severity.rank < Severity.WARNING.rank:
                continue
            fp = fingerprint(self.model, f.monitor, f.column, f.segment, f.metric)
            if fp not in chosen or severity.rank > Severity(chosen[fp].severity).rank:
                chosen[fp] = f
        return chosen

    def _advance(self, window: str, start: datetime, chosen: dict[str, Finding]) -> list[Alert]:
        """Move every alert one window on; returns those that started firing."""
        labels = [finding_labels(self.model, f) for f in chosen.values()]
        inhibited = self.rules.inhibited(labels)
        fired = []
        for i, (fp, f) in enumerate(chosen.items()):
            alert = self.alerts.get(fp)
            if alert is None or alert.state == "resolved":
                alert = self.alerts[fp] = Alert.start(self.model, f, window, start)
            if i in inhibited:
                alert.hold(f, window, start, inhibited[i])
            elif alert.observe(f, window, start, self.rules.for_window(f.monitor, f.family)):
                fired.append(alert)
        for fp, alert in list(self.alerts.items()):
            if fp not in chosen and alert.state != "resolved" and \
                    alert.miss(window, start, self.rules.clear_for) == "drop":
                del self.alerts[fp]
        return fired

    def _group(self, window: str, start: datetime, fired: list[Alert]) -> set[str]:
        """Attach newly firing alerts to open incidents or open new ones; returns new ids."""
        opened = set()
        for incident, members in group(fired, self._open_incidents(), self.rules):
            if incident is None:
                incident = Incident(
                    Incident.make_id(self.model, window, start, [a.fingerprint for a in members]),
                    self.model, window, start, severity=members[0].severity)
                self.incidents[incident.id] = incident
                opened.add(incident.id)
                for a in members:
                    incident.add(a)
            elif any([incident.add(a) for a in members]):
                incident.status = "updated"
        return opened

    def _update(self, incident: Incident, window: str, start: datetime,
                opened: set[str]) -> Notification | None:
        incident.last_window = window
        if incident.refresh() and incident.id not in opened:
            incident.status = "updated"
        if all(a.state == "resolved" for a in incident.alerts.values()):
            incident.status, incident.resolved, incident.resolved_at = "resolved", window, start
            if not incident.notifications:
                return None  # nobody was told it opened (silenced throughout)
            told = set(incident.notified_alerts)
            shown = [a for a in incident.alerts.values()
                     if a.fingerprint in told or not a.silenced]
            return self._notification("resolve", incident, shown, incident.severity)
        visible = [a for a in incident.firing if not a.silenced]
        if not visible:
            return None
        severity = max((a.severity for a in visible), key=lambda s: s.rank)
        new = {a.fingerprint for a in visible} - set(incident.notified_alerts)
        kind: Kind
        if not incident.notifications:
            kind = "open"
        elif (incident.notified_severity is None
              or severity.rank > incident.notified_severity.rank or new):
            kind = "update"
        elif (self.rules.repeat_every and not incident.acknowledged
              and self.windows - (incident.notified_index or 0) >= self.rules.repeat_every):
            kind = "repeat"
        else:
            return None
        incident.notified_severity = severity
        incident.notified_alerts = sorted(set(incident.notified_alerts)
                                          | {a.fingerprint for a in visible})
        shown = [a for a in incident.alerts.values() if not a.silenced]
        return self._notification(kind, incident, shown, severity)

    def _notification(self, kind: Kind, incident: Incident, alerts: list[Alert],
                      severity: Severity) -> Notification:
        incident.notifications += 1
        incident.notified_index = self.windows
        assert self.last_window is not None and self.last_start is not None
        return Notification(
            kind, incident.id, self.model, incident.title, severity, self.last_window,
            self.last_start, [Alert.from_dict(a.to_dict()) for a in alerts],
            incident.notifications, incident.opened, incident.acknowledged_by,
            self.receiver, self.external_url)

    def _open_incidents(self) -> list[Incident]:
        return sorted((i for i in self.incidents.values() if i.is_open),
                      key=lambda i: (i.opened_at, i.id))

    def _apply_silences(self, at: datetime) -> None:
        seen: dict[int, Alert] = {id(a): a for a in self.alerts.values()}
        for incident in self._open_incidents():
            seen.update((id(a), a) for a in incident.alerts.values())
        for alert in seen.values():
            labels = alert.labels
            alert.silenced_by = [s.id for s in self.silences if s.covers(labels, at)]

    def _prune(self) -> None:
        resolved = sorted((i for i in self.incidents.values() if not i.is_open),
                          key=lambda i: (i.resolved_at or i.opened_at, i.id))
        for incident in resolved[:max(0, len(resolved) - self.keep_resolved)]:
            del self.incidents[incident.id]
            for fp, alert in list(self.alerts.items()):
                if alert.incident == incident.id and alert.state == "resolved":
                    del self.alerts[fp]

    # -- people --------------------------------------------------------------------------

    def silence(self, matchers: dict[str, str], until: datetime, created_by: str | None = None,
                comment: str | None = None, starts: datetime | None = None) -> Silence:
        """Mute matching alerts until ``until`` (window time). Matchers on model, monitor
        (alertname), family, column, segment, metric or severity: ``value``, ``!=value``,
        ``=~regex``, ``!~regex``. Silenced alerts are still tracked and grouped."""
        self._silence_seq += 1
        key = json.dumps([self.model, self._silence_seq, matchers, as_utc(until).isoformat()],
                         sort_keys=True, default=str)
        s = Silence(hashlib.sha256(key.encode()).hexdigest()[:12], dict(matchers), until,
                    starts, created_by, comment)
        self.silences.append(s)
        if self.last_start is not None:
            self._apply_silences(self.last_start)
        return s

    def unsilence(self, silence_id: str) -> Silence:
        """Remove a silence before it expires."""
        for i, s in enumerate(self.silences):
            if s.id == silence_id:
                del self.silences[i]
                if self.last_start is not None:
                    self._apply_silences(self.last_start)
                return s
        raise KeyError(f"no silence {silence_id!r}")

    def acknowledge(self, incident_id: str, by: str | None = None) -> Incident:
        """Someone is on it: no more repeat reminders (changes and resolve still notify).
        The first acknowledgement of an open incident people were told about puts an
        ``acknowledge`` notification in :attr:`outbox` (a pager stops paging)."""
        try:
            incident = self.incidents[incident_id]
        except KeyError:
            raise KeyError(f"no incident {incident_id!r} for model {self.model!r}") from None
        first = not incident.acknowledged
        incident.acknowledged, incident.acknowledged_by = True, by
        if first and incident.is_open and incident.notifications:
            shown = [a for a in incident.alerts.values() if not a.silenced]
            self.outbox.append(self._notification(
                "acknowledge", incident, shown, incident.notified_severity or incident.severity))
        return incident

    def take_outbox(self) -> list[Notification]:
        """The notifications waiting in :attr:`outbox`, which is emptied (send them, then
        save the state: a crash in between sends them again)."""
        out, self.outbox = self.outbox, []
        return out

    # -- state ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state, JSON-ready, so a restarted server resumes where it stopped."""
        return {
            "version": STATE_VERSION, "model": self.model, "rules": self.rules.to_dict(),
            "receiver": self.receiver, "external_url": self.external_url,
            "keep_resolved": self.keep_resolved, "windows": self.windows,
            "last_window": self.last_window,
            "last_start": None if self.last_start is None else self.last_start.isoformat(),
            "silence_seq": self._silence_seq,
            "silences": [s.to_dict() for s in self.silences],
            "outbox": [n.to_dict() for n in self.outbox],
            "alerts": [a.to_dict() for a in self.alerts.values()],
            "incidents": [i.to_dict() for i in self.incidents.values()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlertManager:
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"alert state version {d.get('version')!r} is not {STATE_VERSION}")
        am = cls(d["model"], Rules.from_dict(d.get("rules")),
                 [Silence.from_dict(s) for s in d.get("silences", [])],
                 receiver=d.get("receiver", "watchkeeper"),
                 external_url=d.get("external_url", ""),
                 keep_resolved=int(d.get("keep_resolved", 1000)))
        am.windows = int(d.get("windows", 0))
        am.last_window, am.last_start = d.get("last_window"), to_time(d.get("last_start"))
        am._silence_seq = int(d.get("silence_seq", 0))
        am.outbox = [Notification.from_dict(n) for n in d.get("outbox", [])]
        am.alerts = {a["fingerprint"]: Alert.from_dict(a) for a in d.get("alerts", [])}
        am.incidents = {i["id"]: Incident.from_dict(i, am.alerts)
                        for i in d.get("incidents", [])}
        return am

    def __repr__(self) -> str:
        open_ = sum(i.is_open for i in self.incidents.values())
        return (f"AlertManager({self.model!r}, {self.windows} windows, {len(self.alerts)} "
                f"alerts, {open_} open incidents)")


def _checked(f: Finding) -> Severity:
    """A finding's severity, after checking it can be tracked (a clear error, not a crash
    halfway through a window)."""
    if not isinstance(f.monitor, str) or not f.monitor or not isinstance(f.family, str):
        raise ValueError(f"finding {f!r}: monitor and family must be non-empty strings")
    try:
        severity = Severity(f.severity)
    except ValueError:
        raise ValueError(f"finding {f.monitor}: severity {f.severity!r} is not one of "
                         "info, warning, critical") from None
    try:
        float(f.value), float(f.threshold)
    except (TypeError, ValueError):
        raise ValueError(f"finding {f.monitor}: value {f.value!r} and threshold "
                         f"{f.threshold!r} must be numbers") from None
    return severity
