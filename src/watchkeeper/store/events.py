"""The event log: ingested batches, once per idempotency key, in seq order per model;
retention, the backlog, batches set aside; and each server's own event-log file (SQLite,
:mod:`watchkeeper.store.logs`) copied into it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from watchkeeper.errors import StoreError
from watchkeeper.store import logs
from watchkeeper.store import tables as db
from watchkeeper.store.base import (
    TERM,
    StoreBase,
    check_choice,
    check_lease_args,
    check_model_name,
    of_model,
)
from watchkeeper.store.logs import EventLog
from watchkeeper.store.records import Appended, Event, Lease

KINDS = ("events", "labels")
#: First key of the PostgreSQL advisory lock that serialises one model's appends.
_PG_APPEND_LOCK = 0x776B_6576  # "wkev"


class EventLogStore(StoreBase):
    """The log of ingested batches, and the servers' own event-log files."""

    def append_events(self, model: str, payload: bytes, rows: int, kind: str = "events") -> int:
        """Log an ingested batch; returns its seq. Committed when it returns (on SQLite,
        durable across a process crash; synchronous=NORMAL may lose it on power loss)."""
        return self.append_batch(model, payload, rows, kind).seq

    def append_batch(self, model: str, payload: bytes, rows: int, kind: str = "events", *,
                     key: str | None = None) -> Appended:
        """Log an ingested batch, once per idempotency ``key`` and model: when the model has
        a batch with that key already (a client's retry, or a copy sent concurrently to this
        or another server on the store), nothing is stored and the first one is returned,
        marked ``duplicate``. Atomic on both backends (a unique index decides). Committed
        when it returns, as :meth:`append_events`."""
        values = _batch_values(model, payload, rows, kind, key)
        with self._transaction(write=True) as conn:
            self._shed(conn, len(values["payload"]))
            self._ensure_model(conn, model)
            self._append_turn(conn, model)
            if key is None:
                result = conn.execute(sa.insert(db.events).values(**values))
                inserted = result.inserted_primary_key
                assert inserted is not None  # a single-row insert reports its key
                return Appended(int(inserted[0]), kind, rows)
            first = self._keyed(conn, model, key)
            if first is not None:
                return first
            # the unique index decides between copies racing past the look above
            seq = self._insert_keyed(conn, values)
            if seq is not None:
                return Appended(int(seq), kind, rows)
            first = self._keyed(conn, model, key)
            if first is None:  # (the first copy was deleted in between: retention)
                raise StoreError(f"model {model!r}: the batch with idempotency key {key!r} "
                                 "was just stored and deleted; send it again")
            return first

    @staticmethod
    def _keyed(conn: Connection, model: str, key: str) -> Appended | None:
        """The model's batch stored with idempotency key ``key``, as a duplicate, or None."""
        found = conn.execute(
            sa.select(db.events.c.seq, db.events.c.kind, db.events.c.rows)
            .where(of_model(db.events, model), db.events.c.idempotency_key == key)).first()
        return None if found is None else Appended(int(found[0]), found[1], int(found[2]),
                                                   duplicate=True)

    def _append_turn(self, conn: Connection, model: str) -> None:
        """One model's appends take their seqs and commit one at a time, so its committed
        events are always a prefix in seq order: a reader past a watermark never sees seq
        n + 1 while seq n is still uncommitted, and never skips it. (SQLite has a single
        writer at a time anyway.) Only appends take this turn, never the fold; a process
        frozen holding it loses it with its session (idle_in_transaction_session_timeout)."""
        if self._dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(:model))"),
                         {"key": _PG_APPEND_LOCK, "model": model})

    def _insert_keyed(self, conn: Connection, values: dict[str, Any]) -> int | None:
        """Insert a batch that has an idempotency key; its seq, or None when the model has
        a batch of that key already (the unique index decides between racing copies)."""
        seq = conn.scalar(
            self._insert(db.events).values(**values)
            .on_conflict_do_nothing(index_elements=[db.events.c.model,
                                                    db.events.c.idempotency_key],
                                    index_where=db.KEYED)
            .returning(db.events.c.seq))
        return None if seq is None else int(seq)

    def events_after(
        self,
        model: str,
        seq: int,
        *,
        kinds: tuple[str, ...] = KINDS,
        limit: int = 100,
        max_bytes: int | None = None,
        max_rows: int | None = None,
    ) -> list[Event]:
        """Up to ``limit`` logged batches of a model with seq > ``seq``, in seq order, and
        with ``max_bytes`` at most that many bytes of payloads in all, ``max_rows`` at most
        that many rows, but always at least one batch (payload sizes and rows are read
        first, so no batch is read in vain). Batches set aside (:meth:`quarantine_event`)
        are left out."""
        for kind in kinds:
            check_choice("kind", kind, KINDS)
        if limit < 1:
            raise StoreError(f"limit must be ≥ 1, got {limit!r}")
        for name, most in (("max_bytes", max_bytes), ("max_rows", max_rows)):
            if most is not None and most < 1:
                raise StoreError(f"{name} must be ≥ 1, got {most!r}")
        where = [of_model(db.events, model), db.events.c.seq > seq, db.events.c.kind.in_(kinds),
                 db.events.c.quarantined_at.is_(None)]
        with self._transaction() as conn:
            if max_bytes is not None or max_rows is not None:
                sizes = (
                    sa.select(db.events.c.seq, sa.func.length(db.events.c.payload),
                              db.events.c.rows)
                    .where(*where)
                    .order_by(db.events.c.seq)
                    .limit(limit)
                )
                most_bytes = float("inf") if max_bytes is None else max_bytes
                most_rows = float("inf") if max_rows is None else max_rows
                total, counted, last = 0, 0, None
                for n, size, count in conn.execute(sizes):
                    if last is not None and (total + size > most_bytes
                                             or counted + count > most_rows):
                        break
                    total, counted, last = total + size, counted + count, n
                if last is None:
                    return []
                where.append(db.events.c.seq <= last)
            query = sa.select(db.events).where(*where).order_by(db.events.c.seq).limit(limit)
            rows = conn.execute(query).mappings().all()
            self._shed(conn, sum(len(r["payload"]) for r in rows))
        return [Event(**{**r, "payload": bytes(r["payload"])}) for r in rows]

    def delete_events_before(self, model: str, seq: int) -> int:
        """Retention: delete a model's batches with seq < ``seq``, except those set aside
        (they were never folded: they stay until someone deals with them); returns how
        many."""
        query = sa.delete(db.events).where(of_model(db.events, model), db.events.c.seq < seq,
                                           db.events.c.quarantined_at.is_(None))
        with self._transaction(write=True) as conn:
            return int(conn.execute(query).rowcount)

    def expire_events(self, model: str, before: datetime, through: int) -> int:
        """Retention: delete a model's batches received before ``before`` that are folded
        (seq ≤ ``through``, its watermark), except those set aside; returns how many."""
        query = sa.delete(db.events).where(
            of_model(db.events, model), db.events.c.seq <= through,
            db.events.c.received_at < before, db.events.c.quarantined_at.is_(None))
        with self._transaction(write=True) as conn:
            return int(conn.execute(query).rowcount)

    def backlog(self) -> dict[str, tuple[int, datetime]]:
        """Per model with batches logged but not folded yet (past its watermark, not set
        aside, or in a server's event-log file not copied yet): how many, and when the
        oldest of them was received (how far the fold lags)."""
        e, m = db.events, db.models
        query = (
            sa.select(e.c.model, sa.func.count(), sa.func.min(e.c.received_at))
            .select_from(e.join(m, m.c.name == e.c.model))
            .where(e.c.seq > m.c.watermark, e.c.quarantined_at.is_(None))
            .group_by(e.c.model)
        )
        with self._transaction() as conn:
            out = {model: (int(n), oldest) for model, n, oldest in conn.execute(query)}
        for model, (n, oldest) in self.log_backlog().items():  # not copied into it yet
            before = out.get(model)
            out[model] = (n, oldest) if before is None else (before[0] + n,
                                                             min(before[1], oldest))
        return out

    def quarantine_event(self, model: str, seq: int, error: str, *,
                         lease: Lease | None = None) -> bool:
        """Set a logged batch aside (the fold failed on it again and again): it is kept,
        with ``error`` (cut to 2000 characters), but no longer read by :meth:`events_after`
        nor deleted by retention. Fenced by ``lease`` when given. False if the model has
        no such batch or it was set aside already."""
        check_model_name(model)
        query = (
            sa.update(db.events)
            .where(of_model(db.events, model), db.events.c.seq == seq,
                   db.events.c.quarantined_at.is_(None))
            .values(quarantined_at=datetime.now(UTC), error=str(error)[:2000])
        )
        with self._transaction(write=True, lease=lease) as conn:
            return bool(conn.execute(query).rowcount)

    def quarantined_events(self, model: str) -> list[Event]:
        """A model's batches set aside, in seq order, with their payloads as logged."""
        query = (
            sa.select(db.events)
            .where(of_model(db.events, model), db.events.c.quarantined_at.is_not(None))
            .order_by(db.events.c.seq)
        )
        with self._transaction() as conn:
            rows = conn.execute(query).mappings().all()
        return [Event(**{**r, "payload": bytes(r["payload"])}) for r in rows]

    def quarantine_counts(self) -> dict[str, int]:
        """How many batches each model has set aside (models with none are left out); one
        small query on a partial index."""
        query = (
            sa.select(db.events.c.model, sa.func.count())
            .where(db.events.c.quarantined_at.is_not(None))
            .group_by(db.events.c.model)
        )
        with self._transaction() as conn:
            return {m: int(n) for m, n in conn.execute(query)}

    @property
    def log_dir(self) -> Path | None:
        """Where the servers' own event-log files are (None: not a SQLite file)."""
        database = self._engine.url.database
        if self._dialect != "sqlite" or database in (None, "", ":memory:"):
            return None
        return Path(str(database)).expanduser().with_name(Path(str(database)).name + "-logs")

    def open_log(self, owner: str) -> EventLog:
        """This server's own event-log file (created if missing), named after ``owner``
        (its fold-lease owner id); StoreError unless the store is a SQLite file."""
        check_lease_args("event-log", owner)
        directory = self.log_dir
        if directory is None:
            raise StoreError(f"{self.url}: an event log of its own per server is for SQLite "
                             "files (on PostgreSQL every server appends to the store)")
        return EventLog(directory, owner)

    def append_to_log(self, log: EventLog, model: str, payload: bytes, rows: int,
                      kind: str = "events", *, key: str | None = None) -> Appended:
        """Log an ingested batch in ``log`` (this server's file), as :meth:`append_batch`
        does in the store: a batch whose idempotency key the store or ``log`` has already is
        not logged again (the first one is returned, marked ``duplicate``). A copy sent to
        another server at once may be logged there too: the copy into the store keeps one
        (:meth:`import_logs`). Committed when it returns; its seq is the file's."""
        values = _batch_values(model, payload, rows, kind, key)
        if key is not None:
            with self._transaction() as conn:  # a read: never waits on the store's writer
                first = self._keyed(conn, model, key)
            if first is not None:
                return first
        return log.append(values)

    def log_cursor(self, name: str) -> int:
        """Seq of the last batch of the log file ``name`` copied into the store (0: none)."""
        table = db.log_cursors
        for _ in range(5):
            with self._transaction() as conn:
                seq = int(conn.scalar(sa.select(table.c.seq).where(table.c.file == name)) or 0)
                term = conn.info.get(TERM, 0)
            # read in the term still current afterwards (terms.py): a server deletes the
            # batches of its file up to here, so the value must be one the store keeps
            if self._terms is None or self._terms.current() == term:
                return seq
        raise StoreError(f"store at {self.url}: taken over again and again while reading "
                         f"the cursor of {name}")

    def import_logs(self, *, lease: Lease | None = None,
                    gone: Callable[[str], bool] = lambda owner: False,
                    max_bytes: int = 64 * 2**20, limit: int = 1000) -> dict[str, int]:
        """Copy the servers' event-log files' new batches into the event log: up to
        ``limit`` batches per file and ``max_bytes`` of payloads in all (one batch per file
        at least), each file's in one transaction fenced by ``lease`` with how far it got,
        so each batch is copied once. A batch with an idempotency key the model's log has
        already is dropped; returns how many were per model. The file of a server that is
        ``gone`` (given its owner id) is deleted once every batch of it is copied."""
        directory = self.log_dir
        if directory is None or not directory.is_dir():
            return {}
        dropped: dict[str, int] = {}
        budget = max_bytes  # for all the files: each gets one batch at least
        for path in sorted(directory.glob("*" + logs.SUFFIX)):
            name = path.name
            engine = self._log_engine(path)
            batches = logs.read(engine, path, self.log_cursor(name), limit=limit,
                                max_bytes=max(1, budget))
            budget -= sum(len(b["payload"]) for b in batches)
            if not batches:
                if gone(logs.owner_of(name)):
                    self._drop_log(path, lease)
                continue
            with self._transaction(write=True, lease=lease) as conn:
                cursor = int(conn.scalar(sa.select(db.log_cursors.c.seq).where(
                    db.log_cursors.c.file == name)) or 0)
                for batch in batches:
                    if batch["seq"] <= cursor:  # copied meanwhile (by an earlier leader)
                        continue
                    model, key = batch["model"], batch["idempotency_key"]
                    self._ensure_model(conn, model)
                    values = {k: v for k, v in batch.items() if k != "seq"}
                    if key is None:
                        conn.execute(sa.insert(db.events).values(**values))
                        continue
                    seq = self._insert_keyed(conn, values)
                    if seq is None:
                        dropped[model] = dropped.get(model, 0) + 1
                insert = self._insert(db.log_cursors)
                conn.execute(insert.values(file=name, seq=batches[-1]["seq"])
                             .on_conflict_do_update(index_elements=[db.log_cursors.c.file],
                                                    set_={"seq": insert.excluded.seq}))
        return dropped

    def log_backlog(self) -> dict[str, tuple[int, datetime]]:
        """Per model with batches in the servers' event-log files not copied into the
        store yet: how many, and when the oldest was received."""
        directory = self.log_dir
        out: dict[str, tuple[int, datetime]] = {}
        if directory is None or not directory.is_dir():
            return out
        for path in sorted(directory.glob("*" + logs.SUFFIX)):
            try:
                found = logs.pending(self._log_engine(path), path, self.log_cursor(path.name))
            except StoreError:
                if path.exists():
                    raise
                continue
            for model, n, oldest in found:
                before = out.get(model)
                out[model] = (n, oldest) if before is None else (
                    before[0] + n, min(before[1], oldest))
        return out

    def _log_engine(self, path: Path) -> Any:
        """An engine reading a server's event-log file (kept while the store is open)."""
        with self._logs_lock:
            engine = self._log_engines.get(path)
            if engine is None:
                engine = self._log_engines[path] = logs.open_engine(path)
            return engine

    def _drop_log(self, path: Path, lease: Lease | None) -> None:
        """Delete the all-copied file of a server that is gone, then its cursor (in this
        order: a cursor without its file is harmless, a file without its cursor would be
        copied again)."""
        with self._logs_lock:
            engine = self._log_engines.pop(path, None)
        if engine is not None:
            engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(path) + suffix).unlink()
        with self._transaction(write=True, lease=lease) as conn:
            conn.execute(sa.delete(db.log_cursors).where(db.log_cursors.c.file == path.name))


def _batch_values(model: str, payload: bytes, rows: int, kind: str, key: str | None
                  ) -> dict[str, Any]:
    """A batch to log, checked, as the columns of its row."""
    check_model_name(model)
    check_choice("kind", kind, KINDS)
    try:
        data = payload if isinstance(payload, bytes) else bytes(memoryview(payload))
    except TypeError:
        raise StoreError(f"payload must be bytes, got {type(payload).__name__}") from None
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise StoreError(f"rows must be a count ≥ 0, got {rows!r}")
    if key is not None and (not isinstance(key, str) or not key):
        raise StoreError(f"an idempotency key must be a non-empty string, got {key!r}")
    return {
        "model": model,
        "kind": kind,
        "received_at": datetime.now(UTC),
        "rows": rows,
        "payload": data,
        "idempotency_key": key,
    }

