"""The background thread's half of :class:`~watchkeeper.sdk.client.Client`: buffered rows
become Arrow tables (bad values counted, :mod:`watchkeeper.sdk.rows`), tables become
batches, each under an id it keeps on every try (:class:`Parcel`), and batches go to the
sink. A batch the sink cannot take now stays in the outbox and is tried again with backoff
(or waits in the spool); one it refuses for good is counted as rejected.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from watchkeeper.errors import SinkUnavailable
from watchkeeper.sdk.rows import (
    Columns,
    as_list,
    batch_table,
    events_table,
    labels_table,
    unify,
)
from watchkeeper.sdk.sinks import Sink, batch_id, with_batch_id
from watchkeeper.sdk.spool import Spool
from watchkeeper.sdk.values import Tally, is_list_type

#: Longest wait (seconds) between two tries of a batch the sink could not take.
MAX_BACKOFF = 30.0
#: Rows converted in one go by the background thread (it holds the GIL meanwhile).
CONVERT_ROWS = 1_000


@dataclass
class Parcel:
    """A converted batch waiting for the sink; its table carries its batch id."""

    kind: str  # "events" or "labels"
    table: pa.Table
    spooled: Path | None = None  # the spool file it was read from, if any

    @property
    def rows(self) -> int:
        return self.table.num_rows


def _strip_vectors(parcel: Parcel, refusal: Exception, count: Any) -> bool:
    """A batch refused for good naming one of its vector columns (a server whose suite has
    no such embedding column refuses lists, naming them) goes again without its vectors:
    its rows count more than its vectors. The vectors are nulled and counted as bad values;
    False when the refusal names none (nothing to try)."""
    table = parcel.table
    listed = [i for i, f in enumerate(table.schema) if is_list_type(f.type)]
    why = str(refusal)
    if not any(repr(table.schema.field(i).name) in why for i in listed):
        return False
    tally = Tally()
    for i in listed:
        name, column = table.schema.field(i).name, table.column(i)
        tally.add(table.num_rows - column.null_count,
                  f"{name}: vectors refused by the sink, sent without them "
                  f"({type(refusal).__name__}: {str(refusal)[:200]})")
        table = table.set_column(i, name, pa.nulls(table.num_rows))
    count(tally)
    # a new id: the refused batch was not stored under the old one
    parcel.table = with_batch_id(table, uuid.uuid4().hex)
    return True


class Delivery:
    """Converting and sending, for :class:`~watchkeeper.sdk.client.Client` (which sets the
    state below up in ``_reset``; ``_side`` guards the counters and the outbox)."""

    sink: Sink
    spool: Spool | None
    columns: Columns
    target: str
    flush_rows: int
    backoff: float
    _side: threading.Lock
    _outbox: deque[Parcel]
    _held: int
    _flushed: int
    _failures: int
    _retry_at: float
    _rejected: int
    _dropped_full: int
    _dropped_shutdown: int
    _retried: int
    _spooled: int
    _sink_errors: int
    _bad: int
    _last_error: str | None
    _last_bad: str | None

    @property
    def _dropped(self) -> int:
        return self._dropped_full + self._dropped_shutdown + self._rejected

    def _note_error(self, what: str) -> None:
        with self._side:
            self._last_error = what[:500]

    def _count_rejected(self, rows: int, what: str) -> None:
        with self._side:
            self._rejected += rows
            self._last_error = what[:500]

    def _convert(self, rows: list[tuple[Any, ...]], tally: Tally) -> tuple[pa.Table | None, int]:
        """The rows as one table, and how many rows could not be converted at all.

        Converted in parts of CONVERT_ROWS: the thread holds the GIL while it converts, and
        a short part keeps each stretch (what a logging thread may wait) short."""
        tables = []
        lost = 0
        for i in range(0, len(rows), CONVERT_ROWS):
            part = rows[i:i + CONVERT_ROWS]
            counted = Tally()
            try:
                tables.append(events_table(part, self.columns, counted))
                tally.merge(counted)
                continue
            except Exception:  # should not happen; rescue the rows one by one
                pass
            for row in part:
                counted = Tally()
                try:
                    tables.append(events_table([row], self.columns, counted))
                    tally.merge(counted)
                except Exception:
                    lost += 1
        if not tables:
            return None, lost
        try:
            return unify(tables, tally), lost
        except Exception:
            return None, len(rows)

    def _post(self, tables: list[tuple[str, pa.Table]], taken: list[int]) -> None:
        """Converted tables join the outbox, consecutive ones of a kind together up to
        ``flush_rows`` rows (many small ``log_batch`` calls make one request), each batch
        under a new id that it keeps on every retry. ``taken[0]`` counts the rows of this
        round held as taken from the buffer: a batch's rows move from it to the outbox in
        one step, so ``_held`` counts them once throughout."""
        group: list[pa.Table] = []
        kind = ""
        for next_kind, table in [*tables, ("", None)]:
            if group and (next_kind != kind or table is None or sum(
                    t.num_rows for t in group) + table.num_rows > self.flush_rows):
                tally = Tally()
                try:
                    parts = [unify(group, tally)]
                except Exception:  # columns of types that do not unify: one by one
                    parts = group
                self._count_bad(tally)
                for part in parts:
                    parcel = Parcel(kind, with_batch_id(part, uuid.uuid4().hex))
                    with self._side:
                        self._outbox.append(parcel)
                        taken[0] -= parcel.rows
                group = []
            if table is not None and table.num_rows:
                group.append(table)
                kind = next_kind

    def _unhold(self, rows: int) -> None:
        with self._side:
            self._held -= rows

    def _convert_rows(self, rows: list[tuple[Any, ...]]) -> list[tuple[str, pa.Table]]:
        tally = Tally()
        table, lost = self._convert(rows, tally)
        self._count_bad(tally)
        if lost:
            self._count_rejected(lost, f"{lost} rows could not be converted")
        return [] if table is None else [("events", table)]

    def _convert_batch(self, kind: str, first: Any, second: Any, rows: int,
                       at: float) -> list[tuple[str, pa.Table]]:
        tally = Tally()
        try:
            if kind == "events":
                table = batch_table(first, second or {}, self.columns, at, tally)
            else:
                ids, labels = as_list(first), as_list(second)
                n = min(len(ids), len(labels))
                tally.add(abs(len(ids) - len(labels)), "log_labels: ids and labels differ "
                                                       "in length")
                table = labels_table(ids[:n], labels[:n], self.columns.id_name, self.target,
                                     tally)
        except Exception as exc:
            self._count_bad(tally)
            self._count_rejected(rows, f"{kind} batch of {rows} rows unreadable: "
                                       f"{type(exc).__name__}: {exc}")
            return []
        self._count_bad(tally)
        return [(kind, table)]

    def _count_bad(self, tally: Tally) -> None:
        if tally.bad:
            with self._side:
                self._bad += tally.bad
                self._last_bad = tally.summary()

    def _deliver_all(self) -> None:
        """Send the spooled batches (oldest first), then the outbox, until one fails."""
        if self.spool is not None:
            while (taken := self.spool.take()) is not None:
                try:
                    kind, table = self.spool.read(taken)
                except Exception as exc:  # a damaged file: nothing to do but say so
                    self.spool.done(taken)
                    self._note_error(f"spool: {taken.name} unreadable: {exc}")
                    continue
                if not self._send(Parcel(kind, table, taken)):
                    return
        while True:
            with self._side:
                if not self._outbox:
                    return
                parcel = self._outbox[0]
            sent = self._send(parcel)
            if sent is False:
                if self.spool is not None:
                    self._spool_outbox()
                return
            with self._side:
                if self._outbox and self._outbox[0] is parcel:  # not taken by close()
                    self._outbox.popleft()
                    self._held -= parcel.rows

    def _send(self, parcel: Parcel) -> bool | None:
        """True when the sink took the batch, None when it refused it for good (counted),
        False when it may take it later (the client backs off)."""
        if self.sink is not None and hasattr(self.sink, "dropped"):
            self.sink.dropped = self._dropped  # a sink that reports drops to its server
        send = self.sink.send_events if parcel.kind == "events" else self.sink.send_labels
        try:
            send(parcel.table)
        except (SinkUnavailable, OSError) as exc:
            with self._side:
                self._sink_errors += 1
                self._retried += 1
                self._failures += 1
                self._last_error = f"{type(exc).__name__}: {exc}"[:500]
                delay = min(MAX_BACKOFF, self.backoff * 2 ** min(self._failures - 1, 16))
                self._retry_at = time.monotonic() + delay * random.uniform(0.5, 1.0)
            if parcel.spooled is not None and self.spool is not None:
                self.spool.give_back(parcel.spooled)
            return False
        except Exception as exc:
            if _strip_vectors(parcel, exc, self._count_bad):
                with self._side:
                    self._sink_errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"[:500]
                return self._send(parcel)  # once more, without its vectors
            with self._side:
                self._sink_errors += 1
                self._rejected += parcel.rows
                self._last_error = f"{type(exc).__name__}: {exc}"[:500]
            if parcel.spooled is not None and self.spool is not None:
                self.spool.done(parcel.spooled)
            return None
        with self._side:
            self._flushed += parcel.rows
            self._failures = 0
            self._retry_at = 0.0
        if parcel.spooled is not None and self.spool is not None:
            self.spool.done(parcel.spooled)
        return True

    def _to_spool(self, parcel: Parcel) -> bool:
        """Write a batch to the spool (True), or say it could not be (no spool, or full)."""
        if self.spool is None:
            return False
        try:
            ok = self.spool.put(parcel.kind, batch_id(parcel.table) or uuid.uuid4().hex,
                                parcel.table)
        except Exception as exc:
            self._note_error(f"spool: {type(exc).__name__}: {exc}")
            return False
        if ok:
            with self._side:
                self._spooled += parcel.rows
        return ok

    def _spool_outbox(self) -> None:
        """While the sink is away, batches wait on disk rather than in memory (those the
        spool has no room for stay in memory, within ``capacity``)."""
        while True:
            with self._side:
                if not self._outbox:
                    return
                parcel = self._outbox[0]
            if not self._to_spool(parcel):
                return
            with self._side:
                if self._outbox and self._outbox[0] is parcel:
                    self._outbox.popleft()
                    self._held -= parcel.rows
