"""Run a sequence of windows through the whole chain, as the server does: check each
window, turn findings into alerts and incidents, and advise on every incident.

Used to test alerting end to end (scenario replays) and to try rules on history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from watchkeeper.alerts import AlertManager, Notification, Rules
from watchkeeper.alerts.advice import Advice, advise
from watchkeeper.io.tables import to_table
from watchkeeper.monitors.base import Severity
from watchkeeper.run.check import CheckResult, WindowResult
from watchkeeper.suite.core import Suite


@dataclass
class Replay:
    result: CheckResult
    manager: AlertManager
    notifications: list[Notification] = field(default_factory=list)
    naive_notifications: int = 0  # what per-finding alerting would have sent
    importance: dict[str, float] = field(default_factory=dict)  # ranks causes in advice

    def advice(self) -> dict[str, Advice]:
        return {i: advise(inc, self.importance) for i, inc in self.manager.incidents.items()}


def replay(suite: Suite, windows: Iterable[tuple[str, datetime, Any]], *,
           length: timedelta = timedelta(days=1), rules: Rules | None = None,
           model: str = "model") -> Replay:
    """``windows``: (label, start, data) in time order, each ``length`` long."""
    result = CheckResult(suite=suite.path or suite.name, evaluator=suite)
    out = Replay(result, AlertManager(model, rules or suite.rules),
                 importance=suite.importance)
    for label, start, data in windows:
        p = suite.profile(to_table(data))
        p.start, p.end = start, start + length
        result.windows.append(WindowResult(label, p.rows, [], p, p.start, p.end))
        result.refresh(len(result.windows) - 1)
        suite.evaluate_sequence(result)
        findings = result.windows[-1].findings
        out.naive_notifications += sum(f.severity.rank >= Severity.WARNING.rank
                                       for f in findings)
        out.notifications += out.manager.process(label, start, findings)
    return out
