"""The Hub: the server's engine, composed of the pieces in this package (see its docstring)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import pyarrow as pa

from watchkeeper.alerts import AlertManager, Incident, Rules, Silence
from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import LeaseLost, StoreError, WatchkeeperError
from watchkeeper.io.pii import key_from_env
from watchkeeper.server.hub.alert_state import AlertStates
from watchkeeper.server.hub.backfill import Backfill
from watchkeeper.server.hub.fold import Fold
from watchkeeper.server.hub.follower import View
from watchkeeper.server.hub.intake import Intake
from watchkeeper.server.hub.lease import Fenced, FoldLease, dead, owner_id
from watchkeeper.server.hub.memory import fix_mmap_threshold, limit_arenas
from watchkeeper.server.hub.registry import Registry
from watchkeeper.server.hub.state import AlertView, ModelState
from watchkeeper.server.hub.workers import Workers
from watchkeeper.store import Appended, Lease, Store
from watchkeeper.suite import file as suitefile
from watchkeeper.suite.core import Suite

log = logging.getLogger("watchkeeper.server")
#: /healthz says a folding server is caught up while no batch has waited longer than this.
CAUGHT_UP_SECONDS = 5.0
#: seconds between deletions of what of a server's own event log is in the store
PRUNE_SECONDS = 2.0

T = TypeVar("T")


@dataclass
class Hub:
    """Per model, OnlineMonitors fed from the store's durable event log: ingest appends
    (:class:`Intake`), the holder of the fold lease (:class:`FoldLease`) folds
    (:class:`Fold`, each model's step in a thread of its own: :class:`Workers`) and judges
    (:class:`AlertStates`), the others keep a view (:class:`View`); the models and their
    suite versions are in the :class:`Registry`.

    ``clock`` is the wall clock windows are cut by; ``monotonic`` measures the lease and
    how often the store is looked at (tests pass their own, to drive both without
    sleeping). Readers use the locked reads (:meth:`states`, :meth:`alert_view`,
    :attr:`quarantined`, :meth:`health`); nothing outside the hub takes its locks."""

    store: Store
    window: timedelta = timedelta(minutes=5)
    grace: timedelta = timedelta(minutes=1)
    retention: timedelta = timedelta(days=7)
    poll_seconds: float = 0.2
    counters: Counter[str] = field(default_factory=Counter)
    clock: Callable[[], float] = time.time
    pii_key: bytes | None = field(default_factory=key_from_env, repr=False)
    dispatcher: Dispatcher | None = None  # where incident notifications go
    #: where judged windows and incident transitions are exported (run.otlp.OtlpExporter)
    exporter: Any = None
    rules: Rules | None = None
    #: seconds a fold lease lasts unless renewed; None: fold without one (the only process
    #: folding this store: embedded use, tests)
    lease_ttl: float | None = None
    fold_bytes: int = 64 * 2**20  # event bodies read per fold step, at most (≥ 1 batch)
    follow_seconds: float = 1.0  # how often a follower refreshes its view
    #: seconds the fold thread waits for the models' steps before it starts the next round
    #: (a model still busy then is skipped until it is done; the others fold on)
    step_wait: float = 1.0
    owner: str = field(default_factory=owner_id)  # this process, in the fold lease
    #: rows each SDK source reports having dropped (cumulative), per model
    sdk_dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    #: seconds between looks for events past the retention (per model)
    expire_seconds: float = 30.0
    monotonic: Callable[[], float] = time.monotonic
    #: append ingested batches to an event-log file of this server's own, which the leader
    #: copies into the store (SQLite files: a server frozen inside a write then holds up
    #: no other server's ingest; see store/logs.py)
    own_log: bool = False
    # the pieces (built from the settings above)
    fold_lease: FoldLease = field(init=False, repr=False)
    registry: Registry = field(init=False, repr=False)
    alert_states: AlertStates = field(init=False, repr=False)
    intake: Intake = field(init=False, repr=False)
    fold: Fold = field(init=False, repr=False)
    backfill: Backfill = field(init=False, repr=False)
    view: View = field(init=False, repr=False)
    workers: Workers = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keeper: threading.Thread | None = None
        self._looked = float("-inf")  # monotonic() of the last look for new models
        self.fold_lease = FoldLease(self.store, self.lease_ttl, self.owner, self.counters,
                                    clock=self.monotonic, wake=self._wake.set)
        fence = self.fold_lease.fence
        self.registry = Registry(self.store, Fenced(self.store, fence), window=self.window,
                                 grace=self.grace, retention=self.retention, clock=self.clock,
                                 rules=self.rules)
        self.alert_states = AlertStates(self.store, self.counters, self.registry.lock, fence,
                                        rules=self.rules, dispatcher=self.dispatcher,
                                        exporter=self.exporter)
        self.intake = Intake(self.store, self.counters,
                             self.store.open_log(self.owner) if self.own_log else None)
        self._pruned = float("-inf")  # monotonic() when the own log was last pruned
        self.fold = Fold(self.store, self.registry.writer, self.counters, fence,
                         window=self.window, retention=self.retention,
                         fold_bytes=self.fold_bytes, expire_seconds=self.expire_seconds,
                         clock=self.clock, monotonic=self.monotonic,
                         pii_key=self.pii_key)
        self.backfill = Backfill(self.store, fence, fold_bytes=self.fold_bytes,
                                 kept_from=self.fold.records_kept_from)
        self.view = View(self.store, self.registry, self.alert_states, window=self.window,
                         follow_seconds=self.follow_seconds, monotonic=self.monotonic)
        self.workers = Workers(self.counters, self._wake, self._stop)

    # -- what readers see: short locked reads --------------------------------------------------
    @property
    def models(self) -> dict[str, ModelState]:
        """Each model's state, by name (the registry's own dict: iterate over
        :meth:`states`)."""
        return self.registry.models

    def states(self) -> dict[str, ModelState]:
        """Each model's state, by name: a copy of the dict, taken under the lock."""
        return self.registry.states()

    def alert_view(self, model: str) -> AlertView | None:
        """The model's alert state as shown (never changed afterwards) with the suite in
        service, or None if no suite is deployed for it."""
        with self.registry.lock:
            state = self.registry.models.get(model)
            if state is None or state.alerts is None:
                return None
            return AlertView(state.alerts, state.current.suite)

    @property
    def quarantined(self) -> dict[str, int]:
        """Batches set aside in the store per model, as last read or set aside here."""
        return self.fold.quarantined

    @property
    def folding(self) -> bool:
        """Whether this process folds the event log (holds the lease, or needs none)."""
        return self.fold_lease.folding

    def lease(self) -> Lease | None:
        """The fold lease this process holds, or None."""
        return self.fold_lease.held()

    def health(self) -> dict[str, Any]:
        """Whether this server folds and is caught up (``folding``: it holds the lease, has
        rebuilt every model, and the oldest batch not folded yet arrived at most
        CAUGHT_UP_SECONDS ago), how far the fold lags (``lag_seconds``: age of the oldest
        batch not folded, 0 with none; ``backlog_batches``), and models still being rebuilt
        (``loading``). The lag is the store's, the same on every server. ``backfill``:
        models whose prediction records of batches folded before an upgrade are being
        rebuilt (their fold waits meanwhile, see backfill.py), each with its progress
        (``through``: the last batch to read, ``done``: read so far, ``batches_left``);
        while one runs, the server is not caught up."""
        loading = sorted(m for m, state in self.states().items() if state.rebuilding)
        out: dict[str, Any] = {"leader": self.folding, "loading": loading}
        try:
            backlog = self.store.backlog()
            backfill = self.store.label_backfill_progress()
        except StoreError as exc:
            return {**out, "folding": False, "lag_seconds": None, "backlog_batches": None,
                    "store": str(exc)}
        now = datetime.now(UTC)
        lag = max([(now - oldest).total_seconds() for _, oldest in backlog.values()],
                  default=0.0)
        out["lag_seconds"] = round(max(lag, 0.0), 3)
        out["backlog_batches"] = sum(n for n, _ in backlog.values())
        out["backfill"] = {m: {"through": through, "done": done, "batches_left": left}
                           for m, (through, done, left) in sorted(backfill.items())}
        out["folding"] = (self.folding and not loading and not backfill
                          and lag <= CAUGHT_UP_SECONDS)
        return out

    # -- models and suite versions -----------------------------------------------------------
    def load(self, *, defer: bool = False) -> None:
        """Start every model that has an active suite, resuming from the store: windows
        keep the version they were evaluated with; new windows get the active version. A
        server that does not hold the fold lease builds only its view (see the package).
        ``defer``: the folding server, too, starts from the view, and each model is rebuilt
        by its first step (a model slow to rebuild holds up no other, nor the start)."""
        lease = self.fold_lease.held()
        self.fold.count_quarantined()
        if self.lease_ttl is not None and lease is None:
            for model in self.store.models():
                self.view.model(model)
            return
        self.fold_lease.epoch = None if lease is None else lease.epoch
        for model in self.store.models():
            if defer:
                state = self.view.model(model)
                if state is not None:
                    state.broken = state.rebuilding = True  # rebuilt by its first step
            else:
                self._load_model(model)

    def _load_model(self, model: str, *, replace: bool = True) -> ModelState | None:
        """Build a model's whole state from the store, as after a restart, and judge the
        windows closed before a crash but not judged yet."""
        active = self.store.active_suite(model)
        if active is None:
            return None
        state = ModelState(self.registry.generations(model, active.version, restore=True))
        previous = self.registry.get(model)
        if previous is not None:  # a reload: counters go on from the last save
            state.counted = previous.counted
            for g in state.generations:
                g.live.counters.update(previous.counted.get(g.version, {}))
        state.alerts, resumed = self.alert_states.resume(model, state)
        with self.registry.lock:
            if not replace and model in self.registry.models:
                return self.registry.models[model]
            if self.lease_ttl is not None and self.fold_lease.epoch is None:
                return None  # the lease was lost meanwhile: the view stays
            self.registry.models[model] = state
        if resumed:  # windows closed before a crash but not judged yet
            self.alert_states.judge(model, state, [
                w.result for g in state.generations
                for w in (g.live.windows[k] for k in sorted(g.live.windows))
                if w.state == "closed" and w.result is not None])
        else:  # a store from before alert states were saved: judge from now on
            self.alert_states.save(model, state)
        return state

    def _discover(self) -> None:
        """Start models that another process deployed (at most once a second)."""
        if self.lease_ttl is None or self.monotonic() - self._looked < 1.0:
            return
        self._looked = self.monotonic()
        for model in self.store.models():
            if model not in self.models:
                if self.fold_lease.epoch is not None:
                    self._load_model(model, replace=False)
                else:
                    self.view.model(model, replace=False)

    def activate(self, model: str, version: int) -> None:
        """Put a stored version in service from the next window on (deploy or rollback)."""
        state = self.registry.activate(model, version)
        if state is not None:  # a new model: its alert state saved (outside the lock)
            self.alert_states.first_save(model, state)

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

    def _sync_version(self, model: str, state: ModelState) -> None:
        """Put in service a version activated in the store by someone else (another server
        process, ``Store.add_suite``/``activate``)."""
        active = self.store.active_suite(model)
        if active is not None and active.version != state.generations[-1].version:
            self.activate(model, active.version)

    # -- people (request threads): durable once these return ------------------------------
    def _manager(self, model: str) -> tuple[ModelState, AlertManager]:
        with self.registry.lock:
            state = self.registry.models.get(model)
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
        state, shown = self._manager(model)
        return self.alert_states.change(model, state, shown, change)

    # -- ingest (request thread) -------------------------------------------------------------
    def append(self, model: str, table: pa.Table, kind: str, key: str | None = None
               ) -> Appended:
        """Store a batch durably (personal data hashed or dropped first), once per
        idempotency ``key`` (see :meth:`Intake.append`); KeyError for an unknown model."""
        done = self.intake.append(model, self.models[model], table, kind, key,
                                  pii_key=self.pii_key)
        if not done.duplicate:
            self._nudge()
        return done

    def reject(self, model: str, reason: str) -> None:
        """Count a refused request (invalid payload, authentication) against the model's
        current window, where the security monitors see it."""
        self.intake.reject(model, reason)
        self._nudge()

    def _nudge(self) -> None:
        """Wake the fold thread, if this process folds."""
        if self.fold_lease.epoch is not None or self.lease_ttl is None:
            self._wake.set()

    # -- folding (background thread) ---------------------------------------------------------
    def step(self, now: float | None = None, wait: float = 60.0) -> None:
        """Fold new events of every model, close due windows, persist (waiting up to
        ``wait`` seconds for the models' steps, see :class:`Workers`); a server that does
        not hold the fold lease refreshes its view instead."""
        self._prune()
        if self.lease_ttl is None:
            self._fold_all(now, wait)
            return
        lease = self.fold_lease.held()
        if lease is None:
            if self.fold_lease.epoch is not None:
                self._demote("its lease ran out")
            self._follow()
            return
        if lease.epoch != self.fold_lease.epoch:
            self._take_over(lease)
        try:
            self._fold_all(now, wait)
        except LeaseLost as exc:
            self._demote(str(exc))

    def _prune(self) -> None:
        """Forget what of this server's own event log is in the store (every few
        seconds); a failure is logged and tried again."""
        if self.intake.log is None or self.monotonic() - self._pruned < PRUNE_SECONDS:
            return
        self._pruned = self.monotonic()
        try:
            self.intake.prune()
        except StoreError as exc:
            log.warning("cannot prune this server's event log: %s", exc)

    def _fold_all(self, now: float | None, wait: float) -> None:
        """Copy the servers' own event-log files into the store, then one step of every
        model, each in a thread of its own; raises what a step failed with (LeaseLost
        first)."""
        dropped = self.store.import_logs(lease=self.fold_lease.fence(), gone=dead,
                                         max_bytes=self.fold_bytes)
        for model, n in dropped.items():  # copies of a batch sent to several servers
            self.counters[f"duplicates:{model}"] += n
        self._discover()
        revisions = self.store.alert_revisions()
        steps = {model: partial(self._fold_model, model, state, revisions.get(model, 0), now)
                 for model, state in self.states().items()}
        self.workers.run(steps, epoch=self.fold_lease.epoch,
                         current_epoch=lambda: self.fold_lease.epoch, wait=wait)

    def _fold_model(self, model: str, state: ModelState, revision: int,
                    now: float | None) -> None:
        if state.broken:  # its windows in memory may be ahead of the store (or not loaded)
            state = self._load_model(model) or state
        self._sync_version(model, state)
        if revision != state.revision:  # changed by another server or a person
            self.alert_states.merge(model, state, *self.store.load_alert_state(model))
        if self.backfill.step(model, state):  # records of batches folded before an upgrade
            return  # come first: labels folded meanwhile would not find them
        self.fold.advance(model, state)
        pending = self.intake.take_rejected(model)
        if pending:
            self.fold.count_rejections(state, pending)
        state.broken = True  # windows it closes are saved before it returns
        closed = [w for g in state.generations for w in g.live.tick(now)]
        state.broken = False
        self.fold.expire(model, state)
        self.alert_states.judge(model, state, closed)

    def _take_over(self, lease: Lease) -> None:
        """Start folding: every model is rebuilt from the store, as after a restart, by
        its own step (so that one slow to rebuild holds up no other; a rebuild that fails
        is tried again at the next step)."""
        log.info("folding the event log from the store's watermarks (lease epoch %d)",
                 lease.epoch)
        self.fold_lease.epoch = lease.epoch  # fences what judging the resumed windows saves
        try:
            self.fold.reset()
            self.backfill.reset()
            self.fold.count_quarantined()
            self._looked = self.monotonic()
            for state in self.states().values():
                state.broken = state.rebuilding = True  # rebuilt by its next step
            for model in self.store.models():
                if model not in self.models:
                    added = self.view.model(model, replace=False)
                    if added is not None:
                        added.broken = added.rebuilding = True
        except BaseException:
            self.fold_lease.epoch = None
            raise

    def _demote(self, why: str) -> None:
        """Stop folding; keep serving from a view of the store."""
        log.warning("no longer folding (%s); serving from the store", why)
        self.counters["lease_lost"] += 1
        self.fold_lease.epoch = None
        for model in list(self.models):
            self.view.model(model)

    def _follow(self) -> None:
        """A follower's step: hand over refused requests; refresh suite versions, alert
        state and windows from the store."""
        self._discover()
        revisions = self.store.alert_revisions()
        models = self.states()
        windows = self.view.windows_due()
        if windows:
            self.fold.count_quarantined()
        for model, state in models.items():
            self.intake.log_rejected(model)
            self._sync_version(model, state)
            if revisions.get(model, 0) != state.revision:
                self.alert_states.merge(model, state, *self.store.load_alert_state(model))
            if windows:
                self.view.windows(model, state)

    # -- the hub's threads -------------------------------------------------------------------
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
        limit_arenas()  # before the hub's threads allocate (see memory.py)
        fix_mmap_threshold()
        if self.lease_ttl is not None:
            wait = self.fold_lease.renew()
            self._keeper = threading.Thread(target=self.fold_lease.keep,
                                            args=(self._stop, wait),
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
            if self.lease_ttl is None or self.fold_lease.epoch is not None:
                for model, state in self.states().items():
                    self._save_at_stop(model, state, deadline)
        finally:
            self.fold_lease.release()
            if self.intake.log is not None:
                self.intake.log.close()

    def _save_at_stop(self, model: str, state: ModelState, deadline: float) -> None:
        lock = self.workers.lock(model)
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
                self.alert_states.save(model, state)
        except (LeaseLost, StoreError) as exc:
            log.warning("model %s: not saved at stop: %s", model, exc)
        finally:
            lock.release()
