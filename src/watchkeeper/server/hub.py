"""The server's engine: one OnlineMonitor per model, fed from the durable event log.

Ingest only appends to the store's event log (and answers once that commit is done);
a background thread folds new events into each model's windows, closes and evaluates
windows that are due, and saves windows, findings and the model's watermark (the last
event folded) in one transaction. After a crash, windows are reloaded and the events past
the watermark are folded again, so every acknowledged event counts exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import pyarrow as pa

from watchkeeper import suitefile
from watchkeeper.errors import WatchkeeperError
from watchkeeper.online import OnlineMonitor
from watchkeeper.server.ingest import from_ipc, to_ipc
from watchkeeper.store import Store
from watchkeeper.suite import Suite

log = logging.getLogger("watchkeeper.server")


@dataclass
class Hub:
    store: Store
    window: timedelta = timedelta(minutes=5)
    grace: timedelta = timedelta(minutes=1)
    retention: timedelta = timedelta(days=7)
    poll_seconds: float = 0.2
    models: dict[str, OnlineMonitor] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- models ----------------------------------------------------------------------------
    def load(self) -> None:
        """Start every model that has an active suite, resuming from the store."""
        for model in self.store.models():
            if self.store.active_suite(model) is not None:
                self._start(model)

    def _start(self, model: str) -> OnlineMonitor:
        version = self.store.active_suite(model)
        assert version is not None
        suite = Suite.from_dict(suitefile.parse(version.text, f"{model} v{version.version}"))
        live = OnlineMonitor(suite, model=model, window=self.window, grace=self.grace,
                             store=self.store, suite_version=version.version,
                             retention=self.retention)
        live.restore()
        watermark = self.store.watermark(model)
        self._replay(live, model, 0, until=watermark, fold=False)
        with self._lock:
            self.models[model] = live
        return live

    def register(self, model: str, suite_text: str, *, created_by: str | None = None,
                 note: str | None = None) -> int:
        """Validate and store a suite version for a model and make it the active one."""
        Suite.from_dict(suitefile.parse(suite_text, "suite"))  # raises SuiteError, field named
        version = self.store.add_suite(model, suite_text, created_by=created_by, note=note)
        with self._lock:
            self._start(model)
        return version.version

    # -- ingest (request thread) -------------------------------------------------------------
    def append(self, model: str, table: pa.Table, kind: str) -> int:
        if model not in self.models:
            raise KeyError(model)
        seq = self.store.append_events(model, to_ipc(table), table.num_rows, kind)
        self.counters[f"{kind}_rows:{model}"] += table.num_rows
        self.counters[f"{kind}_batches:{model}"] += 1
        self._wake.set()
        return seq

    # -- folding (background thread) ---------------------------------------------------------
    def _replay(self, live: OnlineMonitor, model: str, after: int, until: int | None,
                fold: bool) -> int:
        last = after
        while True:
            events = self.store.events_after(model, last, limit=50)
            if until is not None:
                events = [e for e in events if e.seq <= until]
            if not events:
                return last
            for event in events:
                table = from_ipc(event.payload)
                if not fold:
                    if event.kind == "events":
                        live.remember(table)
                elif event.kind == "labels":
                    live.ingest_labels(table)
                else:
                    live.ingest(table)
                last = event.seq
            if fold:
                live.flush(watermark=last)

    def step(self, now: float | None = None) -> None:
        """Fold new events of every model, close due windows, persist."""
        with self._lock:
            models = dict(self.models)
        for model, live in models.items():
            with self._lock:
                watermark = self.store.watermark(model)
                self._replay(live, model, watermark, until=None, fold=True)
                live.tick(now)

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
            for live in self.models.values():
                live.flush(watermark=None)
