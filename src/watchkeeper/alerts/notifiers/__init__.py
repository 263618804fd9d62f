"""Deliver notifications: Alertmanager-compatible webhook, Slack, e-mail, log; and a
Dispatcher that retries with backoff, never raises and keeps a notification log."""

from watchkeeper.alerts.notifiers.base import Notifier, mask_url
from watchkeeper.alerts.notifiers.dispatch import Delivery, Dispatcher
from watchkeeper.alerts.notifiers.log import LogNotifier
from watchkeeper.alerts.notifiers.slack import SlackNotifier, slack_message
from watchkeeper.alerts.notifiers.smtp import EmailNotifier
from watchkeeper.alerts.notifiers.webhook import WebhookNotifier

__all__ = ["Delivery", "Dispatcher", "EmailNotifier", "LogNotifier", "Notifier",
           "SlackNotifier", "WebhookNotifier", "mask_url", "slack_message"]
