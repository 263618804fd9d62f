"""The fold: a model's new events, past its watermark, into its windows in memory; saved
with the watermark (the last event folded) in one transaction, fenced by the fold lease.
After a crash, windows are reloaded and the events past the watermark are folded again, so
every acknowledged event counts exactly once. Prediction records kept for late labels are
written with the windows and the watermark in their transaction; they are forgotten after
the retention, like the folded events.

A fold step reads at most ``fold_bytes`` of event bodies (and at most FOLD_BATCHES
batches; always one at least), so the fold's memory is bounded whatever the size of the
batches.

A batch the fold fails on (a corrupt payload, or one the profiling fails on) does not stall
its model: it is tried again at the next steps, and after FOLD_ATTEMPTS failures in a row it
is set aside in the store (quarantined: kept with its error, never deleted, skipped by the
fold and after restarts), logged once and counted in /metrics; the fold goes on with the
batches after it. When a step of several batches fails, they are folded one at a time until
past it, so that only the one to blame is set aside. Other models fold on meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace as replaced
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.errors import BatchFailed, StoreError
from watchkeeper.io.pii import key_check
from watchkeeper.io.values import epoch_seconds
from watchkeeper.monitors.security import REJECTED
from watchkeeper.online.monitor import save, usable_times
from watchkeeper.profiles.shipped import Shipped, profiled_windows
from watchkeeper.server.hub.intake import rejected_counts
from watchkeeper.server.hub.lease import Fenced
from watchkeeper.server.hub.memory import give_back
from watchkeeper.server.hub.state import FIRST, ModelState
from watchkeeper.store import LabelRecords, Lease, Store
from watchkeeper.wire import TS, from_ipc

log = logging.getLogger("watchkeeper.server")
#: Most event batches read per fold step (``fold_bytes`` bounds their bytes).
FOLD_BATCHES = 50
#: rows a fold step takes at most (always one batch at least) for a suite that joins late
#: labels: their prediction records are written in the step's transaction, which must stay
#: short (it holds the store's write lock, and the lease row, while it runs)
FOLD_RECORDS = 100_000
#: a fold step of at least this many rows (events or labels) runs the cycle collector
#: before handing memory back (see memory.give_back)
COLLECT_ROWS = 10_000
#: Failed attempts at folding an event batch before it is set aside (quarantined).
FOLD_ATTEMPTS = 3


class Fold:
    """Folds each model's event log into its windows, sets aside the batches it keeps
    failing on, and forgets events past the retention. ``clock`` is the wall clock the
    windows run on; ``monotonic`` times the looks for expired events."""

    def __init__(self, store: Store, writer: Fenced, counters: Counter[str],
                 fence: Callable[[], Lease | None], *, window: timedelta,
                 retention: timedelta, fold_bytes: int, expire_seconds: float,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 pii_key: bytes | None = None) -> None:
        self.store = store
        self.pii_check = key_check(pii_key)  # of the key personal data is hashed with
        self.writer = writer
        self.counters = counters
        self.fence = fence
        self.window = window
        self.retention = retention
        self.fold_bytes = fold_bytes
        self.expire_seconds = expire_seconds
        self.clock = clock
        self.monotonic = monotonic
        #: batches set aside in the store per model, as last read or set aside here
        self._quarantined: dict[str, int] = {}
        self._lock = threading.Lock()
        #: (seq, failed attempts) of the batch a model's fold failed on last
        self.failing: dict[str, tuple[int, int]] = {}
        #: fold a model's batches one at a time up to this seq (a step of several failed)
        self.isolate: dict[str, int] = {}
        self._expired: dict[str, float] = {}  # monotonic() of the last look, per model

    @property
    def quarantined(self) -> dict[str, int]:
        """Batches set aside per model (a copy)."""
        with self._lock:
            return dict(self._quarantined)

    def count_quarantined(self) -> None:
        """Read how many batches each model has set aside (for /metrics)."""
        counts = self.store.quarantine_counts()
        with self._lock:
            self._quarantined = counts

    def reset(self) -> None:
        """Forget the failures seen (the fold starts over from the store: a takeover)."""
        self.failing.clear()
        self.isolate.clear()

    def advance(self, model: str, state: ModelState) -> None:
        """Fold the events past the model's watermark, a bounded step at a time, each step
        saved with its watermark. Should a step fail between changing the windows in memory
        and saving them, the model is marked broken (reloaded at the next step).

        A batch that cannot be folded (a corrupt payload, or one the profiling fails on) is
        tried again at the next steps; after FOLD_ATTEMPTS failures it is set aside in the
        store (see :meth:`_failed`) and the fold goes on past it. Which batch of a failed
        step is to blame is found by folding that step's batches one at a time."""
        last = self.store.watermark(model)
        while True:
            alone = last < self.isolate.get(model, FIRST)
            if not alone:
                self.isolate.pop(model, None)
            # a suite that joins late labels: at most FOLD_RECORDS rows, counted before the
            # payloads are read (reading more, to fold a part, would only cost memory)
            joins = any(g.live.joins_labels for g in state.generations)
            events = self.store.events_after(model, last, limit=1 if alone else FOLD_BATCHES,
                                             max_bytes=self.fold_bytes,
                                             max_rows=FOLD_RECORDS if joins else None)
            if not events:
                return
            tables: list[pa.Table | None] = []
            for event in events:  # decoded first: a corrupt one changes nothing in memory
                try:
                    tables.append(from_ipc(event.payload))
                except Exception as exc:  # whatever the bytes make Arrow say
                    if not self._failed(model, event, exc):
                        raise BatchFailed(f"model {model}: batch {event.seq} cannot be read "
                                          f"({why(exc)}); tried again") from None
                    tables.append(None)  # set aside: skipped
            rows = sum(e.rows for e in events)
            events = [replaced(e, payload=b"") for e in events]  # the bytes are not needed
            del event
            try:
                last = self._step(model, state, events, tables)
            except StoreError:
                raise
            except Exception as exc:
                state.broken = True  # its windows in memory may be half-changed: reloaded
                if len(events) > 1:
                    self.isolate[model] = events[-1].seq
                    raise BatchFailed(f"model {model}: folding batches {events[0].seq} to "
                                      f"{events[-1].seq} failed ({why(exc)}); folding them "
                                      "one at a time") from exc
                gave_up = self._failed(model, events[0], exc)
                raise BatchFailed(f"model {model}: folding batch {events[0].seq} failed "
                                  f"({why(exc)}); " + ("set aside, folding on" if gave_up
                                                       else "tried again")) from exc
            del events, tables
            # every generation's windows and the watermark in one transaction
            records, findings, labels = [], [], LabelRecords()
            for g in state.generations:
                r, f = g.live.pending()
                records += r
                findings += f
                labels.extend(g.live.label_writes() or LabelRecords())
            save(self.writer, model, records, findings, last,  # type: ignore[arg-type]
                 labels)
            state.broken = False
            state.counted = {g.version: dict(g.live.counters) for g in state.generations}
            failing = self.failing.get(model)
            if failing is not None and failing[0] <= last:  # folded after all
                del self.failing[model]
            del records, findings, labels  # before the memory they held is given back
            give_back(collect=rows >= COLLECT_ROWS)

    def _step(self, model: str, state: ModelState, events: list[Any],
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
                _ingest(state, pending)
                unmatched = [g.live.ingest_labels(table) for g in state.generations]
                matched = sum(table.num_rows - u for u in unmatched)
                self.counters[f"unmatched_labels:{model}"] += table.num_rows - matched
            elif (profiled := profiled_windows(table)) is not None:  # profiled on Spark
                state.broken = True
                _ingest(state, pending)
                self._merge_profiles(state, profiled, event.received_at.timestamp())
            elif table.num_rows:  # rows without a time: when the batch arrived, not now
                timed, bad = _arrived(table, event.received_at.timestamp())
                state.current.counters["bad_timestamps"] += bad
                pending.append(timed)
            else:
                counts = rejected_counts(table)  # a follower's refusals
                if counts is not None:
                    self.count_rejections(state, counts, event.received_at.timestamp())
        state.broken = True
        _ingest(state, pending)
        return last

    def _merge_profiles(self, state: ModelState, shipped: Shipped, at: float) -> None:
        """Merge window profiles made elsewhere into the windows of their starts (those
        without one: the window of ``at``, when their batch was logged), each into the
        suite version serving it, which must be the one they were profiled with; keep the
        prediction records shipped with them as those of the rows folded here."""
        step = self.window.total_seconds()
        if shipped.window != step:
            raise ValueError(f"profiled in windows of {shipped.window:g} s; this server's "
                             f"are {step:g} s (serve --window)")
        version = shipped.version
        if any(g.live.suite.schema.pii for g in state.generations) and (
                not shipped.pii or shipped.pii_key != self.pii_check):
            raise ValueError("the personal-data columns were not hashed with this server's "
                             "key (WATCHKEEPER_PII_KEY: give the sink the same, or none to "
                             "both)" if shipped.pii else "the personal-data columns were "
                             "profiled as they came; this server hashes or drops them")
        merges = []
        for start, p in shipped.windows:  # all checked before any window changes
            key = int(np.floor((at if start is None else start) / step))
            if start is not None and key * step != start:
                raise ValueError(f"a window profile starts at {start}, not at the start of "
                                 f"a {step:g} s window")
            serving = next((g for g in state.generations if g.first <= key < g.last), None)
            if serving is None or serving.version != version:
                raise ValueError(f"profiled with suite version {version}; the window "
                                 f"starting at {key * step:g} is served by version "
                                 f"{serving.version if serving else 'none'}")
            merges.append((serving.live, key, p))
        records = _records_by_window(shipped.records, len(merges))
        for (live, key, p), shipped_records in zip(merges, records, strict=True):
            live.ingest_profile(key, p, shipped_records)
        state.current.counters["bad_timestamps"] += shipped.bad_times

    def _failed(self, model: str, event: Any, exc: BaseException) -> bool:
        """Count a failure to fold a batch; at the FOLD_ATTEMPTS-th in a row, set it aside in
        the store (not deleted: kept with its error, skipped by the fold and by restarts,
        listed by ``Store.quarantined_events``), log that once and return True."""
        seq, tries = self.failing.get(model, (event.seq, 0))
        tries = tries + 1 if seq == event.seq else 1
        if tries < FOLD_ATTEMPTS:
            self.failing[model] = (event.seq, tries)
            return False
        error = why(exc)
        marked = self.store.quarantine_event(model, event.seq, error, lease=self.fence())
        self.failing.pop(model, None)
        if marked:  # (not if someone deleted or set it aside meanwhile)
            with self._lock:
                self._quarantined[model] = self._quarantined.get(model, 0) + 1
        log.error("model %s: batch %d (%s, %d rows, received %s) set aside after %d failed "
                  "attempts to fold it: %s. It is kept in the store (events.quarantined_at), "
                  "not folded; the fold goes on with the next batches.", model, event.seq,
                  event.kind, event.rows, event.received_at.isoformat(), tries, error)
        return True

    def count_rejections(self, state: ModelState, counts: Mapping[str, int],
                         at: float | None = None) -> None:
        """Count refused requests into the window of ``at`` (default: now) of the version in
        service, where the security monitors see them."""
        live = state.generations[-1].live
        when = float(self.clock()) if at is None else at
        key = int(np.floor(when / self.window.total_seconds()))
        tally = np.array([counts.get("invalid", 0), counts.get("auth", 0)], dtype=np.int64)
        w = live._window(key)
        w.profile.joint[REJECTED] = w.profile.joint.get(REJECTED, 0) + tally
        live._dirty.add(key)

    def expire(self, model: str, state: ModelState) -> None:
        """The event log keeps folded events for the retention, then forgets them, and the
        prediction records for late labels of windows past it (checked every
        ``expire_seconds``; the records' deletion is fenced like the fold's writes)."""
        if self.monotonic() - self._expired.get(model, float("-inf")) < self.expire_seconds:
            return
        self._expired[model] = self.monotonic()
        before = datetime.fromtimestamp(self._horizon(), UTC)
        self.counters[f"expired_events:{model}"] += self.store.expire_events(
            model, before, self.store.watermark(model))
        if any(g.live.joins_labels for g in state.generations):
            state.current.counters["label_records_expired"] += self.store.expire_label_records(
                model, self.records_kept_from(), lease=self.fence())

    def _horizon(self) -> float:
        """The retention's start (seconds since 1970)."""
        return float(self.clock()) - self.retention.total_seconds()

    def records_kept_from(self) -> float:
        """The start of the first window whose prediction records the retention keeps (the
        one its start falls in): the expiry forgets those of the windows before it."""
        step = self.window.total_seconds()
        return float(np.floor(self._horizon() / step) * step)


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


def _records_by_window(records: pa.Table | None, windows: int
                       ) -> list[tuple[np.ndarray, list[bytes], np.ndarray] | None]:
    """The shipped prediction records of each window (ids, packed codes, label codes), None
    for a window without any."""
    out: list[tuple[np.ndarray, list[bytes], np.ndarray] | None] = [None] * windows
    if records is None:
        return out
    index = records.column("window").to_numpy(zero_copy_only=False).astype(np.int64)
    if len(index) and (index.min() < 0 or index.max() >= windows):
        raise ValueError(f"prediction records of window {int(index.max())}, of {windows}")
    for w in np.unique(index):
        rows = records.filter(pa.array(index == w))
        out[int(w)] = (rows.column("id").to_numpy(zero_copy_only=False),
                       rows.column("codes").to_pylist(),
                       rows.column("label").to_numpy(zero_copy_only=False).astype(float))
    return out


def why(exc: BaseException) -> str:
    """An exception in one line, for the log and the store."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


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
