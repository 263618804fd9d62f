"""A follower's view: what a server that does not fold answers from.

Followers keep a view for their answers, refreshed from the store: alert state (incidents,
acknowledgements, silences) whenever its stored revision changes, checked every second; the
latest closed windows with their findings (for /metrics), every ``follow_seconds``; windows,
findings, suites and models are read from the store on every request anyway.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from watchkeeper.monitors.base import Finding, Severity
from watchkeeper.online.monitor import LiveWindow
from watchkeeper.profiles.core import Profile
from watchkeeper.run.check import WindowResult
from watchkeeper.server.hub.alert_state import AlertStates
from watchkeeper.server.hub.registry import Registry
from watchkeeper.server.hub.state import ModelState
from watchkeeper.store import Store


class View:
    """Builds and refreshes models' views from the store (no label records, nothing
    judged or saved). ``monotonic`` times the refreshes of the windows."""

    def __init__(self, store: Store, registry: Registry, alert_states: AlertStates, *,
                 window: timedelta, follow_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.registry = registry
        self.alert_states = alert_states
        self.window = window
        self.follow_seconds = follow_seconds
        self.monotonic = monotonic
        self._viewed = float("-inf")  # monotonic() of the last refresh of the windows

    def windows_due(self) -> bool:
        """Whether the windows are to be refreshed now (at most every ``follow_seconds``)."""
        if self.monotonic() - self._viewed < self.follow_seconds:
            return False
        self._viewed = self.monotonic()
        return True

    def model(self, model: str, *, replace: bool = True) -> ModelState | None:
        """A follower's view of a model: its suite versions, its alert state and its latest
        closed windows as stored; put in the registry (unless ``replace`` is False and the
        model is there: that state is returned)."""
        active = self.store.active_suite(model)
        if active is None:
            return None
        state = ModelState(self.registry.generations(model, active.version, restore=False))
        state.alerts, _ = self.alert_states.resume(model, state)
        self.windows(model, state)
        return self.registry.put(model, state, replace=replace)

    def windows(self, model: str, state: ModelState) -> None:
        """Put a model's latest closed windows, as stored, with their stored findings in the
        view (what /metrics reports); only those that changed are read again."""
        live = state.current
        records = self.store.load_windows(model, state="closed", last=live.history,
                                          profiles=False)
        seen = {r.start: (r.updated_at, r.rows) for r in records}
        changed = [r for r in records if state.seen.get(r.start) != seen[r.start]]
        if not changed and seen.keys() == state.seen.keys():
            return
        found: dict[datetime, list[Finding]] = defaultdict(list)
        if changed:
            for f in self.store.findings(model, since=min(r.start for r in changed)):
                found[f.pop("window_start")].append(_finding(f))
        step = self.window.total_seconds()
        old = {w.start: w for w in live.windows.values()}
        windows = {}
        for r in records:
            key = int(np.floor(r.start.timestamp() / step))
            w = old.get(r.start)
            if w is None or state.seen.get(r.start) != seen[r.start]:
                profile = Profile(rows=r.rows, start=r.start, end=r.end)
                w = LiveWindow(key, r.start, r.end, profile, "closed")
                w.result = WindowResult(w.label, r.rows, found.get(r.start, []), profile,
                                        r.start, r.end, dict(r.metrics or {}))
            windows[key] = w
        with self.registry.lock:  # whole dicts swapped: readers never see one half-changed
            live.windows = windows
            for g in state.generations[:-1]:
                g.live.windows = {}
            state.seen = seen


def _finding(d: dict[str, Any]) -> Finding:
    """A finding as the store gives it back (for a follower's view)."""
    return Finding(d["monitor"], d["family"], d.get("column"),
                   float("nan") if d.get("value") is None else d["value"],
                   float("nan") if d.get("threshold") is None else d["threshold"],
                   Severity(d["severity"]), d.get("message") or "", d.get("evidence") or {},
                   d.get("window"), d.get("metric"), d.get("segment"))
