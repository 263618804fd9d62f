"""Alerts and incidents: findings become alerts (pending → firing → resolved), related
alerts become incidents, and incidents are notified once, then only on change.

The core is pure and synchronous; ``watchkeeper.alerts.notifiers`` delivers notifications.
"""

from watchkeeper.alerts.incidents import Incident
from watchkeeper.alerts.lifecycle import Alert
from watchkeeper.alerts.manager import AlertManager
from watchkeeper.alerts.notification import Notification
from watchkeeper.alerts.rules import GroupRule, InhibitRule, Rules
from watchkeeper.alerts.silences import Silence

__all__ = ["Alert", "AlertManager", "GroupRule", "Incident", "InhibitRule", "Notification",
           "Rules", "Silence"]
