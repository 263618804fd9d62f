"""Store: the durable state of online monitoring on SQLAlchemy Core, one class made of its
parts: the engine and transactions (``base``), suite versions (``suites``), the event log
(``events``), what the fold makes of it (``results``) and the fold lease (``leases``)."""

from __future__ import annotations

from watchkeeper.store.events import EventLogStore
from watchkeeper.store.leases import LeaseStore
from watchkeeper.store.results import ResultStore
from watchkeeper.store.suites import SuiteStore


class Store(SuiteStore, EventLogStore, ResultStore, LeaseStore):
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
