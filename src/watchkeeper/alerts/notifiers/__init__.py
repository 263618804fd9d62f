"""Deliver notifications: Alertmanager-compatible webhook, Slack, Microsoft Teams, PagerDuty,
Opsgenie, e-mail, log; routing by severity and family; and a Dispatcher that retries with
backoff, never raises and keeps a notification log."""

from watchkeeper.alerts.notifiers.base import Notifier, mask_url, read_secret
from watchkeeper.alerts.notifiers.dispatch import Delivery, Dispatcher
from watchkeeper.alerts.notifiers.log import LogNotifier
from watchkeeper.alerts.notifiers.opsgenie import OpsgenieNotifier, opsgenie_request
from watchkeeper.alerts.notifiers.pagerduty import PagerDutyNotifier, pagerduty_event
from watchkeeper.alerts.notifiers.routing import Match, Routed, parse_routes, route
from watchkeeper.alerts.notifiers.slack import SlackNotifier, slack_message
from watchkeeper.alerts.notifiers.smtp import EmailNotifier
from watchkeeper.alerts.notifiers.teams import TeamsNotifier, teams_message
from watchkeeper.alerts.notifiers.webhook import WebhookNotifier

__all__ = ["Delivery", "Dispatcher", "EmailNotifier", "LogNotifier", "Match", "Notifier",
           "OpsgenieNotifier", "PagerDutyNotifier", "Routed", "SlackNotifier", "TeamsNotifier",
           "WebhookNotifier", "mask_url", "opsgenie_request", "pagerduty_event",
           "parse_routes", "read_secret", "route", "slack_message", "teams_message"]
