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
Prediction records kept for late labels (ids, window, codes, the label joined so far) are
in the store, written with the windows and the watermark in their transaction: a restart
rebuilds nothing for them, a label batch looks its ids up there, and a corrected label
replaces the earlier one as without a restart. They are forgotten after the retention.

A model may have several suite versions in service at once: a newly activated version
(deploy or rollback) takes the windows that start after its activation; the window under
way, and late events for earlier windows, stay with the version that had them. Every
window records the version it was evaluated with.

Several server processes may share one store (``lease_ttl``, as ``watchkeeper serve``
does). Every one of them appends what it ingests and answers reads, but only the holder of
the store's fold lease folds, closes and judges windows: one lease for the whole store (one
row, scope "fold"), taken atomically, renewed every third of its TTL by a thread of its own
and given back on a clean stop. When its holder dies, another server takes it as soon as
it expires (within the TTL of the holder's last renewal; at its next try, within a third of
the TTL, if the holder was a process of the same host that is gone), rebuilds its state from
the store as after a restart, and folds on from the shared watermark. Every write of the fold
(windows with the watermark, findings, the alert state it judged) is fenced by the lease's
owner and epoch in its own transaction, so a holder that stalled past its TTL and lost the
lease writes nothing more: each event is folded exactly once. Followers keep a view for
their answers, refreshed from the store: alert state (incidents, acknowledgements,
silences) whenever its stored revision changes, checked every second; the latest closed
windows with their findings (for /metrics), every second; windows, findings, suites and
models are read from the store on every request anyway. Acknowledgements and silences are
taken by any server: each is applied to the latest stored alert state and saved only if
nobody saved another revision in between (else it is applied again); the leader merges
them the same way before it saves what it judged. Requests a follower refuses are logged
as empty event batches carrying the counts, and the leader counts them in its windows.

A fold step reads at most ``fold_bytes`` of event bodies (and at most 50 batches; always
one at least), so the fold's memory is bounded whatever the size of the batches.

A batch the fold fails on (a corrupt payload, or one the profiling fails on) does not stall
its model: it is tried again at the next steps, and after FOLD_ATTEMPTS failures in a row it
is set aside in the store (quarantined: kept with its error, never deleted, skipped by the
fold and after restarts), logged once and counted in /metrics; the fold goes on with the
batches after it. When a step of several batches fails, they are folded one at a time until
past it, so that only the one to blame is set aside. Other models fold on meanwhile.

Each model's step (rebuilding it after a restart or a takeover, folding, closing and judging
windows) runs in a thread of its own, outside the hub's lock: a model whose step is slow (a
huge batch, an evaluation that takes hours) holds up no other model, no request and no stop;
it is skipped until its step is done. Readers see each model's alert state through short
locked reads of an object never changed once shown (a change is made on a copy). A stop
waits a bounded time for a busy model; what that model saved last stands, and the rest is
folded again after a restart.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from dataclasses import replace as replaced
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from watchkeeper.alerts import AlertManager, Incident, Rules, Silence
from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import BatchFailed, Conflict, LeaseLost, StoreError, WatchkeeperError
from watchkeeper.io.pii import key_from_env, protect
from watchkeeper.io.values import epoch_seconds
from watchkeeper.monitors.base import Finding, Severity
from watchkeeper.monitors.security import REJECTED
from watchkeeper.online.monitor import LiveWindow, OnlineMonitor, save, usable_times
from watchkeeper.profiles.core import Profile
from watchkeeper.run.check import WindowResult
from watchkeeper.server.ingest import from_ipc, to_ipc
from watchkeeper.store import (
    Appended,
    LabelRecords,
    Lease,
    Store,
    WindowRecord,
)
from watchkeeper.suite import file as suitefile
from watchkeeper.suite.core import Suite
from watchkeeper.wire import TS

log = logging.getLogger("watchkeeper.server")
FIRST = -(2**62)
LAST = 2**62
#: The fold lease's scope: one server folds every model of a store.
SCOPE = "fold"
#: Most event batches read per fold step (``Hub.fold_bytes`` bounds their bytes).
FOLD_BATCHES = 50
#: rows a fold step takes at most (always one batch at least) for a suite that joins late
#: labels: their prediction records are written in the step's transaction, which must stay
#: short (it holds the store's write lock, and the lease row, while it runs)
FOLD_RECORDS = 100_000
#: Schema metadata of an empty event batch that carries refused requests' counts.
REJECTED_KEY = b"watchkeeper.rejected"
#: Tries of a save of the alert state that others keep changing.
SAVE_TRIES = 5
#: Failed attempts at folding an event batch before it is set aside (quarantined).
FOLD_ATTEMPTS = 3
#: /healthz says a folding server is caught up while no batch has waited longer than this.
CAUGHT_UP_SECONDS = 5.0

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


