"""Microsoft Teams: a message with an Adaptive Card, through a Workflows webhook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from watchkeeper.alerts.notifiers.base import ChatWebhook

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification

MAX_ALERTS = 10  # listed in the card; the rest are counted
_COLOR = {"critical": "Attention", "warning": "Warning", "info": "Default"}


def teams_message(n: Notification) -> dict[str, Any]:
    """The body a Teams Workflows webhook ("When a Teams webhook request is received")
    takes: ``{"type": "message", "attachments": [Adaptive Card 1.4]}``: the subject, one
    line per alert, the incident's facts and a button to its page. The facts end with the
    notification's key: Teams drops no copy itself, but a person or a flow reading the card
    can tell one sent again after a crash between sending and recording it."""
    color = "Good" if n.status == "resolved" else _COLOR[n.severity.value]
    if n.kind == "acknowledge":
        color = "Accent"
    lines = []
    for a in n.alerts[:MAX_ALERTS]:
        state = "(resolved) " if a.state == "resolved" else ""
        where = f" {a.where}" if a.where else ""
        lines.append(f"- {state}**{a.severity.value}** {a.what}{where}: {a.message}")
    if len(n.alerts) > MAX_ALERTS:
        lines.append(f"- … and {len(n.alerts) - MAX_ALERTS} more")
    facts = [{"title": "Model", "value": n.model}, {"title": "Incident", "value": n.incident},
             {"title": "Severity", "value": n.severity.value},
             {"title": "Opened", "value": n.opened}, {"title": "Window", "value": n.window},
             {"title": "Key", "value": n.key}]
    if n.kind == "acknowledge" and n.acknowledged_by:
        facts.append({"title": "Acknowledged by", "value": n.acknowledged_by})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": n.subject, "weight": "Bolder", "size": "Medium",
             "color": color, "wrap": True},
            {"type": "TextBlock", "text": "\n".join(lines) or "no alerts", "wrap": True},
            {"type": "FactSet", "facts": facts},
        ],
    }
    if n.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open incident", "url": n.link}]
    return {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
        "content": card}]}


class TeamsNotifier(ChatWebhook):
    """Posts an Adaptive Card to a Microsoft Teams Workflows webhook URL (its signature is
    a secret: masked when printed, never logged).

    >>> TeamsNotifier("https://prod-01.westus.logic.azure.com/workflows/0a1b2c3d4e5f6a7b8c9d/"
    ...               "triggers/manual/paths/invoke?api-version=2016-06-01&sig=s3cret")
    TeamsNotifier('https://prod-01.westus.logic.azure.com/workflows/***/triggers/manual/paths/invoke?***')
    """

    def message(self, notification: Notification) -> dict[str, Any]:
        return teams_message(notification)
