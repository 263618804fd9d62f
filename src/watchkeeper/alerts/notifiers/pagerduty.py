"""PagerDuty: Events API v2 (trigger, acknowledge, resolve), one dedup key per incident."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from watchkeeper.alerts.notifiers.base import MASK, mask_url, post_json, url_secrets
from watchkeeper.io.times import as_utc

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
#: Notification kind → event_action. An update or a repeat triggers again with the same
#: dedup key: PagerDuty adds it to the open incident, it does not open another.
ACTIONS = {"open": "trigger", "update": "trigger", "repeat": "trigger",
           "acknowledge": "acknowledge", "resolve": "resolve"}
SUMMARY_CHARS = 1024  # PagerDuty's limit on payload.summary
DEDUP_CHARS = 255
MAX_ALERTS = 20  # in custom_details; the rest are counted


def dedup_key(n: Notification) -> str:
    """The incident's key at PagerDuty, the same for every event of it.

    >>> from datetime import UTC, datetime
    >>> from watchkeeper.alerts.notification import Notification
    >>> from watchkeeper.monitors.base import Severity
    >>> dedup_key(Notification("open", "3f9a0c1d2e4b", "churn", "t", Severity.WARNING, "w",
    ...                        datetime(2024, 1, 1, tzinfo=UTC)))
    'watchkeeper/churn/3f9a0c1d2e4b'
    """
    return f"watchkeeper/{n.model}/{n.incident}"[:DEDUP_CHARS]


def alert_details(n: Notification, limit: int) -> list[dict[str, Any]]:
    """The notification's alerts as plain dicts (for custom_details, Opsgenie details)."""
    out: list[dict[str, Any]] = []
    for a in n.alerts[:limit]:
        item: dict[str, Any] = {"monitor": a.monitor, "family": a.family,
                                "severity": a.severity.value, "state": a.state,
                                "value": f"{a.value:.6g}", "threshold": f"{a.threshold:.6g}",
                                "message": a.message}
        for key in ("column", "segment", "metric"):
            if getattr(a, key):
                item[key] = getattr(a, key)
        out.append(item)
    return out


def pagerduty_event(n: Notification, routing_key: str, source: str = "watchkeeper"
                    ) -> dict[str, Any]:
    """The Events API v2 body of one notification: ``routing_key``, ``event_action``
    (trigger, acknowledge, resolve), ``dedup_key`` (per incident); a trigger carries
    ``payload`` (summary ≤ 1024 characters, source, severity, timestamp, component = the
    model, group = the alerts' families, class = their monitors, custom_details) and
    ``links`` (the incident's page, with an external URL)."""
    action = ACTIONS[n.kind]
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                            "dedup_key": dedup_key(n)}
    if action != "trigger":
        return body  # PagerDuty needs only the key to acknowledge or resolve
    families = sorted({a.family for a in n.alerts})
    monitors = sorted({a.monitor for a in n.alerts})
    details: dict[str, Any] = {
        "incident": n.incident, "model": n.model, "kind": n.kind, "window": n.window,
        "opened": n.opened, "notification": n.number,
        "alerts": alert_details(n, MAX_ALERTS)}
    if len(n.alerts) > MAX_ALERTS:
        details["more_alerts"] = len(n.alerts) - MAX_ALERTS
    body["payload"] = {
        "summary": n.subject[:SUMMARY_CHARS], "source": source,
        "severity": n.severity.value,  # critical, warning (or info): PagerDuty's own names
        "timestamp": as_utc(n.at).isoformat(), "component": n.model,
        "group": ",".join(families)[:255], "class": ",".join(monitors)[:255],
        "custom_details": details}
    if n.link:
        body["links"] = [{"href": n.link, "text": "watchkeeper incident"}]
    return body


class PagerDutyNotifier:
    """Sends each notification to PagerDuty's Events API v2: open, update and repeat
    trigger (deduplicated by the incident's key), acknowledge acknowledges, resolve
    resolves. ``routing_key`` is the integration key of a service (read it with
    ``read_secret``); it is never printed or logged.

    >>> PagerDutyNotifier("R0UTINGKEY0123456789abcdef012345")
    PagerDutyNotifier('https://events.pagerduty.com/v2/enqueue', routing_key='***')
    """

    acknowledges = True

    def __init__(self, routing_key: str, url: str = EVENTS_URL, *, source: str = "watchkeeper",
                 timeout: float = 10.0) -> None:
        self.routing_key = routing_key
        self.url = url
        self.source = source
        self.timeout = timeout

    def send(self, notification: Notification) -> None:
        post_json(self.url, pagerduty_event(notification, self.routing_key, self.source),
                  timeout=self.timeout)

    def secrets(self) -> list[str]:
        return [self.routing_key, *url_secrets(self.url)]

    def __repr__(self) -> str:
        return f"PagerDutyNotifier({mask_url(self.url)!r}, routing_key={MASK!r})"
