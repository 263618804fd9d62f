"""The models a server knows and the suite versions each has in service.

A model may have several suite versions in service at once: a newly activated version
(deploy or rollback) takes the windows that start after its activation; the window under
way, and late events for earlier windows, stay with the version that had them. Every
window records the version it was evaluated with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import numpy as np

from watchkeeper.alerts import AlertManager, Rules
from watchkeeper.online.monitor import OnlineMonitor
from watchkeeper.server.hub.lease import Fenced
from watchkeeper.server.hub.state import FIRST, LAST, Generation, ModelState
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile
from watchkeeper.suite.core import Suite


class Registry:
    """Each model's state, by name. ``lock`` guards the dict and what readers see of each
    model (its alert state as shown, a follower's windows): it is held for short swaps
    only, never around store I/O or a fold step."""

    def __init__(self, store: Store, writer: Fenced, *, window: timedelta, grace: timedelta,
                 retention: timedelta, clock: Callable[[], float],
                 rules: Rules | None = None) -> None:
        self.store = store
        self.writer = writer
        self.window = window
        self.grace = grace
        self.retention = retention
        self.clock = clock
        self.rules = rules
        self.models: dict[str, ModelState] = {}
        self.lock = threading.RLock()

    # -- locked reads and writes -------------------------------------------------------------
    def get(self, model: str) -> ModelState | None:
        with self.lock:
            return self.models.get(model)

    def states(self) -> dict[str, ModelState]:
        """Every model's state (a copy of the dict: models added later are not in it)."""
        with self.lock:
            return dict(self.models)

    def put(self, model: str, state: ModelState, *, replace: bool = True) -> ModelState:
        """Put ``state`` in service (unless ``replace`` is False and the model has one:
        that one is returned)."""
        with self.lock:
            if not replace and model in self.models:
                return self.models[model]
            self.models[model] = state
            return state

    # -- suite versions ----------------------------------------------------------------------
    def monitor(self, model: str, version: int) -> OnlineMonitor:
        """An OnlineMonitor of a stored suite version, saving through the fenced writer."""
        text = self.store.suite_version(model, version).text
        suite = Suite.from_dict(suitefile.parse(text, f"{model} v{version}"))
        return OnlineMonitor(suite, model=model, window=self.window, grace=self.grace,
                             store=self.writer, suite_version=version,  # type: ignore[arg-type]
                             retention=self.retention, clock=self.clock)

    def generations(self, model: str, active: int, restore: bool) -> list[Generation]:
        """The versions in service, by the windows they were evaluated with; each one's
        windows restored from the store when ``restore``."""
        step = self.window.total_seconds()
        runs: list[tuple[int, int]] = []  # (version, first key) of consecutive windows
        last_key = FIRST - 1
        for record in self.store.load_windows(model, profiles=False):
            key = int(np.floor(record.start.timestamp() / step))
            last_key = max(last_key, key)
            version = record.suite_version or active
            if not runs or runs[-1][0] != version:
                runs.append((version, key))
        if not runs or runs[-1][0] != active:
            runs.append((active, last_key + 1))
        out = []
        for i, (version, first) in enumerate(runs):
            live = self.monitor(model, version)
            last = runs[i + 1][1] if i + 1 < len(runs) else LAST
            if restore:
                live.restore(range(first if i else FIRST, last))
            out.append(Generation(version, first if i else FIRST, live, last))
        return out

    def activate(self, model: str, version: int) -> ModelState | None:
        """Put a stored version in service from the next window on (deploy or rollback);
        returns the model's state if the model is new here (its alert state not saved yet),
        else None."""
        live = self.monitor(model, version)
        with self.lock:
            state = self.models.get(model)
            if state is None:
                manager = AlertManager(model, self.rules or live.suite.rules)
                state = ModelState([Generation(version, FIRST, live)], manager)
                self.models[model] = state
                return state
            for shown in (state.alerts, state.work):  # the new version's rules
                if shown is not None:
                    shown.rules = self.rules or live.suite.rules
            boundary = int(np.floor(float(self.clock()) / self.window.total_seconds())) + 1
            generations = list(state.generations)  # a new list: the fold may be iterating
            current = generations[-1]
            if current.first >= boundary:  # activated twice within one window: replace
                generations.pop()
            else:
                current.last = boundary
            generations.append(Generation(version, boundary, live))
            state.generations = generations
            return None
