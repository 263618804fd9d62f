"""The server's engine: per model, OnlineMonitors fed from the durable event log.

Ingest only appends to the store's event log (and answers once that commit is done);
a background thread folds new events into each model's windows, closes and evaluates
windows that are due, and saves windows, findings and the model's watermark (the last
event folded) in one transaction. After a crash, windows are reloaded and the events past
the watermark are folded again, so every acknowledged event counts exactly once.

Each model's alert state (alerts, incidents, acknowledgements, silences, what was notified)
is saved after the windows that changed it, and after every acknowledgement or silence
before it is answered. A restart resumes it and first judges the closed windows it had not
judged yet: an incident stays open under its id and is not notified again; a notification
is sent at least once (a crash between sending it and saving the state sends it again).
Prediction records kept for late labels are rebuilt from the event log with the labels
already applied, so a corrected label replaces the earlier one as without a restart.

A model may have several suite versions in service at once: a newly activated version
(deploy or rollback) takes the windows that start after its activation; the window under
way, and late events for earlier windows, stay with the version that had them. Every
window records the version it was evaluated with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from watchkeeper import suitefile
from watchkeeper.alerts import AlertManager, Incident, Rules, Silence
from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import WatchkeeperError
from watchkeeper.monitors.security import REJECTED
from watchkeeper.online import OnlineMonitor, save
from watchkeeper.pii import key_from_env, protect
from watchkeeper.server.ingest import from_ipc, to_ipc
from watchkeeper.service import TS
from watchkeeper.store import Store
from watchkeeper.suite import Suite
from watchkeeper.values import epoch_seconds

log = logging.getLogger("watchkeeper.server")
FIRST = -(2**62)
LAST = 2**62

T = TypeVar("T")


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
    alerts: AlertManager | None = None
    alerts_unsaved: bool = False  # the alert state changed since it was last saved

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


@dataclass
class Hub:
    store: Store
    window: timedelta = timedelta(minutes=5)
    grace: timedelta = timedelta(minutes=1)
    retention: timedelta = timedelta(days=7)
    poll_seconds: float = 0.2
    models: dict[str, ModelState] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    clock: object = time.time
    pii_key: bytes | None = field(default_factory=key_from_env, repr=False)
    dispatcher: Dispatcher | None = None  # where incident notifications go
    rules: Rules | None = None
    _rejected: dict[str, Counter[str]] = field(default_factory=dict)
    #: rows each SDK source reports having dropped (cumulative), per model
    sdk_dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    _folded: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- models and suite versions ---------------------------------------------------------
    def _monitor(self, model: str, version: int) -> OnlineMonitor:
        text = self.store.suite_version(model, version).text
        suite = Suite.from_dict(suitefile.parse(text, f"{model} v{version}"))
        return OnlineMonitor(suite, model=model, window=self.window, grace=self.grace,
                             store=self.store, suite_version=version,
                             retention=self.retention, clock=self.clock)

    def load(self) -> None:
        """Start every model that has an active suite, resuming from the store: windows
        keep the version they were evaluated with; new windows get the active version."""
        for model in self.store.models():
            active = self.store.active_suite(model)
            if active is None:
                continue
            step = self.window.total_seconds()
            runs: list[tuple[int, int]] = []  # (version, first key) of consecutive windows
            for record in self.store.load_windows(model):
                key = int(np.floor(record.start.timestamp() / step))
                version = record.suite_version or active.version
                if not runs or runs[-1][0] != version:
                    runs.append((version, key))
            if not runs or runs[-1][0] != active.version:
                last_key = max((int(np.floor(r.start.timestamp() / step))
                                for r in self.store.load_windows(model)), default=FIRST - 1)
                runs.append((active.version, last_key + 1))
            state = ModelState()
            for i, (version, first) in enumerate(runs):
                live = self._monitor(model, version)
                last = runs[i + 1][1] if i + 1 < len(runs) else LAST
                live.restore(range(first if i else FIRST, last))
                state.generations.append(Generation(version, first if i else FIRST, live, last))
            self._remember(model, state)
            state.alerts, resumed = self._resume_alerts(model, state)
            with self._lock:
                self.models[model] = state
                if resumed:  # windows closed before a crash but not judged yet
                    self._alert(model, state, [
                        g.live.windows[k].result for g in state.generations
                        for k in sorted(g.live.windows)
                        if g.live.windows[k].state == "closed"
                        and g.live.windows[k].result is not None])
                else:  # a store from before alert states were saved: judge from now on
                    self._save_alerts(model, state)

    def _resume_alerts(self, model: str, state: ModelState) -> tuple[AlertManager, bool]:
        """The model's saved alert state under the rules in force, and whether there was
        one (a state that cannot be read is logged and started afresh)."""
        rules = self.rules or state.current.suite.rules
        saved = self.store.alert_state(model)
        if saved is not None:
            try:
                manager = AlertManager.from_dict(saved)
            except (ValueError, KeyError, TypeError) as exc:
                self.counters["alert_state_errors"] += 1
                log.error("model %s: cannot resume the saved alert state (%s); its open "
                          "incidents, acknowledgements and silences are lost", model, exc)
            else:
                manager.rules = rules  # the suite (or server) in force decides, not the saved
                return manager, True
        return AlertManager(model, rules), False

    def _save_alerts(self, model: str, state: ModelState) -> None:
        """Persist the model's alert state; if that fails it is tried again every step."""
        if state.alerts is None:
            return
        state.alerts_unsaved = True
        self.store.save_alert_state(model, state.alerts.to_dict())
        state.alerts_unsaved = False

    def _remember(self, model: str, state: ModelState) -> None:
        """Rebuild prediction records of already folded events, and put the labels already
        folded back on them in log order (for late and corrected labels)."""
        watermark = self.store.watermark(model)
        last = 0
        while last < watermark:
            events = [e for e in self.store.events_after(model, last, limit=50)
                      if e.seq <= watermark]
            if not events:
                return
            for event in events:
                table = from_ipc(event.payload)
                if event.kind == "labels":
                    for g in state.generations:
                        try:
                            g.live.remember_labels(table)
                        except WatchkeeperError as exc:  # it failed when folded, too
                            log.warning("model %s: labels of batch %d not joined again: %s",
                                        model, event.seq, exc)
                else:
                    for live, part in state.route(_arrived(table, event.received_at
                                                           .timestamp())):
                        live.remember(part)
                self._folded.setdefault(model, deque()).append(
                    (event.seq, event.received_at.timestamp()))
                last = event.seq

    def activate(self, model: str, version: int) -> None:
        """Put a stored version in service from the next window on (deploy or rollback)."""
        live = self._monitor(model, version)
        with self._lock:
            state = self.models.get(model)
            if state is None:
                state = ModelState([Generation(version, FIRST, live)],
                                   AlertManager(model, self.rules or live.suite.rules))
                self.models[model] = state
                self._save_alerts(model, state)  # so a restart knows it judged from here
                return
            if state.alerts is not None:  # the new version's rules, as after a restart
                state.alerts.rules = self.rules or live.suite.rules
            boundary = int(np.floor(float(self.clock()) / self.window.total_seconds())) + 1
            current = state.generations[-1]
            if current.first >= boundary:  # activated twice within one window: replace
                state.generations.pop()
            else:
                current.last = boundary
            state.generations.append(Generation(version, boundary, live))

    def register(self, model: str, suite_text: str, *, created_by: str | None = None,
                 note: str | None = None) -> int:
        """Validate and store a suite version for a model and put it in service. An invalid
        suite raises SuiteError (naming the field) and changes nothing."""
        Suite.from_dict(suitefile.parse(suite_text, "suite"))
        version = self.store.add_suite(model, suite_text, created_by=created_by, note=note)
        self.activate(model, version.version)
        return version.version

    def rollback(self, model: str, version: int) -> None:
        self.store.activate(model, version)
        self.activate(model, version)

    # -- people (request threads): durable once these return ------------------------------
    def _manager(self, model: str) -> tuple[ModelState, AlertManager]:
        state = self.models.get(model)
        if state is None or state.alerts is None:
            raise KeyError(f"no suite deployed for model {model!r}")
        return state, state.alerts

    def acknowledge(self, model: str, incident_id: str, by: str | None = None) -> Incident:
        """Acknowledge an incident (KeyError if there is none) and save that."""
        return self._change(model, lambda m: m.acknowledge(incident_id, by))

    def silence(self, model: str, matchers: dict[str, str], until: Any, *,
                created_by: str | None = None, comment: str | None = None) -> Silence:
        """Add a silence (ValueError for bad matchers) and save it."""
        return self._change(model, lambda m: m.silence(matchers, until, created_by=created_by,
                                                       comment=comment))

    def unsilence(self, model: str, silence_id: str) -> Silence:
        """Remove a silence before it ends (KeyError if there is none) and save that."""
        return self._change(model, lambda m: m.unsilence(silence_id))

    def _change(self, model: str, change: Callable[[AlertManager], T]) -> T:
        """An operator's change to a model's alert state, saved before it is answered."""
        with self._lock:
            state, manager = self._manager(model)
            out = change(manager)
            self._save_alerts(model, state)
            return out

    # -- ingest (request thread) -------------------------------------------------------------
    def append(self, model: str, table: pa.Table, kind: str) -> int:
        """Store a batch durably (personal data hashed or dropped first); returns its seq."""
        state = self.models[model]
        modes = {}
        for g in state.generations:  # any version's personal-data columns
            modes.update(g.live.suite.schema.pii)
        if modes:
            table = protect(table, modes, self.pii_key)
        seq = self.store.append_events(model, to_ipc(table), table.num_rows, kind)
        self.counters[f"{kind}_rows:{model}"] += table.num_rows
        self.counters[f"{kind}_batches:{model}"] += 1
        self._wake.set()
        return seq

    def reject(self, model: str, reason: str) -> None:
        """Count a refused request (invalid payload, authentication) against the model's
        current window, where the security monitors see it."""
        self.counters[f"rejected_{reason}"] += 1
        with self._lock:
            self._rejected.setdefault(model, Counter())[reason] += 1
        self._wake.set()

    def _fold_rejections(self, model: str, state: ModelState) -> None:
        pending = self._rejected.pop(model, None)
        if not pending:
            return
        live = state.generations[-1].live
        key = int(np.floor(float(self.clock()) / self.window.total_seconds()))
        counts = np.array([pending["invalid"], pending["auth"]], dtype=np.int64)
        w = live._window(key)
        w.profile.joint[REJECTED] = w.profile.joint.get(REJECTED, 0) + counts
        live._dirty.add(key)

    def _sync_version(self, model: str, state: ModelState) -> None:
        """Put in service a version activated in the store by someone else (another server
        process, ``Store.add_suite``/``activate``)."""
        active = self.store.active_suite(model)
        if active is not None and active.version != state.generations[-1].version:
            self.activate(model, active.version)

    def _expire_events(self, model: str) -> None:
        """The event log keeps folded events for the retention (late labels and restarts
        need them), then forgets them."""
        folded = self._folded.get(model)
        horizon = float(self.clock()) - self.retention.total_seconds()
        last = None
        while folded and folded[0][1] < horizon:
            last = folded.popleft()[0]
        if last is not None:
            self.counters[f"expired_events:{model}"] += self.store.delete_events_before(
                model, last + 1)

    # -- folding (background thread) ---------------------------------------------------------
    def _fold(self, model: str, state: ModelState) -> None:
        last = self.store.watermark(model)
        while True:
            events = self.store.events_after(model, last, limit=50)
            if not events:
                return
            pending: list[pa.Table] = []  # consecutive event batches, profiled together
            for event in events:
                table = from_ipc(event.payload)
                if event.kind == "labels":
                    self._ingest(state, pending)
                    unmatched = [g.live.ingest_labels(table) for g in state.generations]
                    matched = sum(table.num_rows - u for u in unmatched)
                    self.counters[f"unmatched_labels:{model}"] += table.num_rows - matched
                else:
                    pending.append(table)
                self._folded.setdefault(model, deque()).append(
                    (event.seq, event.received_at.timestamp()))
                last = event.seq
            self._ingest(state, pending)
            # every generation's windows and the watermark in one transaction
            records, findings = [], []
            for g in state.generations:
                r, f = g.live.pending()
                records += r
                findings += f
            save(self.store, model, records, findings, last)

    @staticmethod
    def _ingest(state: ModelState, tables: list[pa.Table]) -> None:
        """Profile a run of event batches at once (a profile costs ~2 ms per call whatever
        its size, so many small batches are far cheaper together); batches whose columns
        do not line up are profiled one by one."""
        if not tables:
            return
        try:
            batches = [pa.concat_tables(tables, promote_options="default")] \
                if len(tables) > 1 else tables
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            batches = list(tables)
        for table in batches:
            for live, part in state.route(table):
                live.ingest(part)
        tables.clear()

    def step(self, now: float | None = None) -> None:
        """Fold new events of every model, close due windows, persist."""
        with self._lock:
            models = dict(self.models)
        for model, state in models.items():
            with self._lock:
                self._sync_version(model, state)
                self._fold(model, state)
                self._fold_rejections(model, state)
                self._expire_events(model)
                closed = [w for g in state.generations for w in g.live.tick(now)]
                self._alert(model, state, closed)

    def _alert(self, model: str, state: ModelState, closed: list[Any]) -> None:
        """Closed windows' findings → alerts and incidents → notifications, in time order."""
        manager = state.alerts
        if manager is None:
            return
        for w in sorted(closed, key=lambda w: w.start):
            if manager.last_start is not None and w.start <= manager.last_start:
                continue  # re-evaluated after late data: already judged
            notifications = manager.process(w.label, w.start, w.findings)
            state.alerts_unsaved = True
            self.counters[f"notifications:{model}"] += len(notifications)
            if notifications and self.dispatcher is not None:
                self.dispatcher.send_all(notifications)
        if state.alerts_unsaved:  # after sending: a crash in between sends it again
            self._save_alerts(model, state)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except WatchkeeperError as exc:  # a bad batch must not stop the others
                self.counters["fold_errors"] += 1
                log.error("folding events failed: %s", exc)
            except Exception:
                self.counters["fold_errors"] += 1
                log.exception("folding events failed")
                time.sleep(1.0)
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def start(self) -> None:
        self.load()
        self._thread = threading.Thread(target=self.run, name="watchkeeper-hub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            for model, state in self.models.items():
                for g in state.generations:
                    g.live.flush(watermark=None)
                if state.alerts_unsaved:
                    self._save_alerts(model, state)


def _arrived(table: pa.Table, at: float) -> pa.Table:
    """Rows without an event time get ``at`` (when their batch arrived), the time they were
    windowed by when folded, give or take the moment it took to fold them."""
    if TS not in table.column_names:
        return table.append_column(TS, pa.array(np.full(table.num_rows, at)))
    ts = epoch_seconds(table.column(TS))
    missing = ~np.isfinite(ts)
    if not missing.any():
        return table
    return table.set_column(table.column_names.index(TS), TS,
                            pa.array(np.where(missing, at, ts)))
