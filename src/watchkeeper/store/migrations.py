"""Versioned schema migrations.

``schema_version`` holds one row per version reached. An empty database gets the current
schema of tables.py in one step and is stamped with :data:`LATEST`; an older database gets
each later migration in order. So ``MIGRATIONS[n]`` only has to turn a version-``n``
database into a version-``n + 1`` one, and tables.py always describes the last version.
Everything runs inside the caller's transaction (DDL is transactional on SQLite and
PostgreSQL), so a failed upgrade leaves the database as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from watchkeeper.store import tables


def _initial(conn: Connection) -> None:
    tables.metadata.create_all(conn)


def _alert_states(conn: Connection) -> None:
    # tables.alert_states as it was in schema version 2 (version 3 added "revision")
    sa.Table(
        "alert_states",
        sa.MetaData(),
        sa.Column("model", sa.String, sa.ForeignKey(tables.models.c.name, ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", tables.UTCDateTime, nullable=False),
    ).create(conn, checkfirst=True)


def _fold_leases(conn: Connection) -> None:
    # As tables.fold_leases was when added; copy the definition here if it ever changes.
    tables.fold_leases.create(conn, checkfirst=True)
    columns = {c["name"] for c in sa.inspect(conn).get_columns("alert_states")}
    if "revision" not in columns:
        conn.execute(sa.text(
            "ALTER TABLE alert_states ADD COLUMN revision BIGINT NOT NULL DEFAULT 0"))


def _quarantine(conn: Connection) -> None:
    # events.quarantined_at and events.error, and the partial index on the batches set aside
    # (as in tables.py when added; copy the definition here if it ever changes)
    columns = {c["name"] for c in sa.inspect(conn).get_columns("events")}
    stamp = tables.UTCDateTime().compile(dialect=conn.dialect)
    if "quarantined_at" not in columns:
        conn.execute(sa.text(f"ALTER TABLE events ADD COLUMN quarantined_at {stamp}"))
    if "error" not in columns:
        conn.execute(sa.text("ALTER TABLE events ADD COLUMN error TEXT"))
    events = sa.Table("events", sa.MetaData(), sa.Column("model", sa.String),
                      sa.Column("seq", sa.BigInteger),
                      sa.Column("quarantined_at", tables.UTCDateTime))
    quarantined = sa.text("quarantined_at IS NOT NULL")
    sa.Index("events_quarantined", events.c.model, events.c.seq, sqlite_where=quarantined,
             postgresql_where=quarantined).create(conn, checkfirst=True)


def _sessions(conn: Connection) -> None:
    # As tables.sessions and tables.server_keys were when added; copy the definitions here
    # if they ever change.
    tables.sessions.create(conn, checkfirst=True)
    tables.server_keys.create(conn, checkfirst=True)


def _idempotency(conn: Connection) -> None:
    # events.idempotency_key and its unique partial index per model (as in tables.py when
    # added; copy the definition here if it ever changes). Checks first: it may run after
    # migrations of other branches in any order.
    columns = {c["name"] for c in sa.inspect(conn).get_columns("events")}
    if "idempotency_key" not in columns:
        conn.execute(sa.text("ALTER TABLE events ADD COLUMN idempotency_key VARCHAR"))
    events = sa.Table("events", sa.MetaData(), sa.Column("model", sa.String),
                      sa.Column("idempotency_key", sa.String))
    keyed = sa.text("idempotency_key IS NOT NULL")
    sa.Index("events_idempotency", events.c.model, events.c.idempotency_key, unique=True,
             sqlite_where=keyed, postgresql_where=keyed).create(conn, checkfirst=True)


def _join_checkpoints(conn: Connection) -> None:
    # The table as it was when added (the label_records migration drops it again).
    sa.Table(
        "join_checkpoints",
        sa.MetaData(),
        sa.Column("model", sa.String, sa.ForeignKey(tables.models.c.name, ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("watermark", sa.BigInteger, nullable=False),
        sa.Column("saved_at", tables.UTCDateTime, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    ).create(conn, checkfirst=True)


def _label_records(conn: Connection) -> None:
    # As tables.label_records was when added; copy the definition here if it ever changes.
    # The prediction records live in the store now, so the checkpoints of them go. Records
    # of the batches folded before this upgrade are rebuilt from the retained event log by
    # the folding server before it folds on (server/hub/backfill.py): each model with a
    # watermark gets a label_backfill row up to it (the table made here for that, as
    # _label_backfill makes it).
    tables.label_records.create(conn, checkfirst=True)
    conn.execute(sa.text("DROP TABLE IF EXISTS join_checkpoints"))
    tables.label_backfill.create(conn, checkfirst=True)
    models = tables.models
    rows = [{"model": m, "through": int(w), "done": 0} for m, w in conn.execute(
        sa.select(models.c.name, models.c.watermark).where(models.c.watermark > 0))]
    if rows:
        conn.execute(sa.insert(tables.label_backfill), rows)


def _label_backfill(conn: Connection) -> None:
    # As tables.label_backfill was when added; copy the definition here if it ever changes.
    # The rows are written by _label_records, when a store gets label_records by this
    # upgrade; a store that got it from an earlier release (version 8) has folded with
    # records since, and its batches folded before that are not rebuilt: replaying their
    # labels could undo corrections folded since.
    tables.label_backfill.create(conn, checkfirst=True)


def _log_cursors(conn: Connection) -> None:
    # As tables.log_cursors was when added; copy the definition here if it ever changes.
    tables.log_cursors.create(conn, checkfirst=True)


#: (description, upgrade function); version n + 1 is reached by MIGRATIONS[n].
MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("models, suites, events, windows, findings", _initial),
    ("alert_states: each model's alerts, incidents, acknowledgements and silences",
     _alert_states),
    ("fold_leases: which server folds the event log; alert_states.revision", _fold_leases),
    ("events.quarantined_at, events.error: batches the fold set aside", _quarantine),
    ("sessions: dashboard sessions; server_keys: keys the servers share", _sessions),
    ("events.idempotency_key: a batch sent again is stored once", _idempotency),
    ("join_checkpoints: late-label join records as of a watermark", _join_checkpoints),
    ("label_records: prediction records for late labels; join_checkpoints dropped",
     _label_records),
    ("label_backfill: prediction records to rebuild from the retained event log",
     _label_backfill),
    ("log_cursors: how far each server's own event-log file is copied into events",
     _log_cursors),
]
LATEST = len(MIGRATIONS)

# Any constant will do: serialises concurrent migrations of one PostgreSQL database.
_PG_LOCK = 0x7761_7463_686B


def current_version(conn: Connection) -> int:
    """The schema version in force; 0 for a database the store has never touched."""
    if not sa.inspect(conn).has_table(tables.schema_version.name):
        return 0
    version = conn.scalar(sa.select(sa.func.max(tables.schema_version.c.version)))
    return int(version or 0)


def upgrade(conn: Connection) -> int:
    """Bring the schema up to :data:`LATEST`; returns the version found if it is newer."""
    if conn.dialect.name == "postgresql":  # an upgrade may wait and take long: no timeouts
        conn.execute(sa.text("SET LOCAL lock_timeout = 0"))
        conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
    version = current_version(conn)
    if version >= LATEST:
        return version
    if version == 0:
        _initial(conn)
        _stamp(conn, LATEST, "initial schema: " + "; ".join(d for d, _ in MIGRATIONS))
        return LATEST
    for n in range(version, LATEST):
        description, step = MIGRATIONS[n]
        step(conn)
        _stamp(conn, n + 1, description)
    return LATEST


def _stamp(conn: Connection, version: int, description: str) -> None:
    conn.execute(
        sa.insert(tables.schema_version).values(
            version=version, applied_at=datetime.now(UTC), description=description
        )
    )
