"""Each server's own event-log file, next to a SQLite store's file (``serve
--own-event-log``).

A SQLite file has one writer at a time: a server frozen (SIGSTOP, a VM pause, a long GC)
inside a write holds every other server's writes until it wakes. So that no frozen server
can stop another's ingest, each server appends the batches it acknowledges to a file only it
writes, ``<store file>-logs/<owner>.db`` (WAL: its readers are never blocked by its writer,
frozen or not). The fold's leader copies each file's new batches into the store's event log
(``Store.import_logs``) in one transaction per file, with how far it got (``log_cursors``):
each batch is copied once. A batch whose idempotency key the store's log has already (a
client's retry sent to another server) is dropped there and counted as a duplicate. Each
server deletes the batches of its own file that were copied; the leader deletes the file of
a server that is gone once it is all copied.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from watchkeeper.errors import StoreError
from watchkeeper.store import tables as db
from watchkeeper.store.engine import WRITE, create_engine, one_line
from watchkeeper.store.records import Appended

#: a log file's name ends so
SUFFIX = ".db"


def file_name(owner: str) -> str:
    """The log file name of a server (its fold-lease owner id), reversible; ``%`` escapes
    are written ``~`` (a database URL would decode them)."""
    return quote(owner, safe="").replace("~", "%7E").replace("%", "~") + SUFFIX


def owner_of(name: str) -> str:
    """The owner id a log file name was made from."""
    return unquote(name.removesuffix(SUFFIX).replace("~", "%"))


def open_engine(path: Path) -> Engine:
    """An engine on a log file (WAL), its table created if missing."""
    engine, _, _ = create_engine(f"sqlite:///{path}")
    return engine


@contextlib.contextmanager
def transaction(engine: Engine, path: Path, write: bool = False) -> Iterator[Connection]:
    """One transaction on a log file; database failures become one-line StoreErrors."""
    try:
        with (engine.execution_options(**{WRITE: True}) if write else engine).begin() as conn:
            yield conn
    except sa.exc.SQLAlchemyError as e:
        raise StoreError(f"event log {path}: {one_line(e)}") from e


class EventLog:
    """This server's own event-log file: only this process writes it (its threads take
    turns, as the store's writers do)."""

    def __init__(self, directory: Path, owner: str) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"{directory}: cannot create the event-log directory: {e.strerror}"
            ) from e
        self.name = file_name(owner)
        self.path = directory / self.name
        self._engine = open_engine(self.path)
        self._turn = threading.Lock()
        with self._transaction(write=True) as conn:
            db.log_metadata.create_all(conn)

    def __repr__(self) -> str:
        return f"EventLog({str(self.path)!r})"

    def append(self, values: dict[str, Any]) -> Appended:
        """Log one batch (the store's ``events`` columns but seq); a batch with the same
        model and idempotency key in this file is not logged again (the first is returned,
        marked duplicate)."""
        table = db.log_events
        key = values.get("idempotency_key")
        with self._transaction(write=True) as conn:
            if key is not None:
                found = conn.execute(
                    sa.select(table.c.seq, table.c.kind, table.c.rows).where(
                        table.c.model == values["model"], table.c.idempotency_key == key
                    )
                ).first()
                if found is not None:
                    return Appended(int(found[0]), found[1], int(found[2]), duplicate=True)
            seq = self._insert(conn, values)
        return Appended(seq, values["kind"], values["rows"])

    @staticmethod
    def _insert(conn: Connection, values: dict[str, Any]) -> int:
        inserted = conn.execute(sa.insert(db.log_events).values(**values)).inserted_primary_key
        assert inserted is not None  # a single-row insert reports its key
        return int(inserted[0])

    def prune(self, through: int) -> int:
        """Delete the batches up to seq ``through`` (copied into the store); how many."""
        table = db.log_events
        with self._transaction(write=True) as conn:
            return int(conn.execute(sa.delete(table).where(table.c.seq <= through)).rowcount)

    def close(self) -> None:
        self._engine.dispose()

    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        with (
            self._turn if write else contextlib.nullcontext(),
            transaction(self._engine, self.path, write) as conn,
        ):
            yield conn


def read(
    engine: Engine, path: Path, after: int, *, limit: int, max_bytes: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` batches of a log file past seq ``after``, in seq order, at most
    ``max_bytes`` of payloads (always one at least); [] for a file not set up yet."""
    table = db.log_events
    where = table.c.seq > after
    try:
        with transaction(engine, path) as conn:
            if not sa.inspect(conn).has_table(table.name):
                return []
            total, last = 0, None
            sizes = (
                sa.select(table.c.seq, sa.func.length(table.c.payload))
                .where(where)
                .order_by(table.c.seq)
                .limit(limit)
            )
            for seq, size in conn.execute(sizes):
                if last is not None and total + size > max_bytes:
                    break
                total, last = total + size, seq
            if last is None:
                return []
            query = sa.select(table).where(where, table.c.seq <= last).order_by(table.c.seq)
            return [dict(r) for r in conn.execute(query).mappings()]
    except StoreError:
        if not path.exists():  # deleted meanwhile (its owner's file, all copied)
            return []
        raise


def pending(engine: Engine, path: Path, after: int) -> list[tuple[str, int, Any]]:
    """Per model, batches of a log file past seq ``after``: (model, how many, oldest
    received_at)."""
    table = db.log_events
    query = (
        sa.select(table.c.model, sa.func.count(), sa.func.min(table.c.received_at))
        .where(table.c.seq > after)
        .group_by(table.c.model)
    )
    with transaction(engine, path) as conn:
        if not sa.inspect(conn).has_table(table.name):
            return []
        return [(m, int(n), oldest) for m, n, oldest in conn.execute(query)]
