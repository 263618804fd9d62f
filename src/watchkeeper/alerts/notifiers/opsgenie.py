"""Opsgenie: the Alert API (create, acknowledge, close by alias), GenieKey authentication."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from watchkeeper.alerts.notifiers.base import MASK, mask_url, post_json, url_secrets
from watchkeeper.alerts.notifiers.pagerduty import alert_details, dedup_key

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification

API_URL = "https://api.opsgenie.com"  # EU accounts: https://api.eu.opsgenie.com
PRIORITY = {"critical": "P1", "warning": "P3", "info": "P5"}
MESSAGE_CHARS = 130  # Opsgenie's limits
ALIAS_CHARS = 512
DESCRIPTION_CHARS = 15000
DETAIL_CHARS = 8000
MAX_ALERTS = 20


def opsgenie_request(n: Notification, source: str = "watchkeeper") -> tuple[str, dict[str, Any]]:
    """The path (under the API URL) and JSON body of one notification: open, update and
    repeat create an alert (Opsgenie folds a create with the alias of an open alert into
    it), acknowledge acknowledges and resolve closes it, both by alias."""
    alias = dedup_key(n)[:ALIAS_CHARS]
    if n.kind in ("acknowledge", "resolve"):
        action = "acknowledge" if n.kind == "acknowledge" else "close"
        body: dict[str, Any] = {"source": source, "note": n.subject}
        if n.kind == "acknowledge" and n.acknowledged_by:
            body["user"] = n.acknowledged_by[:100]
        return f"/v2/alerts/{quote(alias, safe='')}/{action}?identifierType=alias", body
    details = {"incident": n.incident, "model": n.model, "window": n.window,
               "opened": n.opened, "kind": n.kind,
               "alerts": json.dumps(alert_details(n, MAX_ALERTS))[:DETAIL_CHARS]}
    if n.link:
        details["link"] = n.link
    body = {"message": n.subject[:MESSAGE_CHARS], "alias": alias,
            "description": n.text()[:DESCRIPTION_CHARS], "priority": PRIORITY[n.severity.value],
            "source": source, "entity": n.model,
            "tags": sorted({"watchkeeper", f"model:{n.model}",
                            *(f"family:{a.family}" for a in n.alerts)})[:20],
            "details": details}
    return "/v2/alerts", body


class OpsgenieNotifier:
    """Sends each notification to Opsgenie's Alert API with ``Authorization: GenieKey
    <api_key>`` (read it with ``read_secret``; never printed or logged). Priority: critical
    P1, warning P3.

    >>> OpsgenieNotifier("0123abcd-0123-abcd-0123-0123456789ab")
    OpsgenieNotifier('https://api.opsgenie.com', api_key='***')
    """

    acknowledges = True

    def __init__(self, api_key: str, url: str = API_URL, *, source: str = "watchkeeper",
                 timeout: float = 10.0) -> None:
        self.api_key = api_key
        self.url = url.rstrip("/")
        self.source = source
        self.timeout = timeout

    def send(self, notification: Notification) -> None:
        path, body = opsgenie_request(notification, self.source)
        post_json(self.url + path, body, {"Authorization": f"GenieKey {self.api_key}"},
                  self.timeout)

    def secrets(self) -> list[str]:
        return [self.api_key, *url_secrets(self.url)]

    def __repr__(self) -> str:
        return f"OpsgenieNotifier({mask_url(self.url)!r}, api_key={MASK!r})"
