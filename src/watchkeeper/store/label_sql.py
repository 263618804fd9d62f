"""The prediction records kept for late labels, in SQL: looked up by id and labelled in
sets (one statement per many ids), written as a fold step's batch. The Store runs these
inside its transactions (fenced, errors as StoreError)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from watchkeeper.store import tables as db
from watchkeeper.store.records import LabelRecords

#: Ids looked up per query, and prediction records written per statement.
LOOKUP_CHUNK = 5_000
WRITE_CHUNK = 10_000
#: SQLite: prediction records as plain tuples through the driver (SQLAlchemy's executemany
#: of one dict per row cost ~10 µs a row: 2/3 of the fold of id'd rows).
_SQLITE_LABEL_UPSERT = (
    "INSERT INTO label_records (model, id, start, version, codes, label) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (model, id) DO UPDATE SET start = excluded.start, "
    "version = excluded.version, codes = excluded.codes, label = excluded.label")
_SQLITE_RELABEL = "UPDATE label_records SET label = ? WHERE model = ? AND id = ?"
#: PostgreSQL: ids looked up, and labels written, per statement (one array parameter each).
PG_CHUNK = 50_000
#: PostgreSQL: prediction records by id, and labels joined to them, one statement per
#: PG_CHUNK ids (an array) instead of ``id = ANY(...)`` lookups and one UPDATE per label.
#: Each id is looked up by a LATERAL subquery: a probe of the primary key per id, whatever
#: the planner believes of the table (a plain join, planned on the statistics of a table
#: that autovacuum has not analyzed yet, compared 20,000 ids with every record: minutes).
#: The update then writes each record found by its ctid.
_PG_LOOKUP = sa.text(
    "SELECT r.id, r.start, r.codes, r.label FROM unnest(CAST(:ids AS text[])) AS t(id) "
    "CROSS JOIN LATERAL (SELECT id, start, codes, label, version FROM label_records "
    "WHERE model = :m AND id = t.id LIMIT 1) AS r WHERE r.version = :v")
_PG_RELABEL = sa.text(
    "WITH t AS MATERIALIZED (SELECT x.label, r.ctid AS c "
    "FROM unnest(CAST(:ids AS text[]), CAST(:labels AS double precision[])) AS x(id, label) "
    "CROSS JOIN LATERAL (SELECT ctid FROM label_records WHERE model = :m AND id = x.id "
    "LIMIT 1) AS r) "
    "UPDATE label_records AS u SET label = t.label FROM t WHERE u.ctid = t.c")


def find(conn: Connection, dialect: str, model: str, version: int, ids: Sequence[str]
         ) -> list[tuple[str, float, bytes, float | None]]:
    """The model's prediction records of ``ids`` profiled by suite ``version``: (id, window
    start, packed codes, label so far). PostgreSQL: one join with the ids as an array per
    PG_CHUNK ids; SQLite: one query per LOOKUP_CHUNK ids. The ids are looked up in key
    order, so that the index is walked forwards, not at random."""
    table = db.label_records
    wanted = sorted(set(ids))
    found: list[tuple[str, float, bytes, float | None]] = []
    if dialect == "postgresql":
        for i in range(0, len(wanted), PG_CHUNK):
            found += [(r[0], float(r[1]), bytes(r[2]), r[3]) for r in conn.execute(
                _PG_LOOKUP, {"m": model, "v": version, "ids": wanted[i:i + PG_CHUNK]})]
        return found
    columns = (table.c.id, table.c.start, table.c.codes, table.c.label)
    for i in range(0, len(wanted), LOOKUP_CHUNK):
        query = sa.select(*columns).where(
            table.c.model == model, table.c.version == version,
            table.c.id.in_(wanted[i:i + LOOKUP_CHUNK]))
        found += [(r[0], float(r[1]), bytes(r[2]), r[3]) for r in conn.execute(query)]
    return found


def write(conn: Connection, dialect: str, model: str, records: LabelRecords) -> int:
    """A fold step's changes to the prediction records: labels joined to stored ones
    first, then the new records (an id logged again replaces its record, the last one
    of the step if it was logged twice in it). Returns how many labels and records."""
    # the last label of an id wins; in key order, so the index is walked forwards (one
    # join's labels come so already: not copied again, a 100,000-label step is large)
    labels = records.labels
    if not _unique_and_sorted(labels):
        labels = sorted(dict(labels).items())
    if labels and dialect == "postgresql":  # one join per PG_CHUNK labels
        _by_key(conn)
        for i in range(0, len(labels), PG_CHUNK):
            part = labels[i:i + PG_CHUNK]
            conn.execute(_PG_RELABEL, {"m": model, "ids": [k for k, _ in part],
                                       "labels": [v for _, v in part]})
    elif labels:  # plain tuples through the driver, WRITE_CHUNK at a time: a 100,000-label
        # batch as one executemany of dicts held ~50 MiB of parameters at once, which the
        # process did not give back to the system afterwards
        for i in range(0, len(labels), WRITE_CHUNK):
            conn.exec_driver_sql(_SQLITE_RELABEL, [(label, model, key) for key, label
                                                   in labels[i:i + WRITE_CHUNK]])
    if dialect == "postgresql":
        return len(labels) + _copy(conn, model, itertools.chain.from_iterable(records.rows))
    # SQLite: plain tuples through the driver's executemany (SQLAlchemy's executemany of
    # dicts costs ~10 µs a row in parameter processing: 2/3 of the fold of id'd rows);
    # the upserts run in order, so the last record of an id logged twice wins
    rows, written = itertools.chain.from_iterable(records.rows), len(labels)
    while chunk := [(model, r["id"], r["start"], r["version"], r["codes"], r["label"])
                    for r in itertools.islice(rows, WRITE_CHUNK)]:
        conn.exec_driver_sql(_SQLITE_LABEL_UPSERT, chunk)
        written += len(chunk)
    return written


def _unique_and_sorted(labels: list[tuple[str, float | None]]) -> bool:
    return all(a[0] < b[0] for a, b in itertools.pairwise(labels))


def _copy(conn: Connection, model: str, rows: Iterator[dict[str, Any]]) -> int:
    """PostgreSQL: new prediction records by COPY into a temporary table, then one
    upsert from it (the last record of an id wins): several times faster than inserts,
    so the fold's transaction stays short. Returns how many."""
    n = -1
    raw = conn.connection.driver_connection
    assert raw is not None  # an open connection has its driver's
    with raw.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS label_records_in (n bigint, "
                    "id text, start double precision, version integer, codes bytea, "
                    "label double precision) ON COMMIT DELETE ROWS")
        with cur.copy("COPY label_records_in (n, id, start, version, codes, label) "
                      "FROM STDIN") as copy:
            for n, r in enumerate(rows):
                copy.write_row((n, r["id"], r["start"], r["version"], r["codes"],
                                r["label"]))
        cur.execute(
            "INSERT INTO label_records (model, id, start, version, codes, label) "
            "SELECT DISTINCT ON (id) %s, id, start, version, codes, label "
            "FROM label_records_in ORDER BY id, n DESC "
            "ON CONFLICT (model, id) DO UPDATE SET start = excluded.start, "
            "version = excluded.version, codes = excluded.codes, label = excluded.label",
            (model,))
        cur.execute("TRUNCATE label_records_in")
    return n + 1


def _by_key(conn: Connection) -> None:
    """PostgreSQL, for the rest of the transaction: no hash or merge joins, so that the
    records found by ctid are updated by TID probes, not by hashing a scan of the table."""
    conn.execute(sa.text("SELECT set_config('enable_hashjoin', 'off', true), "
                         "set_config('enable_mergejoin', 'off', true)"))
