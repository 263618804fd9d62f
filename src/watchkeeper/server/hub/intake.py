"""Ingest (request threads): batches are appended to the store's durable event log, and
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
from watchkeeper.wire import to_ipc

#: Schema metadata of an empty event batch that carries refused requests' counts.
REJECTED_KEY = b"watchkeeper.rejected"


class Intake:
    """Stores what requests bring, and counts what they were refused, per model."""

    def __init__(self, store: Store, counters: Counter[str]) -> None:
        self.store = store
        self.counters = counters
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
        done = self.store.append_batch(model, to_ipc(table), table.num_rows, kind, key=key)
        if done.duplicate:
            self.counters[f"duplicates:{model}"] += 1
            return done
        self.counters[f"{kind}_rows:{model}"] += table.num_rows
        self.counters[f"{kind}_batches:{model}"] += 1
        return done

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
            self.store.append_events(model, to_ipc(pa.Table.from_batches([], schema)), 0)
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
