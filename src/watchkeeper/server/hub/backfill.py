"""Rebuilding the prediction records for late labels of batches folded before the store kept
them (a store upgraded from before schema version 8: those records lived in the server's
memory then, and their labels would count as unmatched).

The upgrade notes, per model, the last batch to rebuild records of (``label_backfill``);
the folding server replays the model's retained event log up to it before folding anything
new for that model: prediction batches give records (an id logged again replaces its
record, as in the fold), label batches give those records their labels (the windows
counted them already: no window changes). A bounded step at a time (FOLD_BATCHES batches,
``fold_bytes``, FOLD_RECORDS rows as in the fold), each written with its progress in one
transaction fenced by the fold lease, so that a crash or a takeover goes on where the last
step ended, and a step done twice writes the same records. Batches past the retention are
gone: their records are not rebuilt (their labels are unmatched, as they would be anyway);
nor are the records of windows past it (rows timed long before they arrived), which the
fold's expiry would delete at its next look.
A store that reached version 8 with an earlier release is not backfilled (see
store/migrations.py: its fold has written records since, which a replay could undo).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.segments import record_codes, segment_labels
from watchkeeper.run.label_join import StoredLabelJoin
from watchkeeper.server.hub.fold import FOLD_BATCHES, FOLD_RECORDS, _arrived
from watchkeeper.server.hub.memory import give_back
from watchkeeper.server.hub.state import ModelState
from watchkeeper.store import LabelRecords, Lease, Store
from watchkeeper.wire import from_ipc

log = logging.getLogger("watchkeeper.server")


class Backfill:
    """Rebuilds each model's prediction records from its retained event log, as the
    store's ``label_backfill`` rows ask (see the module)."""

    def __init__(self, store: Store, fence: Callable[[], Lease | None], *,
                 fold_bytes: int, kept_from: Callable[[], float]) -> None:
        self.store = store
        self.fence = fence
        self.fold_bytes = fold_bytes
        #: the fold's rule (:meth:`Fold.records_kept_from`): records of earlier windows
        #: are not rebuilt, its expiry would forget them
        self.kept_from = kept_from
        self._pending: dict[str, tuple[int, int]] | None = None  # None: not read yet

    def reset(self) -> None:
        """Read the store's backfill rows again at the next step (a takeover, a restart)."""
        self._pending = None

    def pending(self, model: str) -> bool:
        """Whether the model's records are still being rebuilt (its fold waits)."""
        if self._pending is None:
            self._pending = self.store.label_backfills()
        return model in self._pending

    def step(self, model: str, state: ModelState) -> bool:
        """One bounded step of the model's backfill, if it has one; returns whether one is
        still under way after it (the fold of the model waits until it is done)."""
        if not self.pending(model):
            return False
        assert self._pending is not None
        through, done = self._pending[model]
        joins = [(g, StoredLabelJoin(task, self.store, model, g.version,
                                     segments=segment_labels(g.live.suite.schema)))
                 for g in state.generations
                 if (task := g.live.suite.schema.task) is not None and task.id is not None]
        if not joins:  # the suite joins no labels: nothing to rebuild
            self.store.backfill_label_records(model, LabelRecords(), through,
                                              lease=self.fence())
            del self._pending[model]
            return False
        events = [e for e in self.store.events_after(model, done, limit=FOLD_BATCHES,
                                                     max_bytes=self.fold_bytes,
                                                     max_rows=FOLD_RECORDS)
                  if e.seq <= through]
        scratch = Profile()  # the windows counted these labels already: changes go here
        kept = self.kept_from()
        for event in events:
            try:
                table = from_ipc(event.payload)
            except Exception as exc:  # the fold has set it aside, or will
                log.warning("model %s: batch %d not read for the label records (%s)", model,
                            event.seq, exc)
                continue
            if event.kind == "labels":
                for _, join in joins:
                    join.apply(table, lambda _start: scratch)
            elif table.num_rows:
                timed, _ = _arrived(table, event.received_at.timestamp())
                for live, part in state.route(timed):
                    mine = next((j for g, j in joins if g.live is live), None)
                    if mine is not None:
                        _add(mine, live, part, kept)
        last = events[-1].seq if events else through
        records = LabelRecords()
        for _, join in joins:
            records.extend(LabelRecords(*join.writes()))
        self.store.backfill_label_records(model, records, last, lease=self.fence())
        del records, joins, events
        give_back(collect=True)
        if last >= through:
            del self._pending[model]
            log.info("model %s: prediction records of the batches folded before the "
                     "upgrade rebuilt (through batch %d)", model, through)
            return False
        self._pending[model] = (through, last)
        return True


def _add(join: StoredLabelJoin, live: Any, table: pa.Table, kept: float) -> None:
    """A batch's prediction records, per window (as OnlineMonitor._record makes them),
    but for windows starting before ``kept`` (the fold's expiry forgets those)."""
    task = live.suite.schema.task
    if task.id not in table.column_names:
        return
    keys = live.keys(table)
    step = live.window.total_seconds()
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    for part in np.split(order, bounds):
        start = float(keys[part[0]]) * step
        if start < kept:
            continue
        chunk = table.take(pa.array(part)) if len(part) != table.num_rows else table
        ids = chunk.column(task.id).to_numpy(zero_copy_only=False)
        join.add_window(start, ids, record_codes(chunk, live.suite.schema))
