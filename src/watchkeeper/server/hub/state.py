"""What the hub keeps per model: the suite versions in service and the alert state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from watchkeeper.alerts import AlertManager
from watchkeeper.online.monitor import OnlineMonitor
from watchkeeper.run.check import WindowResult
from watchkeeper.suite.core import Suite

FIRST = -(2**62)
LAST = 2**62


@dataclass
class Generation:
    """A suite version serving the windows with keys in [first, last)."""

    version: int
    first: int
    live: OnlineMonitor
    last: int = LAST


@dataclass
class ModelState:
    generations: list[Generation] = field(default_factory=list)
    #: the alert state as readers see it: never changed once shown (a change is made on a
    #: copy, then shown in its place), so request threads read it without waiting
    alerts: AlertManager | None = None
    alerts_unsaved: bool = False  # the fold's alert state changed since it was last saved
    revision: int = 0  # of the stored alert state that the fold's alert state builds on
    shown: int = 0  # stored revision that ``alerts`` shows (or builds on, if unsaved)
    #: the fold's alert state while it is not saved (its judged windows are not stored yet)
    work: AlertManager | None = None
    #: windows judged since the alert state was last saved (replayed onto a newer one)
    judged: list[WindowResult] = field(default_factory=list)
    #: windows in memory changed but not saved (a step failed half-way): reload them
    broken: bool = False
    #: a follower's view, to be rebuilt in full by the model's next step (start, takeover)
    rebuilding: bool = False
    #: follower: (updated_at, rows) of each window in the view, by start
    seen: dict[datetime, tuple[Any, int]] = field(default_factory=dict)
    #: each version's counters (late rows, bad timestamps...) as of the windows last saved:
    #: a reload (after a failed step) starts from them, not from zero
    counted: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def current(self) -> OnlineMonitor:
        return self.generations[-1].live

    def route(self, table: pa.Table) -> list[tuple[OnlineMonitor, pa.Table]]:
        keys = self.current.keys(table)
        out = []
        for g in self.generations:
            mask = (keys >= g.first) & (keys < g.last)
            if mask.all():
                return [(g.live, table)]
            if mask.any():
                out.append((g.live, table.filter(pa.array(mask))))
        return out


@dataclass(frozen=True)
class AlertView:
    """A model's alert state as readers see it (never changed once shown), with the suite
    in service (for the incidents' advice)."""

    alerts: AlertManager
    suite: Suite
