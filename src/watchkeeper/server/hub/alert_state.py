"""Each model's alert state: alerts, incidents, acknowledgements, silences, what was notified.

It is saved after the windows that changed it, and after every acknowledgement or silence
before it is answered. A restart resumes it and first judges the closed windows it had not
judged yet: an incident stays open under its id and is not notified again. A notification is
put in the state's outbox and saved (fenced by the lease) before it is sent, sent only while
the lease is held (checked in the store just before), then taken out of the stored outbox:
a leader frozen or cut off before the send sends nothing (its successor does); only a stop
between a send and its record (a crash) sends it again, with the same key.

Acknowledgements and silences are taken by any server: each is applied to the latest stored
alert state and saved only if nobody saved another revision in between (else it is applied
again); the fold merges them the same way before it saves what it judged. Readers see each
model's alert state through short locked reads of an object never changed once shown (a
change is made on a copy); no lock is held around the store's I/O.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any, TypeVar

from watchkeeper.alerts import AlertManager, Rules
from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import Conflict, StoreError
from watchkeeper.run.check import WindowResult
from watchkeeper.server.hub.state import ModelState
from watchkeeper.store import Lease, Store

log = logging.getLogger("watchkeeper.server")
#: Tries of a save of the alert state that others keep changing.
SAVE_TRIES = 5

T = TypeVar("T")


class AlertStates:
    """Resumes, merges, judges with, saves and shows the models' alert states. ``lock`` is
    the registry's (it guards what readers see); ``fence`` gives the lease that fences the
    fold's saves."""

    def __init__(self, store: Store, counters: Counter[str], lock: threading.RLock,
                 fence: Callable[[], Lease | None], *, rules: Rules | None = None,
                 dispatcher: Dispatcher | None = None, exporter: Any = None) -> None:
        self.store = store
        self.counters = counters
        self.lock = lock
        self.fence = fence
        self.rules = rules
        self.dispatcher = dispatcher
        #: telemetry of judged windows and incident transitions (run.otlp.OtlpExporter);
        #: it queues and never raises
        self.exporter = exporter
        #: per model, the keys of notifications sent and not yet recorded as sent (the
        #: record failed: it is made again at the next step, without sending them again)
        self._unrecorded: dict[str, set[str]] = {}

    def rules_for(self, state: ModelState) -> Rules:
        """The rules in force: the server's, else the suite in service's."""
        return self.rules or state.current.suite.rules

    def resume(self, model: str, state: ModelState) -> tuple[AlertManager, bool]:
        """The model's saved alert state under the rules in force, and whether there was
        one (a state that cannot be read is logged and started afresh)."""
        rules = self.rules_for(state)
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

    def first_save(self, model: str, state: ModelState) -> None:
        """Save a newly deployed model's alert state, so a restart knows it judged from
        here; if another server was first, the fold merges the stored one at its next
        step."""
        manager = state.alerts
        if manager is None:
            return
        with suppress(Conflict):
            revision = self.store.save_alert_state(model, manager.to_dict(), 0, None)
            with self.lock:
                if revision >= state.shown:
                    state.revision = state.shown = revision

    def merge(self, model: str, state: ModelState,
              saved: dict[str, Any] | None, revision: int) -> AlertManager | None:
        """Adopt a newer stored alert state (saved by another server, or by a person), with
        the windows judged here since the last save replayed onto it (their notifications
        put in its outbox: none is sent before the state that has them is saved); show it
        and return it."""
        manager = None
        if saved is not None:
            try:
                manager = AlertManager.from_dict(saved)
            except (ValueError, KeyError, TypeError) as exc:  # keep ours; it replaces it
                self.counters["alert_state_errors"] += 1
                log.error("model %s: cannot read the stored alert state (%s)", model, exc)
            else:
                manager.rules = self.rules_for(state)
                for start, w in _by_start(state.judged):
                    if manager.last_start is None or start > manager.last_start:
                        manager.outbox += manager.process(w.label, start, w.findings)
        if manager is None:
            manager = state.work or state.alerts
        else:  # with the windows judged here replayed onto it, if any: not saved yet
            state.work = manager if state.judged else None
            state.alerts_unsaved = bool(state.judged)
        state.revision = revision
        self.show(state, manager, revision)
        return manager

    def show(self, state: ModelState, manager: AlertManager | None, revision: int) -> None:
        """Let readers see ``manager`` (never changed afterwards) unless they see a newer
        stored revision already (a person's change the fold has not merged yet)."""
        with self.lock:
            if manager is not None and revision >= state.shown:
                state.alerts, state.shown = manager, revision

    def copy(self, state: ModelState) -> AlertManager | None:
        """The fold's alert state to change: a copy, so readers never see it half-changed."""
        base = state.work or state.alerts
        if base is None:
            return None
        manager = AlertManager.from_dict(base.to_dict())
        manager.rules = self.rules_for(state)
        return manager

    def save(self, model: str, state: ModelState,
             manager: AlertManager | None = None) -> AlertManager | None:
        """Persist the fold's alert state (``manager``, else what it has) on top of the stored
        revision it builds on (merged first if someone saved another since), fenced by the
        lease; if that fails it is tried again every step. Shown to readers once saved;
        returns what was saved."""
        manager = manager or state.work or state.alerts
        if manager is None:
            return None
        state.alerts_unsaved = True
        state.work = manager
        lease = self.fence()
        for _ in range(SAVE_TRIES):
            try:  # positional: tests stand in for it with a plain function
                revision = self.store.save_alert_state(model, manager.to_dict(),
                                                       state.revision, lease)
            except Conflict:
                manager = self.merge(model, state, *self.store.load_alert_state(model))
                if manager is None:
                    return None
                state.work = manager
                continue
            state.revision = revision
            state.alerts_unsaved = False
            state.judged.clear()
            state.work = None
            self.show(state, manager, revision)
            return manager
        raise StoreError(f"model {model}: the alert state kept changing while being saved")

    def change(self, model: str, state: ModelState, shown: AlertManager,
               change: Callable[[AlertManager], T]) -> T:
        """An operator's change to a model's alert state, saved before it is answered: made
        on the latest stored state (any server may take it) and saved only on top of it;
        shown once saved (the store's I/O is done outside the lock)."""
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
            self.show(state, manager, revision)
            return out
        raise StoreError(f"model {model}: the alert state kept changing while being saved")

    def judge(self, model: str, state: ModelState, closed: list[WindowResult]) -> None:
        """Closed windows' findings → alerts and incidents → notifications, in time order,
        put in the alert state's outbox; the state is saved (fenced by the lease) before
        any of them is sent, then :meth:`deliver` sends the outbox (with what was waiting
        in it: acknowledgements taken by any server, or what a previous leader saved and
        did not send). A leader that lost its lease before that save (frozen inside it)
        sends nothing: its successor judges the windows again. Judged on a copy of the
        alert state, shown to readers once saved."""
        base = state.work or state.alerts
        if base is None:
            return
        new = [(start, w) for start, w in _by_start(closed)
               if base.last_start is None or start > base.last_start]  # else judged already
        if not new and not state.alerts_unsaved and not base.outbox:
            return
        manager = self.copy(state) if new else base
        if manager is None:
            return
        for start, w in new:
            manager.outbox += manager.process(w.label, start, w.findings)
            state.judged.append(w)
            state.alerts_unsaved = True
            state.work = manager
            if self.exporter is not None:
                self.exporter.export_window(model, w)
        if state.alerts_unsaved:
            manager = self.save(model, state, manager) or manager
        self.deliver(model, state, manager)

    def deliver(self, model: str, state: ModelState, manager: AlertManager) -> None:
        """Send the outbox of ``manager``, a saved alert state, one notification at a time,
        each only while this server still holds the lease (checked in the store just before
        it is sent); then take what was sent out of the stored outbox. Only a stop between
        a send and that record (a crash, or a freeze at that very moment) sends one again:
        its successor sends the saved outbox, with the same :attr:`Notification.key`."""
        sent: set[str] = set()
        unrecorded = self._unrecorded.setdefault(model, set())
        try:
            for n in manager.outbox:
                sent.add(n.key)
                if n.key in unrecorded:  # sent already; its record failed
                    continue
                if self.dispatcher is not None:
                    lease = self.fence()  # fenced as the fold's writes: a stale leader
                    if lease is not None:  # sends nothing (its successor sends it)
                        self.store.check_lease(lease)
                    self.dispatcher.send(n)
                unrecorded.add(n.key)
                self.counters[f"notifications:{model}"] += 1
                if self.exporter is not None:
                    self.exporter.export_notifications([n])
        except BaseException:
            sent &= unrecorded  # (not the one it failed on)
            raise
        finally:
            if sent and self._sent(model, state, sent):
                unrecorded -= sent

    def _sent(self, model: str, state: ModelState, keys: set[str]) -> bool:
        """Record notifications as sent: take them out of the stored outbox, on top of the
        latest revision (merged first if another was saved since); whether that is done.
        Not fenced by the lease: it only records what happened, and changes nothing else
        of the state."""
        for _ in range(SAVE_TRIES):
            if state.judged:  # (never right after a save) not to save them unfenced
                return False
            shown = state.alerts  # the latest stored state known here
            if shown is None or not any(n.key in keys for n in shown.outbox):
                return True  # (recorded by whoever saved since, or replaced)
            manager = AlertManager.from_dict(shown.to_dict())
            manager.rules = shown.rules
            manager.outbox = [n for n in manager.outbox if n.key not in keys]
            try:  # positional: tests stand in for it with a plain function
                revision = self.store.save_alert_state(model, manager.to_dict(),
                                                       state.shown, None)
            except Conflict:
                self.merge(model, state, *self.store.load_alert_state(model))
                continue
            if state.work is None:  # (else its next save merges this one)
                state.revision = revision
            self.show(state, manager, revision)
            return True
        log.warning("model %s: the alert state kept changing while recording notifications "
                    "as sent; recorded at the next step", model)
        return False


def _by_start(windows: list[WindowResult]) -> list[tuple[datetime, WindowResult]]:
    """Windows in time order, with their start (an online window always has one)."""
    return sorted(((w.start, w) for w in windows if w.start is not None),
                  key=lambda pair: pair[0])
