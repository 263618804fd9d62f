"""Store: the durable state of online monitoring on SQLAlchemy Core."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from watchkeeper.errors import Conflict, LeaseLost, RecordNotFound, StoreError
from watchkeeper.monitors.base import Severity
from watchkeeper.store import label_sql, logs, migrations
from watchkeeper.store import tables as db
from watchkeeper.store.engine import (
    BUSY_MS,
    BUSY_TIMEOUT_MS,
    SHED,
    SHED_BYTES,
    WRITE,
    create_engine,
    one_line,
)
from watchkeeper.store.logs import EventLog
from watchkeeper.store.records import (
    Appended,
    Event,
    LabelRecords,
    Lease,
    SuiteVersion,
    WindowRecord,
)
from watchkeeper.store.terms import Terms, as_pragma, next_count

KINDS = ("events", "labels")
STATES = ("open", "closed")
FINDING_KEYS = (
    "monitor", "family", "column", "value", "threshold", "severity", "message", "evidence",
    "window", "metric", "segment",
)  # fmt: skip
_REQUIRED = {"monitor", "family", "value", "threshold", "severity", "message"}
log = logging.getLogger("watchkeeper.store")
#: SQLite: how many busy timeouts a writer of this process waits for its turn.
WRITE_TURN_WAITS = 6
#: Bytes a prediction record or a joined label takes on the wire, about (see Store._shed)
RECORD_BYTES = 64
#: First key of the PostgreSQL advisory lock that serialises one model's appends.
_PG_APPEND_LOCK = 0x776B_6576  # "wkev"
#: Connection.info key: the term of a SQLite store file the transaction is on (terms.py).
_TERM = "watchkeeper_term"


class Store:
    """Suite versions, the log of ingested batches, window profiles and findings, and the
    alert state (incidents, acknowledgements, silences), per model; and the fold lease that
    lets one of several server processes on a store fold its event log.

    SQLite in a local file by default (WAL journal), PostgreSQL by URL
    (``postgresql+psycopg://user:password@host/db``; ``postgresql://`` means the same).
    Opening a store migrates its schema (idempotent; two small queries when current). One
    Store per process is enough and may be shared by threads: it holds one connection pool
    and every call is one short transaction. Datetimes come back timezone-aware in UTC;
    naive ones passed in are taken as UTC. Windows and findings are filtered on their start,
    ``since`` inclusive and ``until`` exclusive. In JSON (profiles, metrics, evidence) NaN
    and ±inf are stored as null, as in every JSON output; a finding's NaN value as NULL.

    A logged batch that the fold cannot fold (a corrupt payload) is set aside, not deleted:
    :meth:`quarantine_event` marks it, reads of the log skip it, and retention keeps it.

    Writes of the fold (windows, watermark, findings, the alert state it judged, a batch set
    aside) may be *fenced* by a :class:`Lease`: they are refused with :class:`LeaseLost`,
    and nothing is written, once another owner has taken the lease. The alert state has a
    revision, so that a change saved against an older revision is refused with
    :class:`Conflict`.

    On a SQLite file, a server taking over the lease while the file's write lock stays held
    (by a process frozen inside a write) forks a new *term* of the store, a copy in which it
    holds the lease; every Store on the file follows to it (:mod:`watchkeeper.store.terms`).

    >>> store = Store("sqlite://")  # in memory; the default is ./watchkeeper.db
    >>> store
    Store('sqlite://')
    >>> store.add_suite("churn", "monitors: []", created_by="ana").version
    1
    >>> store.active_suite("churn").created_by
    'ana'
    >>> seq = store.append_events("churn", b"<arrow ipc stream>", rows=3)
    >>> [(e.seq == seq, e.rows, e.kind) for e in store.events_after("churn", 0)]
    [(True, 3, 'events')]
    >>> store.watermark("churn")
    0
    >>> store.close()
    """

    def __init__(self, url: str = "sqlite:///watchkeeper.db") -> None:
        self._engine, self.url, memory = create_engine(url)
        self._dialect = self._engine.dialect.name
        # An in-memory SQLite database is one connection: take turns on it.
        self._turn: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if memory else contextlib.nullcontext()
        )
        # SQLite file: this process's writers queue here for the database's one write lock.
        # Left to SQLite's busy handler (sleep and retry), one of six threads appending at
        # once could wait past the busy timeout and fail ("database is locked") while the
        # others kept barging in; other processes still wait on the busy timeout.
        self._write_turn = (threading.RLock() if self._dialect == "sqlite" and not memory
                            else None)
        self._closed = False
        self._log_engines: dict[Path, Any] = {}  # readers of the servers' own event logs
        self._logs_lock = threading.Lock()
        # SQLite file: the terms a takeover forks when the write lock stays busy (terms.py)
        database = self._engine.url.database
        self._terms = (Terms(Path(str(database)).expanduser(), self._engine)
                       if self._write_turn is not None and database else None)
        try:
            self.migrate()
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> int:
        """Bring the schema up to date; returns the schema version now in force."""
        with self._transaction() as conn:
            version = migrations.current_version(conn)
        if version < migrations.LATEST:
            with self._transaction(write=True) as conn:
                version = migrations.upgrade(conn)
        if version > migrations.LATEST:
            raise StoreError(
                f"the store at {self.url} has schema version {version}, newer than this "
                f"watchkeeper understands ({migrations.LATEST}): upgrade watchkeeper"
            )
        return version

    def forget_connections(self) -> None:
        """In a child process after ``fork()``: never reuse the parent's pooled connections
        (the store's and its terms'); new ones are opened as needed."""
        self._engine.dispose(close=False)
        if self._terms is not None:
            self._terms.forget()

    def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        self._closed = True
        self._engine.dispose()
        if self._terms is not None:
            self._terms.close()
        with self._logs_lock:
            engines, self._log_engines = list(self._log_engines.values()), {}
        for engine in engines:
            engine.dispose()

    # -- suites ----------------------------------------------------------------------------
    def add_suite(
        self,
        model: str,
        text: str,
        *,
        created_by: str | None = None,
        note: str | None = None,
        activate: bool = True,
    ) -> SuiteVersion:
        """Store a new version (the model's latest + 1) of a model's suite file."""
        _check_name(model)
        if not isinstance(text, str):
            raise StoreError(f"suite text must be str, got {type(text).__name__}")
        row: dict[str, Any] = {
            "model": model,
            "hash": hashlib.sha256(text.encode()).hexdigest(),
            "created_at": datetime.now(UTC),
            "created_by": created_by,
            "note": note,
            "active": bool(activate),
            "text": text,
        }
        with self._transaction(write=True) as conn:
            self._lock_model(conn, model)
            latest = conn.scalar(
                sa.select(sa.func.max(db.suites.c.version)).where(_of(db.suites, model))
            )
            row["version"] = (latest or 0) + 1
            if activate:
                self._deactivate(conn, model)
            conn.execute(sa.insert(db.suites).values(**row))
        return SuiteVersion(**row)

    def suite_versions(self, model: str) -> list[SuiteVersion]:
        """Every version of a model's suite, oldest first."""
        query = sa.select(db.suites).where(_of(db.suites, model)).order_by(db.suites.c.version)
        with self._transaction() as conn:
            return [SuiteVersion(**r) for r in conn.execute(query).mappings()]

    def suite_version(self, model: str, version: int) -> SuiteVersion:
        """One version of a model's suite; RecordNotFound if there is none."""
        with self._transaction() as conn:
            return self._suite(conn, model, version)

    def active_suite(self, model: str) -> SuiteVersion | None:
        """The version in force for a model, or None."""
        query = sa.select(db.suites).where(_of(db.suites, model), db.suites.c.active.is_(True))
        with self._transaction() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else SuiteVersion(**row)

    def activate(self, model: str, version: int) -> SuiteVersion:
        """Make one existing version the model's active suite (and no other)."""
        with self._transaction(write=True) as conn:
            self._lock_model(conn, model)
            self._suite(conn, model, version)
            self._deactivate(conn, model)
            conn.execute(
                sa.update(db.suites)
                .where(_of(db.suites, model), db.suites.c.version == version)
                .values(active=True)
            )
            return self._suite(conn, model, version)

    def models(self) -> list[str]:
        """Names of every model the store knows, sorted."""
        with self._transaction() as conn:
            return list(conn.scalars(sa.select(db.models.c.name).order_by(db.models.c.name)))

    # -- the event log ---------------------------------------------------------------------
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

    # -- each server's own event-log file (SQLite; see logs.py) ---------------------------
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
        _check_lease_args("event-log", owner)
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
                term = conn.info.get(_TERM, 0)
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

    @staticmethod
    def _keyed(conn: Connection, model: str, key: str) -> Appended | None:
        """The model's batch stored with idempotency key ``key``, as a duplicate, or None."""
        found = conn.execute(
            sa.select(db.events.c.seq, db.events.c.kind, db.events.c.rows)
            .where(_of(db.events, model), db.events.c.idempotency_key == key)).first()
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
            _check_choice("kind", kind, KINDS)
        if limit < 1:
            raise StoreError(f"limit must be ≥ 1, got {limit!r}")
        for name, most in (("max_bytes", max_bytes), ("max_rows", max_rows)):
            if most is not None and most < 1:
                raise StoreError(f"{name} must be ≥ 1, got {most!r}")
        where = [_of(db.events, model), db.events.c.seq > seq, db.events.c.kind.in_(kinds),
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
        query = sa.delete(db.events).where(_of(db.events, model), db.events.c.seq < seq,
                                           db.events.c.quarantined_at.is_(None))
        with self._transaction(write=True) as conn:
            return int(conn.execute(query).rowcount)

    def expire_events(self, model: str, before: datetime, through: int) -> int:
        """Retention: delete a model's batches received before ``before`` that are folded
        (seq ≤ ``through``, its watermark), except those set aside; returns how many."""
        query = sa.delete(db.events).where(
            _of(db.events, model), db.events.c.seq <= through,
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
        _check_name(model)
        query = (
            sa.update(db.events)
            .where(_of(db.events, model), db.events.c.seq == seq,
                   db.events.c.quarantined_at.is_(None))
            .values(quarantined_at=datetime.now(UTC), error=str(error)[:2000])
        )
        with self._transaction(write=True, lease=lease) as conn:
            return bool(conn.execute(query).rowcount)

    def quarantined_events(self, model: str) -> list[Event]:
        """A model's batches set aside, in seq order, with their payloads as logged."""
        query = (
            sa.select(db.events)
            .where(_of(db.events, model), db.events.c.quarantined_at.is_not(None))
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

    # -- windows ---------------------------------------------------------------------------
    def save_windows(
        self,
        model: str,
        windows: list[WindowRecord],
        watermark: int | None = None,
        *,
        lease: Lease | None = None,
        labels: LabelRecords | None = None,
    ) -> None:
        """Insert or replace windows by (model, start) and, in the same transaction, set the
        model's watermark (seq of the last event folded in) when one is given and write the
        changes to its prediction records for late labels (``labels``); fenced by ``lease``
        when given (LeaseLost: nothing saved)."""
        _check_name(model)
        now = datetime.now(UTC)
        rows = [_window_row(model, w, now) for w in windows]
        with self._transaction(write=True, lease=lease) as conn:
            self._ensure_model(conn, model)
            if watermark is not None:
                conn.execute(
                    sa.update(db.models)
                    .where(db.models.c.name == model)
                    .values(watermark=watermark)
                )
            if rows:
                insert = self._insert(db.windows)
                keys = ("end", "suite_version", "rows", "state", "profile", "metrics")
                upsert = insert.on_conflict_do_update(
                    index_elements=[db.windows.c.model, db.windows.c.start],
                    set_={k: insert.excluded[k] for k in (*keys, "updated_at")},
                )
                conn.execute(upsert, rows)
            if labels:
                self._shed(conn, RECORD_BYTES * label_sql.write(conn, self._dialect, model,
                                                                labels))

    def load_windows(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        state: str | None = None,
        last: int | None = None,
        profiles: bool = True,
    ) -> list[WindowRecord]:
        """A model's windows by start (``since`` ≤ start < ``until``), oldest first; only
        the ``last`` latest ones if given; ``profiles=False`` leaves each profile empty
        (``{}``) instead of reading it, for views that need the metrics only."""
        columns = db.windows.c if profiles else [c for c in db.windows.c if c.name != "profile"]
        query = sa.select(*columns).where(
            _of(db.windows, model), *_span(db.windows.c.start, since, until)
        )
        if state is not None:
            _check_choice("state", state, STATES)
            query = query.where(db.windows.c.state == state)
        if last is not None:
            query = query.order_by(db.windows.c.start.desc()).limit(max(0, last))
        else:
            query = query.order_by(db.windows.c.start)
        with self._transaction() as conn:
            rows = conn.execute(query).mappings().all()
        if last is not None:
            rows = rows[::-1]
        return [WindowRecord(**{"profile": {}, **r}) for r in rows]

    def watermark(self, model: str) -> int:
        """Seq of the last event folded into the model's windows; 0 if none."""
        query = sa.select(db.models.c.watermark).where(db.models.c.name == model)
        with self._transaction() as conn:
            return int(conn.scalar(query) or 0)

    # -- findings --------------------------------------------------------------------------
    def save_findings(self, model: str, window_start: datetime, findings: list[dict], *,
                      lease: Lease | None = None) -> None:
        """Replace the findings of one window with these (dicts as Finding.to_dict gives);
        fenced by ``lease`` when given."""
        _check_name(model)
        rows = [_finding_row(model, window_start, f) for f in findings]
        with self._transaction(write=True, lease=lease) as conn:
            self._ensure_model(conn, model)
            conn.execute(
                sa.delete(db.findings).where(
                    _of(db.findings, model), db.findings.c.window_start == window_start
                )
            )
            if rows:
                conn.execute(sa.insert(db.findings), rows)

    def findings(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        min_severity: str | None = None,
    ) -> list[dict]:
        """A model's findings by window start (``since`` ≤ start < ``until``), each dict as
        Finding.to_dict gives plus "window_start"; ``min_severity`` keeps that and worse."""
        query = sa.select(db.findings).where(
            _of(db.findings, model), *_span(db.findings.c.window_start, since, until)
        )
        if min_severity is not None:
            query = query.where(db.findings.c.severity_rank >= _severity_rank(min_severity))
        query = query.order_by(db.findings.c.window_start, db.findings.c.id)
        with self._transaction() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            {**{k: r[k] for k in FINDING_KEYS}, "window_start": r["window_start"]} for r in rows
        ]

    # -- alert state -----------------------------------------------------------------------
    def save_alert_state(
        self,
        model: str,
        state: dict[str, Any],
        revision: int | None = None,
        lease: Lease | None = None,
    ) -> int:
        """Replace a model's alert state (``AlertManager.to_dict()``: alerts, incidents,
        acknowledgements, silences, what was notified) with this one; returns its new
        revision. With ``revision``, only if the saved state still has that revision (0:
        there is none yet), else Conflict and nothing changes; fenced by ``lease`` if given."""
        _check_name(model)
        if not isinstance(state, dict):
            raise StoreError(f"alert state must be a dict, got {type(state).__name__}")
        table = db.alert_states
        row = {"model": model, "state": state, "updated_at": datetime.now(UTC)}
        with self._transaction(write=True, lease=lease) as conn:
            self._ensure_model(conn, model)
            insert = self._insert(table)
            if revision is None:
                conn.execute(
                    insert.values(**row, revision=1).on_conflict_do_update(
                        index_elements=[table.c.model],
                        set_={"state": insert.excluded.state,
                              "updated_at": insert.excluded.updated_at,
                              "revision": table.c.revision + 1},
                    )
                )
                return int(conn.execute(sa.select(table.c.revision).where(_of(table, model)))
                           .scalar_one())
            changed = conn.execute(
                sa.update(table)
                .where(_of(table, model), table.c.revision == revision)
                .values(state=state, updated_at=row["updated_at"], revision=revision + 1)
            ).rowcount
            if not changed and revision == 0:  # (rowcount of an INSERT is not reliable)
                changed = conn.execute(
                    insert.values(**row, revision=1).on_conflict_do_nothing()
                    .returning(table.c.revision)).first() is not None
            if not changed:
                raise Conflict(f"the alert state of model {model!r} changed since revision "
                               f"{revision}: not saved")
            return revision + 1

    def alert_state(self, model: str) -> dict[str, Any] | None:
        """A model's last saved alert state, or None if it has none."""
        return self.load_alert_state(model)[0]

    def load_alert_state(self, model: str) -> tuple[dict[str, Any] | None, int]:
        """A model's last saved alert state (or None) and its revision (0 if none)."""
        table = db.alert_states
        query = sa.select(table.c.state, table.c.revision).where(_of(table, model))
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return (None, 0) if row is None else (row[0], int(row[1]))

    def alert_revisions(self) -> dict[str, int]:
        """The revision of every model's saved alert state (one small query, to tell
        whether an in-memory copy is still current)."""
        query = sa.select(db.alert_states.c.model, db.alert_states.c.revision)
        with self._transaction() as conn:
            return {m: int(r) for m, r in conn.execute(query)}

    # -- prediction records for late labels -----------------------------------------------
    def label_records(self, model: str, version: int, ids: Sequence[str]
                      ) -> list[tuple[str, float, bytes, float | None]]:
        """The model's prediction records of ``ids`` profiled by suite ``version``: (id,
        window start, packed codes, label so far). PostgreSQL: one join with the ids as an
        array per many ids; SQLite: one query per some thousands (:mod:`label_sql`)."""
        with self._transaction() as conn:
            return label_sql.find(conn, self._dialect, model, version, ids)

    def label_record_count(self, model: str) -> int:
        """How many prediction records the model keeps for late labels."""
        query = sa.select(sa.func.count()).select_from(db.label_records).where(
            _of(db.label_records, model))
        with self._transaction() as conn:
            return int(conn.scalar(query) or 0)

    def expire_label_records(self, model: str, before: float, *,
                             lease: Lease | None = None) -> int:
        """Retention: forget the model's prediction records of windows that start before
        ``before`` (seconds since 1970); returns how many. Fenced by ``lease`` when given."""
        table = db.label_records
        query = sa.delete(table).where(_of(table, model), table.c.start < before)
        with self._transaction(write=True, lease=lease) as conn:
            return int(conn.execute(query).rowcount)

    def label_backfills(self) -> dict[str, tuple[int, int]]:
        """Models whose prediction records are still to be rebuilt from their event log
        (batches folded before the store kept them): model → (last seq to rebuild, seq
        rebuilt so far)."""
        table = db.label_backfill
        with self._transaction() as conn:
            return {m: (int(t), int(d)) for m, t, d in conn.execute(
                sa.select(table.c.model, table.c.through, table.c.done))}

    def label_backfill_progress(self) -> dict[str, tuple[int, int, int]]:
        """Each model's backfill of prediction records under way (see
        :meth:`label_backfills`): model → (last seq to rebuild, seq rebuilt so far, batches
        of the event log still to read for it)."""
        table, e = db.label_backfill, db.events
        left = sa.and_(e.c.model == table.c.model, e.c.seq > table.c.done,
                       e.c.seq <= table.c.through, e.c.quarantined_at.is_(None))
        query = (sa.select(table.c.model, table.c.through, table.c.done, sa.func.count(e.c.seq))
                 .select_from(table.outerjoin(e, left))
                 .group_by(table.c.model, table.c.through, table.c.done))
        with self._transaction() as conn:
            return {m: (int(t), int(d), int(n)) for m, t, d, n in conn.execute(query)}

    def backfill_label_records(self, model: str, records: LabelRecords, done: int, *,
                               lease: Lease | None = None) -> None:
        """Write prediction records rebuilt from the model's batches up to seq ``done``, and
        that progress, in one transaction (fenced by ``lease`` when given); the model's
        backfill row goes once ``done`` reaches its last seq."""
        table = db.label_backfill
        with self._transaction(write=True, lease=lease) as conn:
            if records:
                self._shed(conn, RECORD_BYTES * label_sql.write(conn, self._dialect, model,
                                                                records))
            conn.execute(sa.update(table).where(_of(table, model)).values(done=done))
            conn.execute(sa.delete(table).where(_of(table, model), table.c.through <= done))

    # -- the fold lease --------------------------------------------------------------------
    def acquire_lease(self, scope: str, owner: str, ttl: float, *,
                      dead: str | None = None) -> Lease:
        """Take the lease on ``scope`` for ``owner`` for ``ttl`` seconds if it is free (never
        taken, expired or released), already ``owner``'s (a renewal) or held by ``dead`` (an
        owner known to have died); returns the lease as it stands, so ``lease.owner ==
        owner`` says whether ``owner`` holds it now. Atomic: of several owners trying at
        once, one gets it. Taking it from another owner adds one to its epoch; a renewal
        keeps the epoch, even past the expiry (nobody took it in between)."""
        _check_lease_args(scope, owner)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 1e9:
            raise StoreError(f"ttl must be a positive number of seconds, got {ttl!r}")
        if self._terms is None:
            return self._acquire(scope, owner, ttl, dead)
        # SQLite file: a lease held by another, live, is only read (no write lock needed);
        # one to take waits for the write lock a short while, then forks a term (terms.py)
        with self._transaction() as conn:
            term = conn.info[_TERM]
            row = conn.execute(sa.select(db.fold_leases).where(
                db.fold_leases.c.scope == scope)).mappings().first()
            lease = None if row is None else Lease(**row, now=self._now(conn))
        if lease is not None and lease.owner not in (owner, dead) and not lease.expired:
            return lease
        renewal = lease is not None and lease.owner == owner
        try:  # a renewal waits for its turn as ever; a takeover a short while
            return self._acquire(scope, owner, ttl, dead,
                                 busy=None if renewal else min(1.0, ttl / 4))
        except StoreError as e:
            if renewal or "locked" not in str(e):
                raise
        if self._terms.fork(term, lambda copy: _take_in_copy(copy, scope, owner, ttl, dead)):
            log.warning("took the %r lease over in a new term of %s: the write lock of the "
                        "store's file was held (by a process frozen inside a write?)",
                        scope, self.url)
        taken = self.lease(scope)
        assert taken is not None  # (a copy of the store had it)
        return taken

    def _acquire(self, scope: str, owner: str, ttl: float, dead: str | None,
                 busy: float | None = None) -> Lease:
        table = db.fold_leases
        mine = table.c.owner == owner
        with self._transaction(write=True, busy=busy) as conn:
            now = self._now(conn)
            free = [mine, table.c.expires_at <= now]
            if dead is not None and dead != owner:
                free.append(table.c.owner == dead)
            taken = conn.execute(
                sa.update(table)
                .where(table.c.scope == scope, sa.or_(*free))
                .values(
                    owner=owner,
                    expires_at=now + ttl,
                    epoch=sa.case((mine, table.c.epoch), else_=table.c.epoch + 1),
                    acquired_at=sa.case((mine, table.c.acquired_at), else_=now),
                )
            ).rowcount
            if not taken:  # the first time: whoever inserts the row holds the lease
                conn.execute(
                    self._insert(table)
                    .values(scope=scope, owner=owner, epoch=1, acquired_at=now,
                            expires_at=now + ttl)
                    .on_conflict_do_nothing()
                )
            row = conn.execute(sa.select(table).where(table.c.scope == scope)).mappings().one()
        return Lease(**row, now=now)

    def release_lease(self, scope: str, owner: str) -> bool:
        """Give up ``owner``'s lease on ``scope`` now (a clean stop), so that another owner
        can take it at once; False if ``owner`` did not hold it."""
        _check_lease_args(scope, owner)
        table = db.fold_leases
        with self._transaction(write=True) as conn:
            now = self._now(conn)
            released = conn.execute(
                sa.update(table)
                .where(table.c.scope == scope, table.c.owner == owner, table.c.expires_at > now)
                .values(expires_at=now)
            ).rowcount
        return bool(released)

    def check_lease(self, lease: Lease) -> None:
        """LeaseLost unless ``lease`` is still held, by its owner in its epoch, and has not
        run out by the database's clock (before an action the store cannot fence, such as
        sending a notification)."""
        table = db.fold_leases
        query = sa.select(table.c.scope).where(
            table.c.scope == lease.scope, table.c.owner == lease.owner,
            table.c.epoch == lease.epoch, table.c.expires_at > self._clock())
        with self._transaction() as conn:
            if conn.scalar(query) is None:
                raise LeaseLost(f"the {lease.scope!r} lease of {lease.owner} (epoch "
                                f"{lease.epoch}) has run out or been taken over")

    def lease(self, scope: str) -> Lease | None:
        """The lease on ``scope`` as it stands (expired or not), or None if never taken."""
        table = db.fold_leases
        with self._transaction() as conn:
            now = self._now(conn)
            row = conn.execute(sa.select(table).where(table.c.scope == scope)).mappings().first()
        return None if row is None else Lease(**row, now=now)

    # -- internals -------------------------------------------------------------------------
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

    def _shed(self, conn: Connection, size: int) -> None:
        """PostgreSQL: close the connection once it is back in the pool if it carries
        ``size`` bytes or more in this transaction (engine.SHED: else the client library
        keeps buffers that large for as long as the connection lives, one per pooled
        connection)."""
        if self._dialect == "postgresql" and size >= SHED_BYTES:
            conn.info[SHED] = True

    @contextlib.contextmanager
    def _transaction(self, write: bool = False, lease: Lease | None = None,
                     busy: float | None = None) -> Iterator[Connection]:
        """One short transaction; database failures become one-line StoreErrors. Fenced by
        ``lease`` when given: checked first (refused early), and again just before the
        commit, so that a writer frozen in between, past its lease, commits nothing
        (LeaseLost). On a SQLite file, in the current term (terms.py); a write that
        committed to a term left meanwhile, after the next term was copied, is reported
        as not saved (LeaseLost when fenced, else StoreError). ``busy``: seconds a write
        waits for the write lock (SQLite files) instead of the usual."""
        if self._closed:
            raise StoreError(f"the store at {self.url} is closed")
        term, written = 0, None
        try:
            with self._turn, self._writing(write, busy), \
                    self._engine_for(write, busy).begin() as conn:
                term = conn.info[_TERM] = conn.get_execution_options().get(_TERM, 0)
                self._fence(conn, lease, commit=False)
                yield conn
                self._fence(conn, lease, commit=True)
                if write and self._terms is not None:
                    written = self._count_write(conn)
        except sa.exc.StatementError as e:
            if isinstance(e.orig, StoreError):  # raised while encoding a parameter
                raise e.orig from e.orig.__cause__
            raise StoreError(f"store at {self.url}: {one_line(e)}") from e
        except sa.exc.SQLAlchemyError as e:
            raise StoreError(f"store at {self.url}: {one_line(e)}") from e
        except Exception as e:
            # the driver's own errors, from code that uses its connection directly (the
            # COPY of label records on PostgreSQL): a storage fault like any other
            if type(e).__module__.partition(".")[0] in ("psycopg", "sqlite3"):
                raise StoreError(f"store at {self.url}: {one_line(e)}") from e
            raise
        if written is not None and self._terms is not None \
                and not self._terms.kept(term, written):
            what = (f"the {lease.scope!r} lease of {lease.owner} (epoch {lease.epoch}) was "
                    "taken over" if lease is not None else "the store was taken over")
            error = LeaseLost if lease is not None else StoreError
            raise error(f"store at {self.url}: {what} (term {term} left) while this was "
                        "written: nothing saved")

    def _engine_for(self, write: bool, busy: float | None) -> Any:
        """The engine of the current term (once this thread's turn to write has come, so
        that a writer queued behind one frozen in an old term goes to the new one)."""
        if self._terms is None:
            engine = self._engine
        else:
            term = self._terms.current()
            engine = self._terms.engine(term).execution_options(**{_TERM: term})
        if write:
            engine = engine.execution_options(**{WRITE: True})
            if busy is not None:
                engine = engine.execution_options(**{BUSY_MS: int(busy * 1000)})
        return engine

    @staticmethod
    def _count_write(conn: Connection) -> int:
        """Add one to the file's write count (SQLite files, terms.py); the count now."""
        written = next_count(int(conn.exec_driver_sql("PRAGMA user_version").scalar_one()))
        conn.exec_driver_sql(f"PRAGMA user_version = {as_pragma(written)}")
        return written

    @contextlib.contextmanager
    def _writing(self, write: bool, busy: float | None = None) -> Iterator[None]:
        """This process's turn to write (SQLite files; a no-op otherwise), bounded like the
        busy timeout per writer queued ahead (``busy`` seconds if given)."""
        if not write or self._write_turn is None:
            yield
            return
        wait = WRITE_TURN_WAITS * BUSY_TIMEOUT_MS / 1000 if busy is None else busy
        if not self._write_turn.acquire(timeout=wait):
            raise StoreError(f"store at {self.url}: busy (locked): no turn to write in "
                             f"{wait:.1f} s")
        try:
            yield
        finally:
            self._write_turn.release()

    def _now(self, conn: Connection) -> float:
        """Seconds since 1970 by the database's clock: one clock for every server."""
        return float(conn.execute(sa.select(self._clock())).scalar_one())

    def _clock(self) -> sa.ColumnElement[Any]:
        if self._dialect == "postgresql":
            return sa.extract("epoch", sa.func.clock_timestamp())
        # SQLite: the clock of the host, which every process on the file shares
        return (sa.func.julianday("now") - 2440587.5) * 86400.0

    def _fence(self, conn: Connection, lease: Lease | None, *, commit: bool) -> None:
        """Refuse the transaction's writes unless ``lease`` is still held, by its owner in
        its epoch, and has not run out by the database's clock. Just before the commit the
        check is an update, which on PostgreSQL locks the lease row until the commit, so
        that nobody can take the lease in between; the first check only reads it, so that
        the holder's renewals (another connection) go on while a long fold step runs (it
        held the row for the whole step before, and a step longer than the TTL, such as a
        100k-label batch against 10M records, could never commit). On SQLite the write
        lock, taken at BEGIN, keeps everyone else out anyway."""
        if lease is None:
            return
        table = db.fold_leases
        held = (table.c.scope == lease.scope, table.c.owner == lease.owner,
                table.c.epoch == lease.epoch, table.c.expires_at > self._clock())
        if commit:
            found = conn.execute(
                sa.update(table).where(*held).values(epoch=table.c.epoch)).rowcount
        else:
            found = len(conn.execute(sa.select(table.c.epoch).where(*held)).all())
        if found != 1:
            raise LeaseLost(f"the {lease.scope!r} lease of {lease.owner} (epoch {lease.epoch}) "
                            "has run out or been taken over: nothing written")

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        return dialect.insert(table)

    def _ensure_model(self, conn: Connection, model: str) -> None:
        """Add the model's row unless it is there: looked up first, because an insert that
        meets the row while the fold's transaction updates it (its watermark) would wait
        for that transaction (on PostgreSQL), and ingest must never wait on the fold."""
        known = sa.select(db.models.c.name).where(db.models.c.name == model)
        if conn.scalar(known) is not None:
            return
        new = {"name": model, "created_at": datetime.now(UTC), "watermark": 0}
        conn.execute(self._insert(db.models).values(**new).on_conflict_do_nothing())

    def _lock_model(self, conn: Connection, model: str) -> None:
        """Serialise changes to one model's suites (SQLite: BEGIN IMMEDIATE already does)."""
        self._ensure_model(conn, model)
        conn.execute(sa.select(db.models.c.name).where(db.models.c.name == model).with_for_update())

    @staticmethod
    def _deactivate(conn: Connection, model: str) -> None:
        conn.execute(
            sa.update(db.suites)
            .where(_of(db.suites, model), db.suites.c.active.is_(True))
            .values(active=False)
        )

    @staticmethod
    def _suite(conn: Connection, model: str, version: int) -> SuiteVersion:
        query = sa.select(db.suites).where(_of(db.suites, model), db.suites.c.version == version)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise RecordNotFound(f"model {model!r} has no suite version {version!r}")
        return SuiteVersion(**row)


def _take_in_copy(copy: sqlite3.Connection, scope: str, owner: str, ttl: float,
                  dead: str | None) -> bool:
    """Take the lease in a copy of a SQLite store (a new term, terms.py) as
    :meth:`Store.acquire_lease` would; whether it was free (expired, released, never taken
    or ``dead``'s) there."""
    now = copy.execute("SELECT (julianday('now') - 2440587.5) * 86400.0").fetchone()[0]
    row = copy.execute("SELECT owner, epoch, expires_at FROM fold_leases WHERE scope = ?",
                       (scope,)).fetchone()
    if row is None:
        copy.execute("INSERT INTO fold_leases (scope, owner, epoch, acquired_at, expires_at) "
                     "VALUES (?, ?, 1, ?, ?)", (scope, owner, now, now + ttl))
        return True
    holder, epoch, expires_at = row
    if holder != owner and holder != dead and expires_at > now:
        return False
    copy.execute("UPDATE fold_leases SET owner = ?, epoch = ?, acquired_at = ?, expires_at = ? "
                 "WHERE scope = ?", (owner, epoch + (holder != owner), now, now + ttl, scope))
    return True


def _of(table: sa.Table, model: str) -> sa.ColumnElement[bool]:
    return table.c.model == model


def _span(
    column: sa.Column[datetime], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    out = []
    if since is not None:
        out.append(column >= since)
    if until is not None:
        out.append(column < until)
    return out


def _batch_values(model: str, payload: bytes, rows: int, kind: str, key: str | None
                  ) -> dict[str, Any]:
    """A batch to log, checked, as the columns of its row."""
    _check_name(model)
    _check_choice("kind", kind, KINDS)
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


def _check_name(model: str) -> None:
    if not isinstance(model, str) or not model:
        raise StoreError(f"a model name must be a non-empty string, got {model!r}")


def _check_lease_args(scope: str, owner: str) -> None:
    for what, value in (("lease scope", scope), ("lease owner", owner)):
        if not isinstance(value, str) or not value:
            raise StoreError(f"a {what} must be a non-empty string, got {value!r}")


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise StoreError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def _severity_rank(severity: str) -> int:
    try:
        return Severity(severity).rank
    except ValueError:
        choices = ", ".join(s.value for s in Severity)
        raise StoreError(f"severity must be one of {choices}; got {severity!r}") from None


def _window_row(model: str, w: WindowRecord, now: datetime) -> dict[str, Any]:
    if w.model != model:
        raise StoreError(f"window of model {w.model!r} saved under model {model!r}")
    _check_choice("state", w.state, STATES)
    return {
        "model": model,
        "start": w.start,
        "end": w.end,
        "suite_version": w.suite_version,
        "rows": w.rows,
        "state": w.state,
        "profile": w.profile,
        "metrics": w.metrics,
        "updated_at": now,
    }


def _finding_row(model: str, window_start: datetime, f: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(f) - set(FINDING_KEYS) - {"window_start"})
    missing = sorted(_REQUIRED - set(f))
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
        raise StoreError(f"a finding must be a dict as Finding.to_dict() gives: {problem}")
    row: dict[str, Any] = {k: f.get(k) for k in FINDING_KEYS}
    row.update(
        model=model,
        window_start=window_start,
        value=_number(f["value"]),
        threshold=_number(f["threshold"]),
        severity_rank=_severity_rank(f["severity"]),
        evidence=f.get("evidence") or {},
    )
    return row


def _number(value: Any) -> float | None:
    """A finding's value or threshold: ±inf kept, NaN stored as null (NULL in SQL)."""
    return None if value is None or math.isnan(value) else float(value)
