"""watchkeeper.store on real servers: SQLite in a temporary file and a local PostgreSQL.

The PostgreSQL tests fail (not skip) when the server is down: CI must prove them. Each
PostgreSQL test gets its own schema (via the connection's search_path), dropped afterwards.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

import watchkeeper
from tests.helpers import window
from watchkeeper.errors import LeaseLost, StoreError
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.profiles.core import Profile
from watchkeeper.store import SCHEMA_VERSION, Store, WindowRecord, migrations
from watchkeeper.store.engine import BUSY_TIMEOUT_MS

T0 = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def finding(monitor: str, severity: str, column: str | None = "x") -> dict:
    return {
        "monitor": monitor,
        "family": "drift",
        "column": column,
        "value": 0.2,
        "threshold": 0.1,
        "severity": severity,
        "message": f"{monitor} moved",
        "evidence": {"psi": 0.3},
        "window": "w",
        "metric": None,
        "segment": None,
    }


# -- schema ----------------------------------------------------------------------------------
def test_migrate_is_idempotent_and_records_the_version(store_url: str) -> None:
    with Store(store_url) as store:
        assert store.migrate() == SCHEMA_VERSION
        assert store.migrate() == SCHEMA_VERSION
    with Store(store_url) as again:  # opening an up-to-date store migrates nothing
        assert again.migrate() == SCHEMA_VERSION
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_version")).scalars().all()
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert versions == [SCHEMA_VERSION]
    assert {"schema_version", "models", "suites", "events", "windows", "findings",
            "alert_states", "fold_leases"} <= tables


def test_a_schema_newer_than_the_code_is_refused(store_url: str) -> None:
    Store(store_url).close()
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO schema_version VALUES (:v, :t, 'from the future')"),
            {"v": SCHEMA_VERSION + 1, "t": datetime.now(UTC)},
        )
    engine.dispose()
    with pytest.raises(StoreError, match=r"schema version \d+, newer than .*upgrade watchkeeper"):
        Store(store_url)


# -- suites ----------------------------------------------------------------------------------
def test_a_store_from_before_alert_states_opens_and_migrates(store_url: str) -> None:
    with Store(store_url) as store:  # a version-1 store with data in it
        store.add_suite("m", "monitors: []")
        seq = store.append_events("m", b"batch", rows=2)
        store.save_windows("m", [window(T0)], watermark=seq)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alert_states"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        conn.execute(sa.text("INSERT INTO schema_version VALUES (1, :t, 'initial schema')"),
                     {"t": datetime.now(UTC)})
    with Store(store_url) as store:
        assert store.migrate() == SCHEMA_VERSION
        assert store.alert_state("m") is None
        store.save_alert_state("m", {"version": 1, "model": "m"})
        assert store.alert_state("m") == {"version": 1, "model": "m"}
        assert store.watermark("m") == seq and store.active_suite("m").version == 1
        assert [w.start for w in store.load_windows("m")] == [T0]
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version"))
        assert versions.scalars().all() == list(range(1, SCHEMA_VERSION + 1))
    engine.dispose()


def test_a_store_from_before_fold_leases_opens_and_migrates(store_url: str) -> None:
    with Store(store_url) as store:  # a version-2 store with an alert state in it
        store.add_suite("m", "monitors: []")
        store.save_alert_state("m", {"version": 1, "model": "m"})
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE fold_leases"))
        conn.execute(sa.text("ALTER TABLE alert_states DROP COLUMN revision"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        for v in (1, 2):
            conn.execute(sa.text("INSERT INTO schema_version VALUES (:v, :t, 'old')"),
                         {"v": v, "t": datetime.now(UTC)})
    with Store(store_url) as store:
        assert store.migrate() == SCHEMA_VERSION
        assert store.load_alert_state("m") == ({"version": 1, "model": "m"}, 0)
        assert store.save_alert_state("m", {"version": 1, "model": "m", "n": 1}, 0) == 1
        assert store.lease("fold") is None
        assert store.acquire_lease("fold", "me", 10).owner == "me"
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version"))
        assert versions.scalars().all() == list(range(1, SCHEMA_VERSION + 1))
    engine.dispose()


def test_a_store_from_before_quarantine_opens_and_migrates(store_url: str) -> None:
    with Store(store_url) as store:  # a version-3 store with events in it
        seqs = [store.append_events("m", f"batch {i}".encode(), rows=1) for i in range(3)]
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX events_quarantined"))
        conn.execute(sa.text("ALTER TABLE events DROP COLUMN quarantined_at"))
        conn.execute(sa.text("ALTER TABLE events DROP COLUMN error"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        for v in (1, 2, 3):
            conn.execute(sa.text("INSERT INTO schema_version VALUES (:v, :t, 'old')"),
                         {"v": v, "t": datetime.now(UTC)})
    with Store(store_url) as store:
        assert store.migrate() == SCHEMA_VERSION
        events = store.events_after("m", 0)
        assert [e.seq for e in events] == seqs
        assert [(e.quarantined_at, e.error) for e in events] == [(None, None)] * 3
        assert store.quarantine_event("m", seqs[1], "ArrowInvalid: bad")
        assert [e.seq for e in store.events_after("m", 0)] == [seqs[0], seqs[2]]
        assert store.quarantine_counts() == {"m": 1}
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version"))
        assert versions.scalars().all() == list(range(1, SCHEMA_VERSION + 1))
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("events")}
        assert "events_quarantined" in indexes
    engine.dispose()


def test_a_batch_set_aside_is_kept_skipped_and_outlives_retention(store_url: str) -> None:
    with Store(store_url) as store:
        seqs = [store.append_events("m", f"batch {i}".encode(), rows=i + 1) for i in range(4)]
        other = store.append_events("other", b"other", rows=1)
        assert store.quarantine_event("m", seqs[1], "OSError: " + "x" * 5000)
        assert not store.quarantine_event("m", seqs[1], "again")  # set aside once
        assert not store.quarantine_event("m", other, "not m's")  # another model's batch
        assert not store.quarantine_event("m", 10**12, "no such batch")
    with Store(store_url) as store:  # marked in the store: a new process sees it too
        assert [e.seq for e in store.events_after("m", 0)] == [seqs[0], *seqs[2:]]
        assert [e.seq for e in store.events_after("m", 0, max_bytes=1)] == [seqs[0]]
        [aside] = store.quarantined_events("m")
        assert (aside.seq, aside.rows, aside.payload) == (seqs[1], 2, b"batch 1")
        assert aside.error.startswith("OSError: xxx") and len(aside.error) == 2000
        assert aside.quarantined_at.utcoffset() == timedelta(0)
        assert store.quarantined_events("other") == []
        assert store.quarantine_counts() == {"m": 1}
        # retention deletes folded batches, never one set aside (it was never folded)
        assert store.delete_events_before("m", 10**12) == 3
        assert store.events_after("m", 0) == []
        assert [e.seq for e in store.quarantined_events("m")] == [seqs[1]]
        # fenced like every write of the fold
        old = store.acquire_lease("fold", "old", 0.1)
        store.release_lease("fold", "old")
        store.acquire_lease("fold", "new", 5)
        later = store.append_events("m", b"later", rows=1)
        with pytest.raises(LeaseLost):
            store.quarantine_event("m", later, "stale", lease=old)
        assert [e.seq for e in store.events_after("m", 0)] == [later]


def test_suite_versions(store: Store) -> None:
    v1 = store.add_suite("m", "monitors: [a]\n", created_by="ana", note="first")
    v2 = store.add_suite("m", "monitors: [b]\n")
    v3 = store.add_suite("m", "monitors: [c]\n", activate=False)
    other = store.add_suite("other", "monitors: [z]\n")
    assert (v1.version, v2.version, v3.version, other.version) == (1, 2, 3, 1)
    assert v1.hash == hashlib.sha256(b"monitors: [a]\n").hexdigest()
    assert [v.version for v in store.suite_versions("m")] == [1, 2, 3]
    assert store.suite_version("m", 1) == replace(v1, active=False)  # v2 took over
    assert v1.created_by == "ana" and v1.note == "first" and v2.created_by is None
    assert v1.created_at.tzinfo is not None and v1.created_at.utcoffset() == timedelta(0)
    assert store.active_suite("m").version == 2  # adding v3 inactive kept v2
    assert [v.active for v in store.suite_versions("m")] == [False, True, False]
    assert store.activate("m", 1).active
    assert store.active_suite("m").text == "monitors: [a]\n"
    assert [v.active for v in store.suite_versions("m")] == [True, False, False]
    assert store.active_suite("other") == other  # models are independent
    assert store.active_suite("nobody") is None
    assert store.suite_versions("nobody") == []
    assert store.models() == ["m", "other"]
    with pytest.raises(StoreError, match="no suite version 9"):
        store.suite_version("m", 9)
    with pytest.raises(StoreError, match="no suite version 9"):
        store.activate("m", 9)
    assert store.active_suite("m").version == 1  # the failed activation changed nothing


def test_concurrent_suite_versions_stay_numbered(store: Store) -> None:
    def add(i: int) -> None:
        for j in range(5):
            store.add_suite("m", f"thread {i} version {j}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = store.suite_versions("m")
    assert [v.version for v in versions] == list(range(1, 21))
    assert sum(v.active for v in versions) == 1


# -- the event log ---------------------------------------------------------------------------
def test_events_are_durable_ordered_and_filtered(store_url: str) -> None:
    with Store(store_url) as store:
        seqs = [store.append_events("m", f"batch {i}".encode(), rows=i) for i in range(5)]
        label_seq = store.append_events("m", b"labels", rows=7, kind="labels")
        other_seq = store.append_events("other", b"other", rows=1)
    assert seqs == sorted(seqs) and len(set(seqs)) == 5

    with Store(store_url) as store:  # a new Store on the same URL sees everything committed
        events = store.events_after("m", 0)
        assert [e.seq for e in events] == [*seqs, label_seq]
        assert [e.payload for e in events[:2]] == [b"batch 0", b"batch 1"]
        assert isinstance(events[0].payload, bytes)
        assert [e.kind for e in events] == ["events"] * 5 + ["labels"]
        assert events[-1].rows == 7 and events[-1].model == "m"
        assert events[0].received_at.utcoffset() == timedelta(0)
        assert [e.seq for e in store.events_after("m", seqs[1], limit=2)] == seqs[2:4]
        assert [e.seq for e in store.events_after("m", 0, kinds=("labels",))] == [label_seq]
        assert [e.seq for e in store.events_after("m", 0, kinds=("events",))] == seqs
        assert [e.seq for e in store.events_after("other", 0)] == [other_seq]
        with pytest.raises(StoreError, match="kind must be one of"):
            store.append_events("m", b"x", rows=1, kind="metrics")

        assert store.delete_events_before("m", seqs[3]) == 3
        assert [e.seq for e in store.events_after("m", 0)] == [seqs[3], seqs[4], label_seq]
        assert [e.seq for e in store.events_after("other", 0)] == [other_seq]  # untouched
        assert store.delete_events_before("m", 10**12) == 3
        assert store.events_after("m", 0) == []
        # a seq is never reused, even once the log is empty (watermarks rely on it)
        assert store.delete_events_before("other", 10**12) == 1
        later = store.append_events("m", b"later", rows=1)
        assert later > other_seq
        buffer_seq = store.append_events("m", pa.py_buffer(b"arrow"), rows=1)  # any buffer
        assert [e.payload for e in store.events_after("m", later)] == [b"arrow"]
        assert buffer_seq > later
        with pytest.raises(StoreError, match="payload must be bytes"):
            store.append_events("m", "text", rows=1)


def test_concurrent_appends(store: Store) -> None:
    seqs: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            for j in range(200):
                seqs[i].append(store.append_events("m", f"{i}:{j}".encode(), rows=j))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every = [s for per_thread in seqs for s in per_thread]
    assert len(set(every)) == 800
    for per_thread in seqs:
        assert per_thread == sorted(per_thread)
    events = store.events_after("m", 0, limit=1000)
    assert [e.seq for e in events] == sorted(every)
    assert {e.payload for e in events} == {
        f"{i}:{j}".encode() for i in range(4) for j in range(200)
    }


def test_a_batch_is_stored_once_per_idempotency_key(store_url: str) -> None:
    with Store(store_url) as store:
        first = store.append_batch("m", b"one", 3, key="k-1")
        again = store.append_batch("m", b"one again", 3, key="k-1")
        assert not first.duplicate and again == replace(first, duplicate=True)
        labels = store.append_batch("m", b"labels", 2, "labels", key="k-2")
        other = store.append_batch("other", b"other", 1, key="k-1")  # keys are per model
        unkeyed = [store.append_events("m", b"no key", 1) for _ in range(2)]
        assert not labels.duplicate and not other.duplicate and unkeyed[0] != unkeyed[1]
        with pytest.raises(StoreError, match="non-empty string"):
            store.append_batch("m", b"x", 1, key="")
    with Store(store_url) as store:  # in the store: a restarted server knows the key
        assert store.append_batch("m", b"one", 3, key="k-1") == replace(first, duplicate=True)
        events = store.events_after("m", 0)
        assert [(e.seq, e.payload, e.idempotency_key) for e in events] == [
            (first.seq, b"one", "k-1"), (labels.seq, b"labels", "k-2"),
            (unkeyed[0], b"no key", None), (unkeyed[1], b"no key", None)]


def test_copies_of_a_batch_racing_on_two_stores_are_stored_once(store_url: str) -> None:
    """Two servers on one store, each taking copies of the same batches at once."""
    stores = [Store(store_url), Store(store_url)]
    done: list[list] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def send(i: int) -> None:
        start.wait()
        for j in range(20):
            done[i].append(stores[i % 2].append_batch("m", f"batch {j}".encode(), j + 1,
                                                       key=f"key-{j}"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(d) == 20 for d in done)
    for j in range(20):  # one copy stored, every copy answered with its seq
        answers = [d[j] for d in done]
        assert sum(not a.duplicate for a in answers) == 1
        assert len({(a.seq, a.rows) for a in answers}) == 1
    events = stores[0].events_after("m", 0, limit=1000)
    assert sorted(e.payload for e in events) == sorted(f"batch {j}".encode() for j in range(20))
    for s in stores:
        s.close()


def test_a_store_from_before_idempotency_keys_opens_and_migrates(store_url: str) -> None:
    with Store(store_url) as store:
        seq = store.append_events("m", b"old batch", rows=1)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX events_idempotency"))
        conn.execute(sa.text("ALTER TABLE events DROP COLUMN idempotency_key"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        before = [step for _, step in migrations.MIGRATIONS].index(migrations._idempotency)
        for v in range(1, before + 1):  # the versions reached before it (those after check
            conn.execute(sa.text("INSERT INTO schema_version VALUES (:v, :t, 'old')"),
                         {"v": v, "t": datetime.now(UTC)})  # first: they run again)
    with Store(store_url) as store:
        assert store.migrate() == SCHEMA_VERSION
        assert [(e.seq, e.idempotency_key) for e in store.events_after("m", 0)] == [(seq, None)]
        assert store.append_batch("m", b"new", 1, key="k").seq > seq
        assert store.append_batch("m", b"new", 1, key="k").duplicate
    with engine.connect() as conn:
        indexes = {i["name"]: i for i in sa.inspect(conn).get_indexes("events")}
        assert indexes["events_idempotency"]["unique"]
    engine.dispose()


# -- alert state -----------------------------------------------------------------------------
def test_alert_state_is_saved_replaced_and_resumed(store: Store) -> None:
    from watchkeeper.alerts import AlertManager
    from watchkeeper.monitors.base import Finding, Severity

    am = AlertManager("m", keep_resolved=1)
    drift = Finding("feature_drift", "drift", "x", 0.21, float("nan"), Severity.CRITICAL,
                    "x moved", {"psi": np.float64(0.3)})
    for day in range(8):  # two incidents open and resolve; keep_resolved keeps one
        am.process(f"day {day}", T0 + timedelta(days=day), [drift] if day % 4 < 2 else [])
    for day in range(8, 10):
        am.process(f"day {day}", T0 + timedelta(days=day), [drift])
    [open_] = [i for i in am.incidents.values() if i.is_open]
    am.acknowledge(open_.id, "ops")
    am.silence({"column": "y"}, T0 + timedelta(days=30), created_by="ana")
    assert store.alert_state("m") is None
    store.save_alert_state("m", am.to_dict())
    saved = store.alert_state("m")
    assert len(saved["incidents"]) == 2  # the open one and one resolved
    resumed = AlertManager.from_dict(saved)
    assert resumed.to_dict() == am.to_dict()
    assert resumed.incidents[open_.id].acknowledged_by == "ops"
    assert [s.created_by for s in resumed.silences] == ["ana"]
    resumed.process("day 10", T0 + timedelta(days=10), [])
    store.save_alert_state("m", resumed.to_dict())  # replaces
    assert store.alert_state("m")["last_window"] == "day 10"
    assert store.alert_state("other") is None
    with pytest.raises(StoreError, match="alert state must be a dict"):
        store.save_alert_state("m", [])  # type: ignore[arg-type]


# -- windows ---------------------------------------------------------------------------------
def test_save_windows_upserts_and_sets_the_watermark(store: Store) -> None:
    assert store.watermark("m") == 0
    store.save_windows("m", [window(T0), window(T0 + timedelta(hours=1), state="open")], 5)
    assert store.watermark("m") == 5
    store.save_windows("m", [window(T0 + timedelta(hours=1), rows=30)], watermark=9)
    loaded = store.load_windows("m")
    assert [(w.start, w.rows, w.state) for w in loaded] == [
        (T0, 10, "closed"),
        (T0 + timedelta(hours=1), 30, "closed"),
    ]
    assert loaded[1].profile == {"rows": 30} and loaded[1].metrics == {"accuracy": 0.9}
    assert loaded[0].updated_at is not None and loaded[0].updated_at.utcoffset() == timedelta(0)
    assert store.watermark("m") == 9
    store.save_windows("m", [window(T0, rows=11)])  # no watermark given: unchanged
    assert store.watermark("m") == 9
    assert store.watermark("nobody") == 0


def test_a_failed_save_writes_neither_windows_nor_watermark(store: Store) -> None:
    store.save_windows("m", [window(T0)], watermark=3)
    bad = window(T0 + timedelta(hours=2), thing=object())  # not JSON-serialisable
    updated = window(T0, rows=99)
    with pytest.raises(
        StoreError, match="cannot store as JSON: Object of type object is not JSON serializable"
    ):
        store.save_windows("m", [updated, bad], watermark=4)
    assert store.watermark("m") == 3
    assert [(w.start, w.rows) for w in store.load_windows("m")] == [(T0, 10)]


def test_json_values_nan_and_numpy(store: Store) -> None:
    w = window(T0, mean=np.float64(1.5), count=np.int64(3), bins=np.arange(3), bad=float("nan"))
    store.save_windows("m", [w])
    assert store.load_windows("m")[0].profile == {
        "rows": 10, "mean": 1.5, "count": 3, "bins": [0, 1, 2], "bad": None
    }  # fmt: skip


def test_load_windows_filters(store: Store) -> None:
    starts = [T0 + timedelta(hours=h) for h in range(5)]
    store.save_windows("m", [window(s, state="open" if h == 4 else "closed")
                             for h, s in enumerate(starts)])  # fmt: skip
    store.save_windows("other", [WindowRecord("other", T0, T0, None, 1, "open", {}, {})])
    assert [w.start for w in store.load_windows("m")] == starts
    assert [w.start for w in store.load_windows("m", since=starts[1])] == starts[1:]
    assert [w.start for w in store.load_windows("m", until=starts[2])] == starts[:2]
    assert [w.start for w in store.load_windows("m", since=starts[1], until=starts[3])] == (
        starts[1:3]
    )
    assert [w.start for w in store.load_windows("m", state="open")] == [starts[4]]
    assert len(store.load_windows("m", state="closed")) == 4
    assert store.load_windows("other")[0].suite_version is None
    with pytest.raises(StoreError, match="state must be one of"):
        store.load_windows("m", state="half-open")
    latest = store.load_windows("m", last=2, profiles=False)  # the dashboard's view
    assert [w.start for w in latest] == starts[3:] and latest[0].profile == {}
    assert latest[0].metrics == store.load_windows("m")[3].metrics
    with pytest.raises(StoreError, match="saved under model"):
        store.save_windows("other", [window(T0)])


def test_datetimes_round_trip_as_utc(store: Store) -> None:
    cest = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=cest)
    store.save_windows("m", [window(local)])
    store.save_windows("m", [window(datetime(2024, 5, 2, 9, 0))])  # naive: taken as UTC
    first, second = store.load_windows("m")
    assert first.start == local and first.start.tzinfo == UTC
    assert first.start.hour == 12 and first.start.microsecond == 123456
    assert first.end == local + timedelta(hours=1) and first.end.tzinfo == UTC
    assert second.start == datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
    # a filter in another zone means the same instant
    assert [w.start for w in store.load_windows("m", since=local.astimezone(cest))] == [
        first.start,
        second.start,
    ]
    assert store.load_windows("m", since=local + timedelta(microseconds=1))[0] == second
    store.save_findings("m", local, [finding("feature_drift", "warning")])
    assert store.findings("m")[0]["window_start"] == local
    assert store.findings("m")[0]["window_start"].tzinfo == UTC


@pytest.fixture(scope="module")
def checked() -> tuple[Profile, list[dict]]:
    """A real window profile and the findings of checking it (built once for both backends)."""
    reference, current = synthetic_drift_pair(2_000, seed=3, drift=True)
    suite = watchkeeper.init(reference)
    result = suite.check(current)
    return suite.profile(pa.table(current)), [f.to_dict() for f in result.findings]


def test_a_real_profile_round_trips(store: Store, checked: tuple[Profile, list[dict]]) -> None:
    profile, _ = checked
    record = WindowRecord(
        "m", T0, T0 + timedelta(days=1), 1, profile.rows, "closed", profile.to_dict(), {}
    )
    store.save_windows("m", [record], watermark=1)
    (loaded,) = store.load_windows("m")
    assert Profile.from_dict(loaded.profile).to_dict() == profile.to_dict()
    assert list(loaded.profile["columns"]) == list(profile.columns)  # column order kept


# -- findings --------------------------------------------------------------------------------
def test_findings_replace_all_and_filter(store: Store) -> None:
    w1, w2, w3 = (T0 + timedelta(hours=h) for h in range(3))
    store.save_findings("m", w1, [finding("a", "info"), finding("b", "warning")])
    store.save_findings("m", w2, [finding("c", "critical", column=None)])
    store.save_findings("m", w3, [finding("d", "warning")])
    store.save_findings("other", w1, [finding("z", "critical")])
    assert [f["monitor"] for f in store.findings("m")] == ["a", "b", "c", "d"]
    store.save_findings("m", w1, [finding("e", "critical")])  # replaces a and b
    store.save_findings("m", w3, [])  # clears d
    found = store.findings("m")
    assert [(f["monitor"], f["window_start"]) for f in found] == [("e", w1), ("c", w2)]
    assert found[1] == {**finding("c", "critical", column=None), "window_start": w2}

    store.save_findings("m", w3, [finding("f", "warning"), finding("g", "info")])
    assert [f["monitor"] for f in store.findings("m", min_severity="warning")] == ["e", "c", "f"]
    assert [f["monitor"] for f in store.findings("m", min_severity="critical")] == ["e", "c"]
    assert len(store.findings("m", min_severity="info")) == 4
    assert [f["monitor"] for f in store.findings("m", since=w2)] == ["c", "f", "g"]
    assert [f["monitor"] for f in store.findings("m", until=w2)] == ["e"]
    assert [f["monitor"] for f in store.findings("m", since=w2, until=w3)] == ["c"]
    assert [f["monitor"] for f in store.findings("other")] == ["z"]
    with pytest.raises(StoreError, match="severity must be one of"):
        store.findings("m", min_severity="loud")
    with pytest.raises(StoreError, match="unknown keys"):
        store.save_findings("m", w1, [{**finding("h", "info"), "colour": "red"}])


def test_findings_of_a_real_check_round_trip(
    store: Store, checked: tuple[Profile, list[dict]]
) -> None:
    _, dicts = checked
    assert dicts
    store.save_findings("m", T0, dicts)
    assert [{k: v for k, v in f.items() if k != "window_start"} for f in store.findings("m")] == (
        dicts
    )


# -- URLs and errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["not a url", "mysql://user:s3cret@db.example/wk", "postgresql+nodriver://user:s3cret@h/db"],
)
def test_a_bad_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(StoreError, match="store URL") as error:
        Store(url)
    assert "s3cret" not in str(error.value)


def test_an_unreachable_postgresql_is_one_line() -> None:
    with pytest.raises(StoreError) as error:
        Store("postgresql+psycopg://user:s3cret@127.0.0.1:1/wk")
    message = str(error.value)
    assert "\n" not in message and "s3cret" not in message
    assert message.startswith("store at postgresql+psycopg://user:***@127.0.0.1:1/wk: ")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_the_password_is_masked(store_url: str) -> None:
    # trust authentication ignores the password, so this connects
    url = store_url.replace("://postgres@", "://postgres:s3cret@")
    assert "s3cret" in url
    with Store(url) as store:
        assert "s3cret" not in str(store) and "s3cret" not in repr(store)
        assert "s3cret" not in store.url and "postgres:***@" in store.url


def test_a_closed_store_says_so(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.models()


def test_sqlite_settings(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "w.db"  # the store makes the directory
    with Store(f"sqlite:///{path}") as store, store._engine.connect() as conn:
        pragmas = {
            p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
            for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1,
                       "busy_timeout": BUSY_TIMEOUT_MS}  # fmt: skip
    assert BUSY_TIMEOUT_MS <= 5_000  # a writer frozen mid-transaction: others fail fast


def test_postgresql_sessions_bound_lock_waits_and_idle_transactions(store_url: str) -> None:
    """A process frozen inside a transaction loses its session (its locks freed) instead of
    holding up every other server, and nobody waits on a lock without end; the URL's own
    options (the tests' search_path) are kept."""
    from watchkeeper.store.engine import IDLE_IN_TRANSACTION_MS, LOCK_TIMEOUT_MS

    if not store_url.startswith("postgresql"):
        pytest.skip("PostgreSQL settings")
    with Store(store_url) as store:
        with store._engine.connect() as conn:
            settings = {name: conn.exec_driver_sql(f"SHOW {name}").scalar() for name in
                        ("lock_timeout", "idle_in_transaction_session_timeout", "search_path")}
        store.add_suite("m", "monitors: []")  # in the test's schema
        raw = store._engine.raw_connection()
        try:  # a session idle in its transaction past the limit is ended by the server
            cursor = raw.cursor()
            cursor.execute("SELECT watermark FROM models FOR UPDATE")
            time.sleep(IDLE_IN_TRANSACTION_MS / 1000 + 0.5)
            with pytest.raises(Exception, match=r"idle|terminat|closed"):
                cursor.execute("SELECT 1")
        finally:
            raw.invalidate()
        store.save_windows("m", [], 7)  # the row it had locked is free
        assert store.watermark("m") == 7
    assert settings["lock_timeout"] == f"{LOCK_TIMEOUT_MS // 1000}s"
    assert settings["idle_in_transaction_session_timeout"] == \
        f"{IDLE_IN_TRANSACTION_MS // 1000}s"
    assert settings["search_path"].startswith("wk_test_")


def test_an_in_memory_store_is_shared_by_threads() -> None:
    with Store("sqlite://") as store:
        threads = [
            threading.Thread(
                target=lambda: [store.append_events("m", b"x", rows=1) for _ in range(50)]
            )
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.events_after("m", 0, limit=1000)) == 200
