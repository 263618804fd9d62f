"""Ingest (request threads): batches are appended to the store's durable event log (or to
this server's own event-log file, which the leader copies into it: store/logs.py), and
answered once that commit is done; the fold takes them from there.

Requests a server refuses (invalid payload, authentication) are counted against the
model's current window, where the security monitors see them. A follower hands its counts
to the leader through the event log, as empty event batches whose schema carries them.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import pyarrow as pa

from watchkeeper.errors import StoreError
from watchkeeper.io.pii import protect
from watchkeeper.server.hub.state import ModelState
from watchkeeper.store import Appended, Store
from watchkeeper.store.logs import EventLog
from watchkeeper.wire import to_ipc

#: Schema metadata of an empty event batch that carries refused requests' counts.
REJECTED_KEY = b"watchkeeper.rejected"


class Intake:
    """Stores what requests bring, and counts what they were refused, per model."""

    def __init__(self, store: Store, counters: Counter[str], log: EventLog | None = None
                 ) -> None:
        self.store = store
        self.counters = counters
        #: this server's own event-log file, where its batches go (None: into the store)
        self.log = log
        self._rejected: dict[str, Counter[str]] = {}  # refused requests not folded yet
        self._lock = threading.Lock()

    def append(self, model: str, state: ModelState, table: pa.Table, kind: str,
               key: str | None = None, *, pii_key: bytes | None = None) -> Appended:
        """Store a batch durably (personal data hashed or dropped first), once per
        idempotency ``key``: a batch sent again with the same key is not stored again (see
        ``Store.append_batch``) and is counted as a duplicate."""
        modes = {}
        for g in state.generations:  # any version's personal-data columns
            modes.update(g.live.suite.schema.pii)
        if modes:
            table = protect(table, modes, pii_key)
        done = self._append(model, to_ipc(table), table.num_rows, kind, key)
        if done.duplicate:
            self.counters[f"duplicates:{model}"] += 1
            return done
        self.counters[f"{kind}_rows:{model}"] += table.num_rows
        self.counters[f"{kind}_batches:{model}"] += 1
        return done

    def _append(self, model: str, payload: bytes, rows: int, kind: str, key: str | None
                ) -> Appended:
        if self.log is None:
            return self.store.append_batch(model, payload, rows, kind, key=key)
        return self.store.append_to_log(self.log, model, payload, rows, kind, key=key)

    def prune(self) -> int:
        """Forget the batches of this server's own event-log file that are in the store."""
        if self.log is None:
            return 0
        return self.log.prune(self.store.log_cursor(self.log.name))

    def reject(self, model: str, reason: str) -> None:
        """Count a refused request against the model (folded into its current window)."""
        self.counters[f"rejected_{reason}"] += 1
        with self._lock:
            self._rejected.setdefault(model, Counter())[reason] += 1

    def take_rejected(self, model: str) -> Counter[str] | None:
        """The model's refused requests not handed on yet (forgotten here)."""
        with self._lock:
            return self._rejected.pop(model, None)

    def log_rejected(self, model: str) -> None:
        """A follower hands the requests it refused to the leader through the event log:
        an empty batch whose schema carries the counts (kept for the next try if the store
        cannot take it)."""
        pending = self.take_rejected(model)
        if not pending:
            return
        schema = pa.schema([]).with_metadata({REJECTED_KEY: json.dumps(dict(pending))})
        try:
            self._append(model, to_ipc(pa.Table.from_batches([], schema)), 0, "events", None)
        except StoreError:
            with self._lock:
                self._rejected.setdefault(model, Counter()).update(pending)
            raise


def rejected_counts(table: pa.Table) -> dict[str, int] | None:
    """The refused requests' counts an empty event batch carries (None: it is not one;
    empty: they cannot be read)."""
    metadata = table.schema.metadata or {}
    if REJECTED_KEY not in metadata:
        return None
    try:
        counts = json.loads(metadata[REJECTED_KEY])
        return {str(k): int(v) for k, v in counts.items()}
    except (ValueError, TypeError, AttributeError):
        return {}
