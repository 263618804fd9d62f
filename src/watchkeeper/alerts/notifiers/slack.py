"""Slack: a message through an incoming webhook (``text`` fallback plus Block Kit blocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from watchkeeper.alerts.notifiers.base import ChatWebhook

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification

_ICON = {"critical": ":red_circle:", "warning": ":large_orange_circle:",
         "resolved": ":large_green_circle:"}
MAX_ALERTS = 10  # listed in the message; the rest are counted


class SlackNotifier(ChatWebhook):
    """Posts a short incident message to a Slack incoming webhook.

    >>> SlackNotifier("https://hooks.slack.com/services/T0/B0/XXXXXXXXXXXXXXXXXXXXXXXX")
    SlackNotifier('https://hooks.slack.com/services/***')
    """

    def message(self, notification: Notification) -> dict[str, Any]:
        return slack_message(notification)


def slack_message(n: Notification) -> dict[str, Any]:
    """Slack incoming-webhook body: ``text`` (notifications, fallback) and ``blocks``. The
    notification's key is in the last line and is that block's ``block_id``
    (``watchkeeper:<key>``): Slack drops no copy itself, but a person or a bot reading the
    channel can tell one sent again after a crash between sending and recording it."""
    icon = _ICON["resolved" if n.status == "resolved" else n.severity.value]
    lines = []
    for a in n.alerts[:MAX_ALERTS]:
        state = "~resolved~ " if a.state == "resolved" else ""
        where = f" {a.where}" if a.where else ""
        lines.append(f"• {state}*{a.severity.value}* `{a.what}`{where}: {a.message}")
    if len(n.alerts) > MAX_ALERTS:
        lines.append(f"… and {len(n.alerts) - MAX_ALERTS} more")
    context = f"incident `{n.incident}` · opened {n.opened} · window {n.window} · key `{n.key}`"
    if n.link:
        context += f" · <{n.link}|open>"
    return {
        "text": f"{icon} {n.subject}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": n.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": ("\n".join(lines) or "no alerts")[:3000]}},
            {"type": "context", "block_id": f"watchkeeper:{n.key}"[:255],
             "elements": [{"type": "mrkdwn", "text": context[:3000]}]},
        ],
    }