def _owner_id() -> str:
    """Who a server process is, in the fold lease: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Fenced:
    """The store as the fold writes to it: windows, watermark and findings are fenced by
    the hub's fold lease (the OnlineMonitors save through this)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hub.store, name)

    def save_windows(self, model: str, windows: list[WindowRecord],
                     watermark: int | None = None, labels: LabelRecords | None = None) -> None:
        self._hub.store.save_windows(model, windows, watermark, lease=self._hub._fence(),
                                     labels=labels)

    def save_findings(self, model: str, window_start: datetime,
                      findings: list[dict[str, Any]]) -> None:
        self._hub.store.save_findings(model, window_start, findings, lease=self._hub._fence())


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
    #: seconds a fold lease lasts unless renewed; None: fold without one (the only process
    #: folding this store: embedded use, tests)
    lease_ttl: float | None = None
    fold_bytes: int = 64 * 2**20  # event bodies read per fold step, at most (≥ 1 batch)
    follow_seconds: float = 1.0  # how often a follower refreshes its view
    #: seconds the fold thread waits for the models' steps before it starts the next round
    #: (a model still busy then is skipped until it is done; the others fold on)
    step_wait: float = 1.0
    owner: str = field(default_factory=_owner_id)  # this process, in the fold lease
    _rejected: dict[str, Counter[str]] = field(default_factory=dict)
    #: rows each SDK source reports having dropped (cumulative), per model
    sdk_dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    #: seconds between looks for events past the retention (per model)
    expire_seconds: float = 30.0
    _expired: dict[str, float] = field(default_factory=dict)  # time.monotonic() of the last
    #: batches set aside in the store per model, as last read or set aside here (/metrics)
    quarantined: dict[str, int] = field(default_factory=dict)
    #: (seq, failed attempts) of the batch a model's fold failed on last
    _failing: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: fold a model's batches one at a time up to this seq (a step of several failed)
    _isolate: dict[str, int] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    #: each model's step runs in a thread of its own (see ``_fold_all``), under its model's
    #: lock (which ``stop`` takes, with a timeout, to save what the model has in memory)
    _workers: dict[str, threading.Thread] = field(default_factory=dict)
    _model_locks: dict[str, threading.Lock] = field(default_factory=dict)
    #: what ended a model's last step, if it failed (raised by the next ``step``)
    _errors: dict[str, BaseException] = field(default_factory=dict)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _keeper: threading.Thread | None = None
    #: the lease as last taken or renewed, and the time.monotonic() until which it holds
    _holding: tuple[Lease | None, float] = (None, 0.0)
    _epoch: int | None = None  # epoch of the lease the in-memory state was built under
    _looked: float = float("-inf")  # time.monotonic() of the last look for new models
    _viewed: float = float("-inf")  # … and of the last refresh of a follower's windows

    def __post_init__(self) -> None:
        self._writer = _Fenced(self)

    # -- the fold lease ----------------------------------------------------------------------
    @property
    def folding(self) -> bool:
        """Whether this process folds the event log (holds the lease, or needs none)."""
        return self.lease_ttl is None or (self._held() is not None and self._epoch is not None)

    def health(self) -> dict[str, Any]:
        """Whether this server folds and is caught up (``folding``: it holds the lease, has
        rebuilt every model, and the oldest batch not folded yet arrived at most
        CAUGHT_UP_SECONDS ago), how far the fold lags (``lag_seconds``: age of the oldest
        batch not folded, 0 with none; ``backlog_batches``), and models still being rebuilt
        (``loading``). The lag is the store's, the same on every server."""
        with self._lock:
            loading = sorted(m for m, state in self.models.items() if state.rebuilding)
        out: dict[str, Any] = {"leader": self.folding, "loading": loading}
        try:
            backlog = self.store.backlog()
        except StoreError as exc:
            return {**out, "folding": False, "lag_seconds": None, "backlog_batches": None,
                    "store": str(exc)}
        now = datetime.now(UTC)
        lag = max([(now - oldest).total_seconds() for _, oldest in backlog.values()],
                  default=0.0)
        out["lag_seconds"] = round(max(lag, 0.0), 3)
        out["backlog_batches"] = sum(n for n, _ in backlog.values())
        out["folding"] = self.folding and not loading and lag <= CAUGHT_UP_SECONDS
        return out

    def lease(self) -> Lease | None:
        """The fold lease this process holds, or None."""
        return None if self.lease_ttl is None else self._held()

    def _held(self) -> Lease | None:
        lease, until = self._holding
        return lease if lease is not None and time.monotonic() < until else None

    def _fence(self) -> Lease | None:
        """The lease that fences the fold's writes (None without leases); LeaseLost if the
        state in memory is not the one built under the lease held now."""
        if self.lease_ttl is None:
            return None
        lease = self._held()
        if lease is None or lease.epoch != self._epoch:
            raise LeaseLost(f"{self.owner} no longer holds the fold lease (epoch {self._epoch})")
        return lease

    def _renew(self) -> float:
        """Take or renew the fold lease; returns how long to wait before trying again."""
        assert self.lease_ttl is not None
        ttl = self.lease_ttl
        sent = time.monotonic()
        held, until = self._holding
        if held is not None and sent >= until:  # it lapsed: this process stalled (frozen,
            # paused) or could not reach the store; another server takes it first
            log.warning("the fold lease ran out before it was renewed: leaving it to "
                        "another server for a while")
            self._holding = (None, 0.0)
            self._wake.set()
            return ttl / 2
        try:
            lease = self.store.acquire_lease(SCOPE, self.owner, ttl)
            if lease.owner != self.owner and not lease.expired and _dead(lease.owner):
                log.info("the fold lease's holder %s is gone: taking over", lease.owner)
                lease = self.store.acquire_lease(SCOPE, self.owner, ttl, dead=lease.owner)
        except StoreError as exc:  # the lease runs on until its deadline, then lapses
            self.counters["lease_errors"] += 1
            log.warning("cannot renew the fold lease: %s", exc)
            return min(1.0, ttl / 3)
        if lease.owner == self.owner:
            previous = self._holding[0]
            # the lease ran `remaining` seconds from a moment after `sent`
            self._holding = (lease, sent + lease.remaining)
            if previous is None or previous.epoch != lease.epoch:
                log.info("took the fold lease (epoch %d)", lease.epoch)
                self.counters["lease_taken"] += 1
                self._wake.set()
            return ttl / 3
        if self._holding[0] is not None:
            log.warning("the fold lease went to %s", lease.owner)
            self._holding = (None, 0.0)
            self._wake.set()
        # someone else folds: try again as soon as their lease may have run out
        return max(0.05, min(ttl / 3, lease.remaining + 0.05))

    def _keep(self, wait: float) -> None:
        while not self._stop.wait(wait):
            wait = self._renew()

    # -- models and suite versions ---------------------------------------------------------
    def _monitor(self, model: str, version: int) -> OnlineMonitor:
        text = self.store.suite_version(model, version).text
        suite = Suite.from_dict(suitefile.parse(text, f"{model} v{version}"))
        return OnlineMonitor(suite, model=model, window=self.window, grace=self.grace,
                             store=self._writer, suite_version=version,  # type: ignore[arg-type]
                             retention=self.retention, clock=self.clock)

    def load(self, *, defer: bool = False) -> None:
        """Start every model that has an active suite, resuming from the store: windows
        keep the version they were evaluated with; new windows get the active version. A
        server that does not hold the fold lease builds only its view (see the module).
        ``defer``: the folding server, too, starts from the view, and each model is rebuilt
        by its first step (a model slow to rebuild holds up no other, nor the start)."""
        lease = None if self.lease_ttl is None else self._held()
        self._count_quarantined()
        if self.lease_ttl is not None and lease is None:
            for model in self.store.models():
                self._view_model(model)
            return
        self._epoch = None if lease is None else lease.epoch
        for model in self.store.models():
            if defer:
                state = self._view_model(model)
                if state is not None:
                    state.broken = state.rebuilding = True  # rebuilt by its first step
            else:
                self._load_model(model)

    def _count_quarantined(self) -> None:
        """Read how many batches each model has set aside (for /metrics)."""
        counts = self.store.quarantine_counts()
        with self._lock:
            self.quarantined = counts

    def _generations(self, model: str, active: int, restore: bool) -> list[Generation]:
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
            live = self._monitor(model, version)
            last = runs[i + 1][1] if i + 1 < len(runs) else LAST
            if restore:
                live.restore(range(first if i else FIRST, last))
            out.append(Generation(version, first if i else FIRST, live, last))
        return out

    def _load_model(self, model: str, *, replace: bool = True) -> ModelState | None:
        """Build a model's whole state from the store, as after a restart, and judge the
        windows closed before a crash but not judged yet."""
        active = self.store.active_suite(model)
        if active is None:
            return None
        state = ModelState(self._generations(model, active.version, restore=True))
        previous = self.models.get(model)
        if previous is not None:  # a reload: counters go on from the last save
            state.counted = previous.counted
            for g in state.generations:
                g.live.counters.update(previous.counted.get(g.version, {}))
        state.alerts, resumed = self._resume_alerts(model, state)
        with self._lock:
            if not replace and model in self.models:
                return self.models[model]
            if self.lease_ttl is not None and self._epoch is None:
                return None  # the lease was lost meanwhile: the view stays
            self.models[model] = state
        if resumed:  # windows closed before a crash but not judged yet
            self._alert(model, state, [
                g.live.windows[k].result for g in state.generations
                for k in sorted(g.live.windows)
                if g.live.windows[k].state == "closed"
                and g.live.windows[k].result is not None])
        else:  # a store from before alert states were saved: judge from now on
            self._save_alerts(model, state)
        return state

    def _view_model(self, model: str, *, replace: bool = True) -> ModelState | None:
        """A follower's view of a model: its suite versions, its alert state and its latest
        closed windows as stored (no label records, nothing judged or saved)."""
        active = self.store.active_suite(model)
        if active is None:
            return None
        state = ModelState(self._generations(model, active.version, restore=False))
        state.alerts, _ = self._resume_alerts(model, state)
        self._view_windows(model, state)
        with self._lock:
            if not replace and model in self.models:
                return self.models[model]
            self.models[model] = state
        return state

    def _discover(self) -> None:
        """Start models that another process deployed (at most once a second)."""
        if self.lease_ttl is None or time.monotonic() - self._looked < 1.0:
            return
        self._looked = time.monotonic()
        for model in self.store.models():
            if model not in self.models:
                if self._epoch is not None:
                    self._load_model(model, replace=False)
                else:
                    self._view_model(model, replace=False)

    def _resume_alerts(self, model: str, state: ModelState) -> tuple[AlertManager, bool]:
        """The model's saved alert state under the rules in force, and whether there was
        one (a state that cannot be read is logged and started afresh)."""
        rules = self.rules or state.current.suite.rules
        saved, state.revision = self.store.load_alert_state(model)
        state.shown = state.revision
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

    def _merge_alerts(self, model: str, state: ModelState,
                      saved: dict[str, Any] | None, revision: int) -> AlertManager | None:
        """Adopt a newer stored alert state (saved by another server, or by a person), with
        the windows judged here since the last save replayed onto it (their notifications
        were sent already); show it and return it."""
        manager = None
        if saved is not None:
            try:
                manager = AlertManager.from_dict(saved)
            except (ValueError, KeyError, TypeError) as exc:  # keep ours; it replaces it
                self.counters["alert_state_errors"] += 1
                log.error("model %s: cannot read the stored alert state (%s)", model, exc)
            else:
                manager.rules = self.rules or state.current.suite.rules
                for w in sorted(state.judged, key=lambda w: w.start):
                    if manager.last_start is None or w.start > manager.last_start:
                        manager.process(w.label, w.start, w.findings)
        if manager is None:
            manager = state.work or state.alerts
        else:  # with the windows judged here replayed onto it, if any: not saved yet
            state.work = manager if state.judged else None
            state.alerts_unsaved = bool(state.judged)
        state.revision = revision
        self._show(state, manager, revision)
        return manager

    def _show(self, state: ModelState, manager: AlertManager | None, revision: int) -> None:
        """Let readers see ``manager`` (never changed afterwards) unless they see a newer
        stored revision already (a person's change the fold has not merged yet)."""
        with self._lock:
            if manager is not None and revision >= state.shown:
                state.alerts, state.shown = manager, revision

    def _copy_alerts(self, state: ModelState) -> AlertManager | None:
        """The fold's alert state to change: a copy, so readers never see it half-changed."""
        base = state.work or state.alerts
        if base is None:
            return None
        manager = AlertManager.from_dict(base.to_dict())
        manager.rules = self.rules or state.current.suite.rules
        return manager

    def _save_alerts(self, model: str, state: ModelState,
                     manager: AlertManager | None = None) -> None:
        """Persist the fold's alert state (``manager``, else what it has) on top of the stored
        revision it builds on (merged first if someone saved another since), fenced by the
        lease; if that fails it is tried again every step. Shown to readers once saved."""
        manager = manager or state.work or state.alerts
        if manager is None:
            return
        state.alerts_unsaved = True
        state.work = manager
        lease = self._fence()
        for _ in range(SAVE_TRIES):
            try:  # positional: tests stand in for it with a plain function
                revision = self.store.save_alert_state(model, manager.to_dict(),
                                                       state.revision, lease)
            except Conflict:
                manager = self._merge_alerts(model, state,
                                             *self.store.load_alert_state(model))
                if manager is None:
                    return
                state.work = manager
                continue
            state.revision = revision
            state.alerts_unsaved = False
            state.judged.clear()
            state.work = None
            self._show(state, manager, revision)
            return
        raise StoreError(f"model {model}: the alert state kept changing while being saved")

    def activate(self, model: str, version: int) -> None:
        """Put a stored version in service from the next window on (deploy or rollback)."""
        live = self._monitor(model, version)
        with self._lock:
            state = self.models.get(model)
            if state is None:
                manager = AlertManager(model, self.rules or live.suite.rules)
                state = ModelState([Generation(version, FIRST, live)], manager)
                self.models[model] = state
                # so a restart knows it judged from here; if another server was first, the
                # fold merges the stored one at its next step
                with suppress(Conflict):
                    state.revision = state.shown = self.store.save_alert_state(
                        model, manager.to_dict(), 0, None)
                return
            for manager in (state.alerts, state.work):  # the new version's rules
                if manager is not None:
                    manager.rules = self.rules or live.suite.rules
            boundary = int(np.floor(float(self.clock()) / self.window.total_seconds())) + 1
            generations = list(state.generations)  # a new list: the fold may be iterating
            current = generations[-1]
            if current.first >= boundary:  # activated twice within one window: replace
                generations.pop()
            else:
                current.last = boundary
            generations.append(Generation(version, boundary, live))
            state.generations = generations

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
        """An operator's change to a model's alert state, saved before it is answered: made
        on the latest stored state (any server may take it) and saved only on top of it."""
        state, shown = self._manager(model)
        for _ in range(SAVE_TRIES):
            saved, revision = self.store.load_alert_state(model)
            try:
                manager = AlertManager.from_dict(saved if saved is not None else
                                                 shown.to_dict())
            except (ValueError, KeyError, TypeError):  # unreadable: replaced by the shown
                manager = AlertManager.from_dict(shown.to_dict())
            manager.rules = shown.rules
            out = change(manager)
            try:  # positional: tests stand in for it with a plain function
                revision = self.store.save_alert_state(model, manager.to_dict(), revision,
                                                       None)
            except Conflict:
                continue  # saved by someone else meanwhile: made again on theirs
            # shown at once; the fold merges it (with what it judged meanwhile) at its next
            # step, as it does with a change another server saved
            self._show(state, manager, revision)
            return out
        raise StoreError(f"model {model}: the alert state kept changing while being saved")

    # -- ingest (request thread) -------------------------------------------------------------
    def append(self, model: str, table: pa.Table, kind: str, key: str | None = None
               ) -> Appended:
        """Store a batch durably (personal data hashed or dropped first), once per
        idempotency ``key``: a batch sent again with the same key is not stored again (see
        ``Store.append_batch``) and is counted as a duplicate."""
        state = self.models[model]
        modes = {}
        for g in state.generations:  # any version's personal-data columns
            modes.update(g.live.suite.schema.pii)
        if modes:
            table = protect(table, modes, self.pii_key)
        done = self.store.append_batch(model, to_ipc(table), table.num_rows, kind, key=key)
        if done.duplicate:
            self.counters[f"duplicates:{model}"] += 1
            return done
        self.counters[f"{kind}_rows:{model}"] += table.num_rows
        self.counters[f"{kind}_batches:{model}"] += 1
        if self._epoch is not None or self.lease_ttl is None:
            self._wake.set()
        return done

    def reject(self, model: str, reason: str) -> None:
        """Count a refused request (invalid payload, authentication) against the model's
        current window, where the security monitors see it."""
        self.counters[f"rejected_{reason}"] += 1
        with self._lock:
            self._rejected.setdefault(model, Counter())[reason] += 1
        if self._epoch is not None or self.lease_ttl is None:
            self._wake.set()

    def _fold_rejections(self, model: str, state: ModelState) -> None:
        pending = self._rejected.pop(model, None)
        if pending:
            self._count_rejections(state, pending, float(self.clock()))  # type: ignore[arg-type]

    def _count_rejections(self, state: ModelState, counts: Mapping[str, int],
                          at: float) -> None:
        live = state.generations[-1].live
        key = int(np.floor(at / self.window.total_seconds()))
        tally = np.array([counts.get("invalid", 0), counts.get("auth", 0)], dtype=np.int64)
        w = live._window(key)
        w.profile.joint[REJECTED] = w.profile.joint.get(REJECTED, 0) + tally
        live._dirty.add(key)

    def _log_rejections(self, model: str) -> None:
        """A follower hands the requests it refused to the leader through the event log:
        an empty batch whose schema carries the counts."""
        with self._lock:
            pending = self._rejected.pop(model, None)
        if not pending:
            return
        schema = pa.schema([]).with_metadata({REJECTED_KEY: json.dumps(dict(pending))})
        try:
            self.store.append_events(model, to_ipc(pa.Table.from_batches([], schema)), 0)
        except StoreError:
            with self._lock:
                self._rejected.setdefault(model, Counter()).update(pending)
            raise

    def _sync_version(self, model: str, state: ModelState) -> None:
        """Put in service a version activated in the store by someone else (another server
        process, ``Store.add_suite``/``activate``)."""
        active = self.store.active_suite(model)
        if active is not None and active.version != state.generations[-1].version:
            self.activate(model, active.version)

    def _expire_events(self, model: str, state: ModelState) -> None:
        """The event log keeps folded events for the retention, then forgets them, and the
        prediction records for late labels of windows past it (checked every
        ``expire_seconds``; the records' deletion is fenced like the fold's writes)."""
        if time.monotonic() - self._expired.get(model, float("-inf")) < self.expire_seconds:
            return
        self._expired[model] = time.monotonic()
        horizon = float(self.clock()) - self.retention.total_seconds()  # type: ignore[arg-type]
        before = datetime.fromtimestamp(horizon, UTC)
        self.counters[f"expired_events:{model}"] += self.store.expire_events(
            model, before, self.store.watermark(model))
        if any(g.live.joins_labels for g in state.generations):
            step = self.window.total_seconds()
            state.current.counters["label_records_expired"] += self.store.expire_label_records(
                model, np.floor(horizon / step) * step, lease=self._fence())

    # -- folding (background thread) ---------------------------------------------------------
    def _fold(self, model: str, state: ModelState) -> None:
        """Fold the events past the model's watermark, a bounded step at a time, each step
        saved with its watermark. Should a step fail between changing the windows in memory
        and saving them, the model is marked broken (reloaded at the next step).

        A batch that cannot be folded (a corrupt payload, or one the profiling fails on) is
        tried again at the next steps; after FOLD_ATTEMPTS failures it is set aside in the
        store (see :meth:`_failed`) and the fold goes on past it. Which batch of a failed
        step is to blame is found by folding that step's batches one at a time."""
        last = self.store.watermark(model)
        while True:
            alone = last < self._isolate.get(model, FIRST)
            if not alone:
                self._isolate.pop(model, None)
            events = self.store.events_after(model, last, limit=1 if alone else FOLD_BATCHES,
                                             max_bytes=self.fold_bytes)
            if not events:
                return
            if any(g.live.joins_labels for g in state.generations):
                events = _at_most(events, FOLD_RECORDS)
            tables: list[pa.Table | None] = []
            for event in events:  # decoded first: a corrupt one changes nothing in memory
                try:
                    tables.append(from_ipc(event.payload))
                except Exception as exc:  # whatever the bytes make Arrow say
                    if not self._failed(model, event, exc):
                        raise BatchFailed(f"model {model}: batch {event.seq} cannot be read "
                                          f"({_why(exc)}); tried again") from None
                    tables.append(None)  # set aside: skipped
            events = [replaced(e, payload=b"") for e in events]  # the bytes are not needed
            del event
            try:
                last = self._fold_step(model, state, events, tables)
            except StoreError:
                raise
            except Exception as exc:
                state.broken = True  # its windows in memory may be half-changed: reloaded
                if len(events) > 1:
                    self._isolate[model] = events[-1].seq
                    raise BatchFailed(f"model {model}: folding batches {events[0].seq} to "
                                      f"{events[-1].seq} failed ({_why(exc)}); folding them "
                                      "one at a time") from exc
                gave_up = self._failed(model, events[0], exc)
                raise BatchFailed(f"model {model}: folding batch {events[0].seq} failed "
                                  f"({_why(exc)}); " + ("set aside, folding on" if gave_up
                                                        else "tried again")) from exc
            del events, tables
            # every generation's windows and the watermark in one transaction
            records, findings, labels = [], [], LabelRecords()
            for g in state.generations:
                r, f = g.live.pending()
                records += r
                findings += f
                labels.extend(g.live.label_writes() or LabelRecords())
            save(self._writer, model, records, findings, last,  # type: ignore[arg-type]
                 labels)
            state.broken = False
            state.counted = {g.version: dict(g.live.counters) for g in state.generations}
            failing = self._failing.get(model)
            if failing is not None and failing[0] <= last:  # folded after all
                del self._failing[model]
            _give_back_memory()

    def _fold_step(self, model: str, state: ModelState, events: list[Any],
                   tables: list[pa.Table | None]) -> int:
        """Fold decoded event batches into the windows in memory (None: a batch set aside);
        returns the seq of the last."""
        pending: list[pa.Table] = []  # consecutive event batches, profiled together
        last = events[0].seq
        for event, table in zip(events, tables, strict=True):
            last = event.seq
            if table is None:
                continue
            if event.kind == "labels":
                state.broken = True
                self._ingest(state, pending)
                unmatched = [g.live.ingest_labels(table) for g in state.generations]
                matched = sum(table.num_rows - u for u in unmatched)
                self.counters[f"unmatched_labels:{model}"] += table.num_rows - matched
            elif table.num_rows:  # rows without a time: when the batch arrived, not now
                timed, bad = _arrived(table, event.received_at.timestamp())
                state.current.counters["bad_timestamps"] += bad
                pending.append(timed)
            elif REJECTED_KEY in (table.schema.metadata or {}):  # a follower's refusals
                self._count_rejections(state, _counts(table), event.received_at.timestamp())
        state.broken = True
        self._ingest(state, pending)
        return last

    def _failed(self, model: str, event: Any, exc: BaseException) -> bool:
        """Count a failure to fold a batch; at the FOLD_ATTEMPTS-th in a row, set it aside in
        the store (not deleted: kept with its error, skipped by the fold and by restarts,
        listed by ``Store.quarantined_events``), log that once and return True."""
        seq, tries = self._failing.get(model, (event.seq, 0))
        tries = tries + 1 if seq == event.seq else 1
        if tries < FOLD_ATTEMPTS:
            self._failing[model] = (event.seq, tries)
            return False
        error = _why(exc)
        marked = self.store.quarantine_event(model, event.seq, error, lease=self._fence())
        self._failing.pop(model, None)
        if marked:  # (not if someone deleted or set it aside meanwhile)
            with self._lock:
                self.quarantined[model] = self.quarantined.get(model, 0) + 1
        log.error("model %s: batch %d (%s, %d rows, received %s) set aside after %d failed "
                  "attempts to fold it: %s. It is kept in the store (events.quarantined_at), "
                  "not folded; the fold goes on with the next batches.", model, event.seq,
                  event.kind, event.rows, event.received_at.isoformat(), tries, error)
        return True

    @staticmethod
    def _ingest(state: ModelState, tables: list[pa.Table]) -> None:
        """Profile a run of event batches at once (a profile costs ~2 ms per call whatever
        its size, so many small batches are far cheaper together); batches whose columns
        do not line up are profiled one by one."""
        if not tables:
            return
        try:
            batches = [pa.concat_tables(tables, promote_options="default")] \
                if len(tables) > 1 else list(tables)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            batches = list(tables)
        tables.clear()
        while batches:
            table = batches.pop(0)
            for live, part in state.route(table):
                live.ingest(part)
            del table

    def step(self, now: float | None = None, wait: float = 60.0) -> None:
        """Fold new events of every model, close due windows, persist (waiting up to
        ``wait`` seconds for the models' steps, see ``_fold_all``); a server that does not
        hold the fold lease refreshes its view instead."""
        if self.lease_ttl is None:
            self._fold_all(now, wait)
            return
        lease = self._held()
        if lease is None:
            if self._epoch is not None:
                self._demote("its lease ran out")
            self._follow()
            return
        if lease.epoch != self._epoch:
            self._take_over(lease)
        try:
            self._fold_all(now, wait)
        except LeaseLost as exc:
            self._demote(str(exc))

    def _fold_all(self, now: float | None, wait: float) -> None:
        """One step of every model, each in a thread of its own and outside the hub's lock,
        so that a model whose step is slow (a huge batch, an evaluation that takes long)
        never holds up the others, the API or a stop. Waits up to ``wait`` seconds for the
        steps; a model still busy after that is left to finish and skipped until it has.
        Raises what a step failed with (LeaseLost first)."""
        self._discover()
        revisions = self.store.alert_revisions()
        with self._lock:
            models = dict(self.models)
        started = []
        for model, state in models.items():
            busy = self._workers.get(model)
            if busy is not None and busy.is_alive():
                self.counters["fold_busy"] += 1
                continue
            worker = threading.Thread(target=self._step_model, name=f"watchkeeper-fold-{model}",
                                      args=(model, state, revisions.get(model, 0), now,
                                            self._epoch), daemon=True)
            self._workers[model] = worker
            worker.start()
            started.append(worker)
        deadline = time.monotonic() + wait
        for worker in started:
            worker.join(max(0.0, deadline - time.monotonic()))
        errors = [self._errors.pop(m) for m in list(self._errors)]
        errors.sort(key=lambda e: not isinstance(e, LeaseLost))
        if errors:
            raise errors[0]

    def _model_lock(self, model: str) -> threading.Lock:
        with self._lock:
            return self._model_locks.setdefault(model, threading.Lock())

    def _step_model(self, model: str, state: ModelState, revision: int,
                    now: float | None, epoch: int | None) -> None:
        """A model's step (in a thread of its own): what fails is kept for ``step`` (unless
        the step was started under a lease given up since)."""
        try:
            with self._model_lock(model):
                if self._stop.is_set():
                    return
                self._fold_model(model, state, revision, now)
        except BatchFailed as exc:  # this model's step ends here; the others fold
            self.counters["fold_errors"] += 1
            log.warning("%s", exc)
        except BaseException as exc:
            if epoch == self._epoch:
                self._errors[model] = exc
                self._wake.set()
            else:
                log.info("model %s: a step begun under an earlier lease ended: %s", model,
                         _why(exc))

    def _fold_model(self, model: str, state: ModelState, revision: int,
                    now: float | None) -> None:
        if state.broken:  # its windows in memory may be ahead of the store (or not loaded)
            state = self._load_model(model) or state
        self._sync_version(model, state)
        if revision != state.revision:  # changed by another server or a person
            self._merge_alerts(model, state, *self.store.load_alert_state(model))
        self._fold(model, state)
        self._fold_rejections(model, state)
        state.broken = True  # windows it closes are saved before it returns
        closed = [w for g in state.generations for w in g.live.tick(now)]
        state.broken = False
        self._expire_events(model, state)
        self._alert(model, state, closed)

    def _take_over(self, lease: Lease) -> None:
        """Start folding: every model is rebuilt from the store, as after a restart, by
        its own step (so that one slow to rebuild holds up no other; a rebuild that fails
        is tried again at the next step)."""
        log.info("folding the event log from the store's watermarks (lease epoch %d)",
                 lease.epoch)
        self._epoch = lease.epoch  # fences what judging the resumed windows saves
        try:
            self._failing.clear()
            self._isolate.clear()
            self._count_quarantined()
            self._looked = time.monotonic()
            with self._lock:
                states = list(self.models.values())
            for state in states:
                state.broken = state.rebuilding = True  # rebuilt by its next step
            for model in self.store.models():
                if model not in self.models:
                    self._view_model(model, replace=False)
                    if model in self.models:
                        self.models[model].broken = self.models[model].rebuilding = True
        except BaseException:
            self._epoch = None
            raise

    def _demote(self, why: str) -> None:
        """Stop folding; keep serving from a view of the store."""
        log.warning("no longer folding (%s); serving from the store", why)
        self.counters["lease_lost"] += 1
        self._epoch = None
        for model in list(self.models):
            self._view_model(model)

    def _follow(self) -> None:
        """A follower's step: hand over refused requests; refresh suite versions, alert
        state and windows from the store."""
        self._discover()
        revisions = self.store.alert_revisions()
        with self._lock:
            models = dict(self.models)
        windows = time.monotonic() - self._viewed >= self.follow_seconds
        if windows:
            self._viewed = time.monotonic()
            self._count_quarantined()
        for model, state in models.items():
            self._log_rejections(model)
            self._sync_version(model, state)
            if revisions.get(model, 0) != state.revision:
                self._merge_alerts(model, state, *self.store.load_alert_state(model))
            if windows:
                self._view_windows(model, state)

    def _view_windows(self, model: str, state: ModelState) -> None:
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
        with self._lock:  # whole dicts swapped: readers never see one half-changed
            live.windows = windows
            for g in state.generations[:-1]:
                g.live.windows = {}
            state.seen = seen

    def _alert(self, model: str, state: ModelState, closed: list[Any]) -> None:
        """Closed windows' findings → alerts and incidents → notifications, in time order.
        Judged on a copy of the alert state, shown to readers once saved."""
        base = state.work or state.alerts
        if base is None:
            return
        new = [w for w in sorted(closed, key=lambda w: w.start)
               if base.last_start is None or w.start > base.last_start]  # else judged already
        if not new and not state.alerts_unsaved:
            return
        manager = self._copy_alerts(state) if new else base
        assert manager is not None
        for w in new:
            notifications = manager.process(w.label, w.start, w.findings)
            state.judged.append(w)
            state.alerts_unsaved = True
            state.work = manager
            self.counters[f"notifications:{model}"] += len(notifications)
            if notifications and self.dispatcher is not None:
                lease = self._fence()  # fenced as the fold's writes: a stale leader sends
                if lease is not None:  # nothing (its successor judges the window again)
                    self.store.check_lease(lease)
                self.dispatcher.send_all(notifications)
        self._save_alerts(model, state, manager)  # after sending: a crash sends it again

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(wait=self.step_wait)
            except WatchkeeperError as exc:  # a bad batch must not stop the others
                self.counters["fold_errors"] += 1
                log.error("folding events failed: %s", exc)
            except Exception:
                self.counters["fold_errors"] += 1
                log.exception("folding events failed")
                time.sleep(1.0)
            self._wake.wait(self.poll_seconds if self.folding else self.follow_seconds)
            self._wake.clear()

    def start(self) -> None:
        """Load, then fold in a thread of its own (with leases: take the lease if it is
        free, and keep it in another thread, renewing it while the models load)."""
        if self.lease_ttl is not None:
            wait = self._renew()
            self._keeper = threading.Thread(target=self._keep, args=(wait,),
                                            name="watchkeeper-lease", daemon=True)
            self._keeper.start()
        self.load(defer=True)
        self._thread = threading.Thread(target=self.run, name="watchkeeper-hub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop folding within about ``timeout`` seconds, whatever a model's step is doing:
        save what each model has in memory (unless its step is still busy: what it saved
        last stands, and the rest is folded again after a restart), give the lease back."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._keeper):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        try:
            if self.lease_ttl is None or self._epoch is not None:
                with self._lock:
                    models = dict(self.models)
                for model, state in models.items():
                    self._save_at_stop(model, state, deadline)
        finally:
            if self.lease_ttl is not None and self._holding[0] is not None:
                self._holding = (None, 0.0)  # a step still busy writes nothing more
                try:  # another server may take over at once
                    self.store.release_lease(SCOPE, self.owner)
                except StoreError as exc:
                    log.warning("cannot release the fold lease: %s", exc)

    def _save_at_stop(self, model: str, state: ModelState, deadline: float) -> None:
        lock = self._model_lock(model)
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            log.warning("model %s: still folding at stop; what it saved last stands, the "
                        "rest is folded again after a restart", model)
            return
        try:
            if state.broken:  # windows in memory not what the store's watermark says
                return
            for g in state.generations:
                g.live.flush(watermark=None)
            if state.alerts_unsaved:
                self._save_alerts(model, state)
        except (LeaseLost, StoreError) as exc:
            log.warning("model %s: not saved at stop: %s", model, exc)
        finally:
            lock.release()


def _give_back_memory() -> None:
    """Hand the heap pages freed by a fold step (decoded batches, prediction records, label
    look-ups) back to the system (glibc's malloc_trim; elsewhere nothing), so that the
    server's RSS follows what it holds, not the largest step it has folded."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None  # libc's malloc_trim once looked up; False where there is none


def _at_most(events: list[Any], rows: int) -> list[Any]:
    """The first events up to ``rows`` rows in all (the first one whatever its rows)."""
    total = 0
    for n, event in enumerate(events):
        total += event.rows
        if total > rows and n:
            return events[:n]
    return events


def _dead(owner: str) -> bool:
    """Whether a lease owner is a process of this host that is gone (a server restarted
    after kill -9 takes over at once instead of waiting for the lease to run out). Only a
    certainty counts: another host, this process, or a pid that exists are not dead."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (owned by someone else)
        return False
    try:  # a zombie (killed, not reaped yet) is gone too
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _why(exc: BaseException) -> str:
    """An exception in one line, for the log and the store."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _counts(table: pa.Table) -> dict[str, int]:
    """The refused requests' counts an empty event batch carries."""
    try:
        counts = json.loads((table.schema.metadata or {})[REJECTED_KEY])
        return {str(k): int(v) for k, v in counts.items()}
    except (KeyError, ValueError, TypeError, AttributeError):
        return {}


def _finding(d: dict[str, Any]) -> Finding:
    """A finding as the store gives it back (for a follower's view)."""
    return Finding(d["monitor"], d["family"], d.get("column"),
                   float("nan") if d.get("value") is None else d["value"],
                   float("nan") if d.get("threshold") is None else d["threshold"],
                   Severity(d["severity"]), d.get("message") or "", d.get("evidence") or {},
                   d.get("window"), d.get("metric"), d.get("segment"))


def _arrived(table: pa.Table, at: float) -> tuple[pa.Table, int]:
    """Rows without a usable event time get ``at`` (when their batch arrived): the fold
    windows them by it, however late it folds them (a backlog after a restart or a
    takeover), and rebuilding the label join after a restart finds them in the same
    windows. Returns the table and how many rows had a time that can name no window (±inf,
    1e300, milliseconds sent as seconds, over a day ahead): a data-quality signal, counted."""
    if TS not in table.column_names:
        return table.append_column(TS, pa.array(np.full(table.num_rows, at))), 0
    ts = epoch_seconds(table.column(TS))
    usable, bad = usable_times(ts, at)
    if usable.all():
        return table, 0
    return table.set_column(table.column_names.index(TS), TS,
                            pa.array(np.where(usable, ts, at))), bad
