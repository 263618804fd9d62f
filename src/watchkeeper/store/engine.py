"""The one SQLAlchemy Engine of a Store: URL checks, SQLite pragmas, JSON encoding."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, pool
from sqlalchemy.engine import URL, Connection, Engine, make_url

from watchkeeper.errors import StoreError
from watchkeeper.io.jsonable import plain, to_python

#: Execution option marking a write transaction (BEGIN IMMEDIATE on SQLite).
WRITE = "watchkeeper_write"
#: SQLite: execution option, the milliseconds this write waits for the write lock (instead
#: of BUSY_TIMEOUT_MS): a server taking over the fold lease gives up quickly when the lock
#: is held (by a holder frozen inside a write, perhaps) and forks a new term (terms.py).
BUSY_MS = "watchkeeper_busy_ms"
#: SQLite: how long a writer waits for another's write lock before it fails (the caller
#: retries: the SDK sends the batch again, the lease keeper tries at its next turn), so that a
#: process frozen inside a write transaction makes others fail fast instead of hang.
BUSY_TIMEOUT_MS = 5_000
#: PostgreSQL, per session (unless the URL sets ``options``): the longest a statement waits
#: for a lock, the longest a session may sit idle inside a transaction (a process frozen
#: there, by SIGSTOP, a VM pause or a network split, loses its session: its locks are freed
#: and its transaction rolled back), and the longest a statement may run.
LOCK_TIMEOUT_MS = 2_000
IDLE_IN_TRANSACTION_MS = 2_000
STATEMENT_TIMEOUT_MS = 120_000
#: Connection.info key: close this connection when it goes back to the pool (see
#: Store._shed): PostgreSQL's client library keeps each connection's input and output
#: buffers at the largest message it has carried (a request's payload, a fold step's
#: batches), for as long as the connection lives.
SHED = "watchkeeper_shed"
#: Bytes a connection carries in one transaction from which it is closed afterwards.
SHED_BYTES = 1 << 20
EXAMPLES = "e.g. sqlite:///watchkeeper.db or postgresql+psycopg://user:password@host/db"


def mask(url: str) -> str:
    """A URL string with its password replaced by ``***``, parsable or not."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def create_engine(url: str) -> tuple[Engine, str, bool]:
    """(engine, masked URL, whether it is an in-memory SQLite database)."""
    try:
        parsed = make_url(url)
    except Exception:  # the message may hold the URL, so it is not chained
        raise StoreError(f"invalid store URL {mask(str(url))!r} ({EXAMPLES})") from None
    masked = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.get_driver_name() == "pysqlite":
        return _sqlite(parsed, masked)
    if backend == "postgresql":
        return _postgresql(parsed, masked), masked, False
    raise StoreError(f"unsupported store URL {masked!r} ({EXAMPLES})")


def _sqlite(url: URL, masked: str) -> tuple[Engine, str, bool]:
    database = url.database
    memory = database in (None, "", ":memory:")
    if memory or database is None:  # one shared connection; the Store serialises its use
        kw: dict[str, Any] = {"poolclass": pool.StaticPool}
    else:
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{masked}: cannot create its directory: {e.strerror}") from e
        kw = {"poolclass": pool.QueuePool, "pool_size": 5, "max_overflow": 10,
              "pool_use_lifo": True}
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        json_serializer=dumps,
        **kw,
    )
    _sqlite_events(engine, wal=not memory)
    return engine, masked, memory


def open_existing(path: Path) -> Engine:
    """An engine on a SQLite file that must exist (a term of a store, terms.py): its
    connections never create the file, so a term deleted meanwhile fails instead of coming
    back empty."""
    uri = "file:" + str(path.resolve()).replace("%", "%25").replace("?", "%3f").replace(
        "#", "%23") + "?mode=rw"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)

    engine = sa.create_engine("sqlite://", creator=connect, json_serializer=dumps,
                              poolclass=pool.QueuePool, pool_size=5, max_overflow=10,
                              pool_use_lifo=True)
    _sqlite_events(engine, wal=True)
    return engine


def _sqlite_events(engine: Engine, *, wal: bool) -> None:
    """The pragmas of each new connection, and BEGIN (IMMEDIATE for a writer)."""
    pragmas = [
        f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
        "PRAGMA foreign_keys = ON",
        "PRAGMA synchronous = NORMAL",
    ]
    if wal:
        pragmas.insert(1, "PRAGMA journal_mode = WAL")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGIN is replaced by _begin
        cursor = dbapi_conn.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the write lock up front, so it waits (busy_timeout) instead of
        # failing when another writer commits between its reads and its writes.
        options = conn.get_execution_options()
        if not options.get(WRITE, False):
            conn.exec_driver_sql("BEGIN")
            return
        busy = options.get(BUSY_MS)
        if busy is None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy)}")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _postgresql(url: URL, masked: str) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {} if "connect_timeout" in url.query else {
        "connect_timeout": 10}
    connect_args["options"] = _session_options(url)
    try:
        engine = sa.create_engine(
            url,
            pool_size=5,
            max_overflow=10,
            pool_use_lifo=True,
            pool_pre_ping=True,
            connect_args=connect_args,
            json_serializer=dumps,
        )
    except ImportError:
        raise StoreError(
            f"{masked}: PostgreSQL needs its driver: pip install 'watchkeeper[postgres]'"
        ) from None
    except Exception as e:
        raise StoreError(f"unsupported store URL {masked!r}: {one_line(e)}") from None

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        # a connection that carried a large message: its buffers go with it (the pool
        # opens a new one when it needs one)
        if record.info.pop(SHED, False) and dbapi_conn is not None:
            record.invalidate()

    return engine


def _session_options(url: URL) -> str:
    """The URL's ``options`` with the timeouts above added, for those it does not set."""
    given = url.query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given
    timeouts = {"lock_timeout": LOCK_TIMEOUT_MS,
                "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_MS,
                "statement_timeout": STATEMENT_TIMEOUT_MS}
    added = [f"-c {name}={ms}" for name, ms in timeouts.items() if name not in given]
    return " ".join([given, *added]).strip()


def one_line(error: BaseException) -> str:
    """The first line of what went wrong, from the driver when there is one."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def dumps(value: Any) -> str:
    """JSON text of a profile, metrics or evidence; NaN and ±inf become null (as in every
    JSON output of watchkeeper); NumPy scalars and arrays become plain numbers and lists."""
    try:
        try:
            return json.dumps(value, allow_nan=False, default=_plain, separators=(",", ":"))
        except ValueError:  # a NaN or ±inf somewhere
            return json.dumps(
                plain(value), allow_nan=False, default=_plain, separators=(",", ":")
            )
    except (TypeError, ValueError, RecursionError) as e:
        raise StoreError(f"cannot store as JSON: {e}") from e


def _plain(value: Any) -> Any:
    return plain(to_python(value))
