"""The store's tables (SQLAlchemy Core), as of the latest schema version.

migrations.py creates them on an empty database and upgrades older ones; whenever a table
changes here, add the migration that makes an older database look like this.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from watchkeeper.io.times import as_utc

#: Auto-incrementing 64-bit ids; on SQLite an INTEGER PRIMARY KEY (the rowid) is required.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out (SQLite, which has no zones, keeps naive UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
    sa.Column("description", sa.String, nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # seq of the last event folded into the model's windows
    sa.Column("watermark", sa.BigInteger, nullable=False, server_default="0"),
)


def _model_key(**kw: Any) -> sa.Column[str]:
    return sa.Column("model", sa.String, sa.ForeignKey("models.name", ondelete="CASCADE"), **kw)


suites = sa.Table(
    "suites",
    metadata,
    _model_key(primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String),
    sa.Column("note", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)
sa.Index(  # at most one active version per model
    "suites_one_active",
    suites.c.model,
    unique=True,
    sqlite_where=suites.c.active,
    postgresql_where=suites.c.active,
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", ID, primary_key=True, autoincrement=True),
    _model_key(nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    # since schema version 4: a batch the fold failed on again and again is set aside
    # (quarantined), not deleted: when, and the error. The fold skips it, retention keeps it.
    sa.Column("quarantined_at", UTCDateTime),
    sa.Column("error", sa.Text),
    # since the idempotency migration: the client's Idempotency-Key of the batch (None
    # without one); a batch sent again with the same key is acknowledged, not stored again
    sa.Column("idempotency_key", sa.String),
    sa.CheckConstraint("kind IN ('events', 'labels')", name="events_kind"),
    sa.Index("events_model_seq", "model", "seq"),
    sqlite_autoincrement=True,  # never reuse a seq, even after every event was deleted
)
#: the batches set aside, by model (small: counted for /metrics every second or so)
QUARANTINED = sa.text("quarantined_at IS NOT NULL")
sa.Index("events_quarantined", events.c.model, events.c.seq,
         sqlite_where=QUARANTINED, postgresql_where=QUARANTINED)
#: one batch per model and idempotency key (batches sent without a key are not indexed)
KEYED = sa.text("idempotency_key IS NOT NULL")
sa.Index("events_idempotency", events.c.model, events.c.idempotency_key, unique=True,
         sqlite_where=KEYED, postgresql_where=KEYED)

windows = sa.Table(
    "windows",
    metadata,
    _model_key(primary_key=True),
    sa.Column("start", UTCDateTime, primary_key=True),
    sa.Column("end", UTCDateTime, nullable=False),
    sa.Column("suite_version", sa.Integer),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("profile", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("state IN ('open', 'closed')", name="windows_state"),
)

findings = sa.Table(
    "findings",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    _model_key(nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("monitor", sa.String, nullable=False),
    sa.Column("family", sa.String, nullable=False),
    sa.Column("column", sa.String),
    sa.Column("value", sa.Double),
    sa.Column("threshold", sa.Double),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("severity_rank", sa.SmallInteger, nullable=False),  # info 0, warning 1, critical 2
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("window", sa.String),
    sa.Column("metric", sa.String),
    sa.Column("segment", sa.String),
    sa.Index("findings_model_window", "model", "window_start"),
)

alert_states = sa.Table(  # since schema version 2
    "alert_states",
    metadata,
    _model_key(primary_key=True),
    # AlertManager.to_dict(): alerts, incidents, acknowledgements, silences, notifications
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # since schema version 3: +1 on every save, so that concurrent writers (the fold leader
    # judging windows, any server taking an acknowledgement) never overwrite each other
    sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"),
)

label_records = sa.Table(  # added by the migration "label_records"
    "label_records",
    metadata,
    _model_key(primary_key=True),
    # the prediction's id as text (labels.id_keys); an id logged again replaces its record
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("start", sa.Double, nullable=False),  # its window's start, seconds since 1970
    sa.Column("version", sa.Integer, nullable=False),  # the suite version that profiled it
    sa.Column("codes", sa.LargeBinary, nullable=False),  # labels.pack_codes: score bin, ...
    sa.Column("label", sa.Double),  # label code joined so far (NULL: a missing value)
    sa.Index("label_records_start", "model", "start"),  # retention
)

label_backfill = sa.Table(  # added by the migration "label_backfill"
    "label_backfill",
    metadata,
    # a model whose prediction records for late labels are still to be rebuilt from its
    # retained event log: batches folded before label_records existed (the row goes once
    # the backfill has caught up)
    _model_key(primary_key=True),
    sa.Column("through", sa.BigInteger, nullable=False),  # last seq to rebuild records of
    sa.Column("done", sa.BigInteger, nullable=False),  # seq rebuilt so far (in seq order)
)

fold_leases = sa.Table(  # since schema version 3
    "fold_leases",
    metadata,
    # what the lease is for: "fold" (every model of the store) is the one in use
    sa.Column("scope", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),  # the server process holding it
    # +1 whenever another owner takes it: the holder's writes are fenced by (owner, epoch)
    sa.Column("epoch", sa.BigInteger, nullable=False),
    # seconds since 1970 by the database's clock (one clock for every server)
    sa.Column("acquired_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

sessions = sa.Table(  # since the "sessions, server_keys" migration
    "sessions",
    metadata,
    # SHA-256 of the random session id the browser holds: the store never has the id itself
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("access", sa.String(8), nullable=False),  # "read" or "write"
    # HMAC of the token it was opened with, keyed by the session id: a rotated token ends it
    sa.Column("token_mac", sa.String(64), nullable=False),
    # seconds since 1970 by the database's clock, as fold_leases
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.CheckConstraint("access IN ('read', 'write')", name="sessions_access"),
)

server_keys = sa.Table(  # since the "sessions, server_keys" migration
    "server_keys",
    metadata,
    # random keys every server on the store shares (e.g. the client pseudonym key when
    # WATCHKEEPER_PII_KEY is not set)
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
)

log_cursors = sa.Table(  # added by the migration "log_cursors"
    "log_cursors",
    metadata,
    # a server's own event-log file (SQLite stores, ``serve --own-event-log``; see logs.py),
    # by its name in the log directory next to the store's file
    sa.Column("file", sa.String, primary_key=True),
    # seq of the last batch of that file copied into events (in the copy's transaction)
    sa.Column("seq", sa.BigInteger, nullable=False),
)

# -- a server's own event-log file (not in the store's file: see logs.py) ---------------------
log_metadata = sa.MetaData()

log_events = sa.Table(
    "log_events",
    log_metadata,
    sa.Column("seq", ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("idempotency_key", sa.String),
    sqlite_autoincrement=True,  # never reuse a seq: the leader's cursor relies on it
)
sa.Index("log_events_idempotency", log_events.c.model, log_events.c.idempotency_key,
         unique=True, sqlite_where=KEYED)
