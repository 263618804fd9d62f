"""The base of :class:`~watchkeeper.store.Store`: its engine, short transactions (fenced by
a lease, in the current term of a SQLite file), the database's clock, and the checks every
part of the store shares. Each part (suites, event log, results, leases) is a subclass that
adds its methods; ``store.py`` puts them together."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from watchkeeper.errors import LeaseLost, StoreError
from watchkeeper.store import migrations
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
from watchkeeper.store.records import Lease
from watchkeeper.store.terms import Terms, as_pragma, next_count

log = logging.getLogger("watchkeeper.store")
#: SQLite: how many busy timeouts a writer of this process waits for its turn.
WRITE_TURN_WAITS = 6
#: Connection.info key: the term of a SQLite store file the transaction is on (terms.py).
TERM = "watchkeeper_term"


class StoreBase:
    """A store's engine and transactions; see :class:`~watchkeeper.store.Store`."""

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

    def __enter__(self) -> Self:
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
                term = conn.info[TERM] = conn.get_execution_options().get(TERM, 0)
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
            engine = self._terms.engine(term).execution_options(**{TERM: term})
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

    def _shed(self, conn: Connection, size: int) -> None:
        """PostgreSQL: close the connection once it is back in the pool if it carries
        ``size`` bytes or more in this transaction (engine.SHED: else the client library
        keeps buffers that large for as long as the connection lives, one per pooled
        connection)."""
        if self._dialect == "postgresql" and size >= SHED_BYTES:
            conn.info[SHED] = True


def of_model(table: sa.Table, model: str) -> sa.ColumnElement[bool]:
    return table.c.model == model


def between(
    column: sa.Column[datetime], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    out = []
    if since is not None:
        out.append(column >= since)
    if until is not None:
        out.append(column < until)
    return out


def check_model_name(model: str) -> None:
    if not isinstance(model, str) or not model:
        raise StoreError(f"a model name must be a non-empty string, got {model!r}")


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise StoreError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def check_lease_args(scope: str, owner: str) -> None:
    for what, value in (("lease scope", scope), ("lease owner", owner)):
        if not isinstance(value, str) or not value:
            raise StoreError(f"a {what} must be a non-empty string, got {value!r}")

