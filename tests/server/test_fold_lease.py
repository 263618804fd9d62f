"""Several servers on one store: only the holder of the fold lease folds, and each event is
folded exactly once, across takeovers (kill -9, a holder frozen past its lease), on both
store backends: the lease in the store, hubs in process, and real server processes."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from tests.helpers import window as stored_window
from tests.server_helpers import (
    READ,
    WRITE,
    Server,
    Stream,
    _batch,
    _caught_up,
    _holder,
    _logged,
    _suite_text,
    _windowed,
    arrow,
    freeze,
    request,
    wait_for,
)
from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import Conflict, LeaseLost, StoreError
from watchkeeper.server.hub import SCOPE, Hub
from watchkeeper.store import Store, tables
from watchkeeper.store.engine import SHED_BYTES

ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture
def url(store_url: str) -> str:
    """An empty store of each backend."""
    return store_url


# -- the lease in the store --------------------------------------------------------------------
def test_lease_is_taken_renewed_stolen_once_expired_and_released(url: str) -> None:
    with Store(url) as store:
        assert store.lease(SCOPE) is None
        a = store.acquire_lease(SCOPE, "a", 0.3)
        assert (a.owner, a.epoch, a.expired) == ("a", 1, False)
        assert 0.25 < a.remaining <= 0.3
        b = store.acquire_lease(SCOPE, "b", 0.3)  # unexpired: b does not get it
        assert (b.owner, b.epoch) == ("a", 1)
        renewed = store.acquire_lease(SCOPE, "a", 0.3)
        assert (renewed.owner, renewed.epoch) == ("a", 1) and renewed.expires_at > a.expires_at
        time.sleep(0.4)
        assert store.lease(SCOPE).expired
        stolen = store.acquire_lease(SCOPE, "b", 5)
        assert (stolen.owner, stolen.epoch, stolen.acquired_at) == ("b", 2, stolen.now)
        assert store.acquire_lease(SCOPE, "a", 5).owner == "b"  # a cannot take it back
        assert not store.release_lease(SCOPE, "a")  # nor give it away
        assert store.release_lease(SCOPE, "b")
        assert store.lease(SCOPE).expired and store.lease(SCOPE).owner == "b"
        back = store.acquire_lease(SCOPE, "a", 5)  # released: free at once
        assert (back.owner, back.epoch) == ("a", 3)
        assert store.acquire_lease(SCOPE, "c", 5, dead="a").owner == "c"  # a died
        assert store.acquire_lease(SCOPE, "a", 5, dead="b").owner == "c"  # b holds nothing
        assert store.acquire_lease("other", "a", 5).epoch == 1  # scopes are independent
        with pytest.raises(StoreError, match="ttl must be"):
            store.acquire_lease(SCOPE, "a", 0)
        with pytest.raises(StoreError, match="lease owner"):
            store.acquire_lease(SCOPE, "", 1)


def test_of_owners_racing_for_a_free_lease_one_gets_it(url: str) -> None:
    stores = [Store(url) for _ in range(6)]
    try:
        epoch, winner = 0, None
        for round_ in range(3):  # the first take (an insert), then takes of an expired one
            start = threading.Barrier(len(stores))
            got: list[str] = []

            def take(i: int, store: Store, start: threading.Barrier = start,
                     got: list[str] = got) -> None:
                start.wait()
                # a TTL long enough that no thread, however late the scheduler lets it
                # run, finds the round's lease already run out
                if store.acquire_lease(SCOPE, f"owner{i}", 1.0).owner == f"owner{i}":
                    got.append(f"owner{i}")

            threads = [threading.Thread(target=take, args=(i, s)) for i, s in enumerate(stores)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(got) == 1, (round_, got)
            epoch += got[0] != winner  # a new owner: a new epoch; its own again: the same
            winner = got[0]
            assert stores[0].lease(SCOPE).epoch == epoch
            time.sleep(1.1)
    finally:
        for s in stores:
            s.close()


def test_writes_fenced_by_a_lease_taken_over_are_refused(url: str) -> None:
    with Store(url) as store:
        old = store.acquire_lease(SCOPE, "old", 1.0)
        store.save_windows("m", [], 3, lease=old)  # held: written
        assert store.watermark("m") == 3
        time.sleep(1.1)
        new = store.acquire_lease(SCOPE, "new", 5)
        start = datetime(2024, 5, 1, tzinfo=UTC)
        with pytest.raises(LeaseLost, match="taken over"):
            store.save_windows("m", [stored_window(start)], 9, lease=old)
        with pytest.raises(LeaseLost):
            store.save_findings("m", start, [], lease=old)
        with pytest.raises(LeaseLost):
            store.save_alert_state("m", {"version": 1}, None, old)
        assert store.watermark("m") == 3 and store.load_windows("m") == []  # nothing written
        assert store.alert_state("m") is None
        store.save_windows("m", [stored_window(start)], 9, lease=new)
        assert store.watermark("m") == 9
        # the old owner taking the lease back later does not revive its old epoch
        store.release_lease(SCOPE, "new")
        again = store.acquire_lease(SCOPE, "old", 5)
        with pytest.raises(LeaseLost):
            store.save_windows("m", [], 10, lease=old)
        store.save_windows("m", [], 10, lease=again)
        assert store.watermark("m") == 10


def test_a_fenced_commit_past_the_lease_is_refused(url: str) -> None:
    """A writer that froze inside its fenced transaction until its lease ran out commits
    nothing when it wakes up, even if nobody took the lease meanwhile."""
    with Store(url) as store:
        lease = store.acquire_lease(SCOPE, "frozen", 0.5)
        insert = store._insert

        def frozen(table: sa.Table) -> object:  # inside the transaction, after the fence
            time.sleep(0.8)
            return insert(table)

        store._insert = frozen  # type: ignore[method-assign]
        with pytest.raises(LeaseLost, match="run out"):
            store.save_windows("m", [stored_window(datetime(2024, 5, 1, tzinfo=UTC))], 5,
                               lease=lease)
        del store._insert
        assert store.watermark("m") == 0 and store.load_windows("m") == []
        with pytest.raises(LeaseLost):  # nor may it send what it judged
            store.check_lease(lease)
        store.check_lease(store.acquire_lease(SCOPE, "frozen", 5))  # renewed: held again


def test_a_fold_step_longer_than_the_ttl_commits_while_its_holder_renews(url: str) -> None:
    """On PostgreSQL the holder's renewals go on while a fenced step runs, so a step that
    outlasts the TTL (a 100k-label batch against 10M records takes ~20 s) still commits.
    On SQLite the write lock keeps even the holder's renewals out until the step ends."""
    if not url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: the renewal waits for the step")
    with Store(url) as store, Store(url) as renewer:
        lease = store.acquire_lease(SCOPE, "slow", 0.6)
        insert = store._insert
        done = threading.Event()

        def renew() -> None:
            while not done.wait(0.15):
                renewer.acquire_lease(SCOPE, "slow", 0.6)

        def slow(table: sa.Table) -> object:  # inside the transaction, after the fence
            time.sleep(1.5)
            return insert(table)

        store._insert = slow  # type: ignore[method-assign]
        thread = threading.Thread(target=renew)
        thread.start()
        try:
            store.save_windows("m", [stored_window(datetime(2024, 5, 1, tzinfo=UTC))], 5,
                               lease=lease)
        finally:
            done.set()
            thread.join()
            del store._insert
        assert store.watermark("m") == 5 and len(store.load_windows("m")) == 1
        assert store.lease(SCOPE).epoch == lease.epoch


def test_alert_state_is_saved_only_on_top_of_the_revision_read(url: str) -> None:
    with Store(url) as store:
        assert store.load_alert_state("m") == (None, 0)
        assert store.save_alert_state("m", {"n": 1}, 0) == 1  # 0: none saved yet
        with pytest.raises(Conflict):
            store.save_alert_state("m", {"n": "late"}, 0)
        assert store.save_alert_state("m", {"n": 2}, 1) == 2
        with pytest.raises(Conflict, match="changed since revision 1"):
            store.save_alert_state("m", {"n": "stale"}, 1)
        assert store.save_alert_state("m", {"n": 3}) == 3  # unconditional
        assert store.load_alert_state("m") == ({"n": 3}, 3)
        assert store.alert_revisions() == {"m": 3}


def test_a_fold_step_reads_a_bounded_number_of_bytes(url: str) -> None:
    with Store(url) as store:
        seqs = [store.append_events("m", bytes(size), rows=1) for size in (40, 40, 100, 10)]
        assert [e.seq for e in store.events_after("m", 0, max_bytes=80)] == seqs[:2]
        assert [e.seq for e in store.events_after("m", 0, max_bytes=79)] == seqs[:1]
        assert [e.seq for e in store.events_after("m", seqs[1], max_bytes=1)] == [seqs[2]]
        assert [e.seq for e in store.events_after("m", 0, max_bytes=10**6, limit=3)] == seqs[:3]
        assert [e.seq for e in store.events_after("m", 0, max_bytes=10**6)] == seqs
        assert store.events_after("m", seqs[-1], max_bytes=5) == []
        with pytest.raises(StoreError, match="max_bytes"):
            store.events_after("m", 0, max_bytes=0)


def test_a_fold_step_reads_no_more_rows_than_it_folds(url: str) -> None:
    """A suite that joins late labels folds at most FOLD_RECORDS rows a step: the store
    reads no payload past them (before, a step read up to --fold-mib of payloads, 64 MiB,
    to fold one batch of 100,000 rows and drop the rest)."""
    with Store(url) as store:
        seqs = [store.append_events("m", bytes(10), rows=rows) for rows in (60, 40, 70, 5)]
        assert [e.seq for e in store.events_after("m", 0, max_rows=100)] == seqs[:2]
        assert [e.seq for e in store.events_after("m", 0, max_rows=99)] == seqs[:1]
        assert [e.seq for e in store.events_after("m", seqs[1], max_rows=1)] == [seqs[2]]
        assert [e.seq for e in store.events_after("m", 0, max_rows=175,
                                                  max_bytes=30)] == seqs[:3]
        assert [e.seq for e in store.events_after("m", 0, max_rows=175,
                                                  max_bytes=20)] == seqs[:2]
        assert [e.seq for e in store.events_after("m", 0, max_rows=175)] == seqs
        with pytest.raises(StoreError, match="max_rows"):
            store.events_after("m", 0, max_rows=0)


def test_a_postgresql_connection_that_carried_a_large_batch_is_not_kept(url: str) -> None:
    """The client library keeps a connection's buffers as large as the largest message it
    carried: a connection that stored or read a batch of 1 MiB or more is closed when it
    goes back to the pool, one that carried small ones is used again."""
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL's client library")

    def backend(store: Store) -> int:
        with store._engine.connect() as conn:
            return int(conn.scalar(sa.text("SELECT pg_backend_pid()")))

    with Store(url) as store:
        first = backend(store)
        store.append_events("m", bytes(1000), rows=1)
        assert backend(store) == first  # (the pool hands out the last one used)
        store.append_events("m", bytes(SHED_BYTES), rows=1)
        after_append = backend(store)
        assert after_append != first
        assert len(store.events_after("m", 0, limit=1)) == 1  # 1000 bytes
        assert backend(store) == after_append
        assert len(store.events_after("m", 0)) == 2
        assert backend(store) != after_append


def test_a_reader_past_a_watermark_never_skips_an_event_appended_concurrently(
        url: str) -> None:
    """Events of one model become visible in seq order (on PostgreSQL, concurrent appends
    could otherwise commit out of order, and a reader would move its watermark past an
    event not yet visible and never fold it)."""
    with Store(url) as store:
        appended: list[int] = []
        seen: list[int] = []
        failed: list[BaseException] = []
        done = threading.Event()

        def write(i: int) -> None:
            try:
                for j in range(120):
                    appended.append(store.append_events("m", f"{i}:{j}".encode(), rows=1))
            except BaseException as e:  # a writer that gave up would pass unnoticed
                failed.append(e)

        def read() -> None:
            last = 0
            while True:
                finished = done.is_set()
                for e in store.events_after("m", last, limit=1000):
                    seen.append(e.seq)
                    last = e.seq
                if finished:
                    return

        reader = threading.Thread(target=read)
        reader.start()
        writers = [threading.Thread(target=write, args=(i,)) for i in range(6)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        done.set()
        reader.join()
        assert failed == []
        assert len(appended) == 6 * 120
        assert seen == sorted(appended)


# -- hubs in process -----------------------------------------------------------------------
def _leader_and_follower(leader: Hub, follower: Hub) -> None:
    """The first hub takes the lease and deploys model m; the second follows and sees it."""
    leader.fold_lease.renew()
    follower.fold_lease.renew()
    leader.load()
    leader.register("m", _suite_text())
    follower.load()
    follower._discover()


def _run_out(store: Store) -> None:
    """The fold lease runs out now (as if its holder had not renewed it for its TTL)."""
    with store._engine.begin() as conn:
        conn.execute(sa.update(tables.fold_leases).values(expires_at=0.0))


def test_only_the_lease_holder_folds_and_a_frozen_holder_writes_nothing_more(
        url: str) -> None:
    t0 = 1_700_000_000.0
    now = [t0]
    stores = [Store(url), Store(url)]  # one per "process"

    def hub(store: Store) -> Hub:
        return Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
                   clock=lambda: now[0], lease_ttl=60)

    a, b = hub(stores[0]), hub(stores[1])
    try:
        _leader_and_follower(a, b)
        assert a.folding and not b.folding and "m" in b.models
        sent = 0
        for i in range(6):  # both ingest; both step; only a folds
            for h in (a, b):
                h.append("m", _batch(100, t0 + i, 10 * i + (h is b)), "events")
                sent += 100
                h.step()
        a.step()
        assert _windowed(stores[0]) == sent
        b.step()  # the follower folds nothing
        assert _windowed(stores[0]) == sent
        assert b.counters["lease_taken"] == 0

        # a freezes (it thinks it still holds the lease); b takes it once it expires
        frozen = a.fold_lease.holding
        _run_out(stores[0])
        b.fold_lease.renew()
        assert b.lease() is not None and b.lease().epoch == 2
        b.append("m", _batch(100, t0 + 7, 99), "events")
        sent += 100
        b.step()  # takes over: rebuilt from the store, folds on from the watermark
        assert b.folding and _windowed(stores[0]) == sent
        a.fold_lease.holding = frozen  # a wakes up believing it still leads
        a.append("m", _batch(100, t0 + 8, 98), "events")  # ingest still works
        sent += 100
        a.step()  # its write is fenced: refused, and a turns follower
        assert not a.folding and a.counters["lease_lost"] == 1
        assert _windowed(stores[0]) == sent - 100  # a's fold of its batch was not saved
        b.step()
        assert _windowed(stores[0]) == sent  # exactly once
        now[0] = t0 + 30
        b.step()
        assert [w.state for w in stores[0].load_windows("m")] == ["closed"]
        assert b.models["m"].alerts.last_start is not None
    finally:
        for s in stores:
            s.close()


def test_acknowledgements_and_silences_on_a_follower_reach_the_leader(
        url: str) -> None:
    t0 = 1_700_000_000.0
    now = [t0]
    stores = [Store(url), Store(url)]
    notes: list = []

    class Keep:
        def send(self, n: object) -> None:
            notes.append(n)

    def hub(store: Store) -> Hub:
        return Hub(store, window=timedelta(seconds=1), grace=timedelta(0),
                   clock=lambda: now[0], lease_ttl=30,
                   dispatcher=Dispatcher([Keep()], retries=0))

    leader, follower = hub(stores[0]), hub(stores[1])
    try:
        _leader_and_follower(leader, follower)

        def window(i: int, broken: bool) -> None:
            follower.append("m", _batch(400, t0 + i, i, broken), "events")
            now[0] = t0 + i + 1
            leader.step()

        for i in range(3):
            window(i, False)
        for i in range(3, 5):
            window(i, True)
        [incident] = leader.models["m"].alerts.incidents.values()
        assert incident.is_open and len(notes) == 1
        follower.step()  # the follower's view: the incident, from the store
        assert list(follower.models["m"].alerts.incidents) == [incident.id]
        acked = follower.acknowledge("m", incident.id, "ops")
        assert acked.acknowledged_by == "ops"
        silence = follower.silence("m", {"column": "y"},
                                   datetime.fromtimestamp(now[0] + 3600, UTC), created_by="ana")
        with pytest.raises(KeyError):
            follower.acknowledge("m", "nope")
        window(5, True)  # the leader merges them before it saves what it judged
        state = leader.models["m"].alerts
        assert state.incidents[incident.id].acknowledged_by == "ops"
        assert [s.id for s in state.silences] == [silence.id]
        # the leader acknowledges too; the follower's stale copy must not undo that
        leader.unsilence("m", silence.id)
        window(6, True)
        follower.step()
        assert follower.models["m"].alerts.silences == []
        for i in range(7, 11):
            window(i, False)
        resolved = leader.models["m"].alerts.incidents[incident.id]
        assert not resolved.is_open and resolved.acknowledged_by == "ops"
        assert [n.kind for n in notes] == ["open", "resolve"]
        saved = stores[0].alert_state("m")
        assert saved["incidents"][0]["acknowledged_by"] == "ops" and saved["silences"] == []
    finally:
        for s in stores:
            s.close()


def test_a_leader_that_lost_its_lease_after_saving_windows_sends_no_notification(
        url: str) -> None:
    """Between saving a window's findings and sending what judging it says, the lease went
    to another server: the stale leader sends nothing; the new one judges it and sends."""
    t0 = 1_700_000_000.0
    now = [t0]
    stores = [Store(url), Store(url)]
    notes: list[tuple[str, str]] = []

    class Keep:
        def __init__(self, who: str) -> None:
            self.who = who

        def send(self, n: object) -> None:
            notes.append((self.who, n.kind))  # type: ignore[attr-defined]

    def hub(store: Store, who: str) -> Hub:
        return Hub(store, window=timedelta(seconds=1), grace=timedelta(0),
                   clock=lambda: now[0], lease_ttl=30,
                   dispatcher=Dispatcher([Keep(who)], retries=0))

    old, new = hub(stores[0], "old"), hub(stores[1], "new")
    try:
        _leader_and_follower(old, new)
        for i in range(4):
            old.append("m", _batch(400, t0 + i, i, broken=i >= 3), "events")
            now[0] = t0 + i + 1
            old.step()
        save_findings = stores[0].save_findings

        def then_lose(*args: object, **kwargs: object) -> None:
            save_findings(*args, **kwargs)
            _run_out(stores[1])
            new.fold_lease.renew()  # another server takes the lease in between

        stores[0].save_findings = then_lose  # type: ignore[method-assign]
        old.append("m", _batch(400, t0 + 4, 4, broken=True), "events")
        now[0] = t0 + 5
        old.step()  # the incident would open here
        del stores[0].save_findings
        assert notes == [] and not old.folding
        new.step()  # takes over, judges the window again, sends once
        assert notes == [("new", "open")]
    finally:
        for s in stores:
            s.close()


class _Keep:
    """A notifier that keeps what it is sent, as (who, kind, key); ``then`` runs after."""

    def __init__(self, who: str, sent: list[tuple[str, str, str]],
                 then: object = None) -> None:
        self.who, self.sent, self.then = who, sent, then

    def send(self, n: object) -> None:
        self.sent.append((self.who, n.kind, n.key))  # type: ignore[attr-defined]
        if callable(self.then):
            self.then()


def _about_to_open(url: str, sent: list[tuple[str, str, str]], then: object = None
                   ) -> tuple[Hub, Hub, list[Store]]:
    """An old leader and a new follower, four windows folded: the next broken window
    opens an incident."""
    t0 = 1_700_000_000.0
    now = [t0]
    stores = [Store(url), Store(url)]

    def hub(store: Store, who: str, then: object = None) -> Hub:
        return Hub(store, window=timedelta(seconds=1), grace=timedelta(0),
                   clock=lambda: now[0], lease_ttl=30,
                   dispatcher=Dispatcher([_Keep(who, sent, then)], retries=0))

    old, new = hub(stores[0], "old", then), hub(stores[1], "new")
    _leader_and_follower(old, new)
    for i in range(4):
        old.append("m", _batch(400, t0 + i, i, broken=i >= 3), "events")
        now[0] = t0 + i + 1
        old.step()
    old.append("m", _batch(400, t0 + 4, 4, broken=True), "events")
    now[0] = t0 + 5
    return old, new, stores


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_leader_that_loses_its_lease_around_saving_the_alert_state_sends_nothing(
        url: str, when: str) -> None:
    """The lease goes to another server while the leader saves what judging a window says
    (a leader frozen inside that transaction: ``before`` its commit), or right after it
    saved it and before it sends: the stale leader sends nothing, the new one sends the
    notification once (judged again, or from the saved outbox)."""
    sent: list[tuple[str, str, str]] = []
    old, new, stores = _about_to_open(url, sent)
    try:
        save = stores[0].save_alert_state

        def lose() -> None:
            _run_out(stores[1])
            new.fold_lease.renew()  # another server takes the lease

        def losing(*args: object, **kwargs: object) -> int:
            if when == "before":
                lose()
            revision = save(*args, **kwargs)  # type: ignore[arg-type]
            if when == "after":
                lose()
            return revision

        stores[0].save_alert_state = losing  # type: ignore[method-assign]
        old.step()  # the incident opens here
        del stores[0].save_alert_state
        assert sent == [] and not old.folding
        new.step()  # takes over: judges the window again or sends the saved outbox
        new.step()
        assert [(who, kind) for who, kind, _ in sent] == [("new", "open")]
        assert stores[1].alert_state("m")["outbox"] == []  # recorded as sent
    finally:
        for s in stores:
            s.close()


def test_a_notification_sent_just_before_the_lease_is_lost_is_not_sent_again(
        url: str) -> None:
    """The leader sends, then loses its lease before it records the send: the record is
    no fold write (it only takes what was sent out of the stored outbox, on top of the
    latest revision), so it is made, and the new leader does not send it again."""
    sent: list[tuple[str, str, str]] = []
    holder: list[Hub] = []

    def lose() -> None:
        _run_out(stores[1])
        holder[0].fold_lease.renew()

    old, new, stores = _about_to_open(url, sent, then=lose)
    holder.append(new)
    try:
        old.step()  # sends "open", then loses the lease
        new.step()
        new.step()
        assert [(who, kind) for who, kind, _ in sent] == [("old", "open")]
        assert new.folding and stores[1].alert_state("m")["outbox"] == []
    finally:
        for s in stores:
            s.close()


def test_a_notification_whose_record_failed_is_recorded_later_not_sent_again(
        url: str) -> None:
    """The store fails the record of a send: the next step records it without sending it
    again."""
    sent: list[tuple[str, str, str]] = []
    old, _, stores = _about_to_open(url, sent)
    try:
        save = stores[0].save_alert_state
        failed = []

        def flaky(*args: object) -> int:
            if args[3] is None and not failed:  # the record: not fenced
                failed.append(True)
                raise StoreError("the database went away")
            return save(*args)  # type: ignore[arg-type]

        stores[0].save_alert_state = flaky  # type: ignore[method-assign]
        with pytest.raises(StoreError):
            old.step()  # sends "open"; its record fails
        assert failed and stores[0].alert_state("m")["outbox"] != []
        old.step()
        assert [(who, kind) for who, kind, _ in sent] == [("old", "open")]
        assert stores[0].alert_state("m")["outbox"] == []
    finally:
        for s in stores:
            s.close()


def test_rows_without_a_time_are_windowed_by_arrival_however_late_the_fold(url: str) -> None:
    """A backlog folded an hour after it arrived (a restart, a takeover) keeps its rows in
    the windows of their arrival, not in the window of the fold."""
    arrived = time.time()
    with Store(url) as store:
        hub = Hub(store, window=timedelta(seconds=60), grace=timedelta(0),
                  clock=lambda: arrived + 3600, lease_ttl=None)
        hub.register("m", _suite_text())
        hub.append("m", _batch(100, arrived, 1).drop_columns(["_ts"]), "events")
        hub.append("m", _batch(50, arrived, 2).set_column(
            2, "_ts", pa.array([float("nan")] * 50)), "events")  # a missing time: the same
        hub.append("m", _batch(20, arrived, 3).set_column(
            2, "_ts", pa.array([1e300, float("inf")] * 10)), "events")  # no calendar time
        hub.step()
        [window] = store.load_windows("m")
        assert window.rows == 170
        assert hub.models["m"].current.counters["bad_timestamps"] == 20  # counted once
        assert abs(window.start.timestamp() - arrived) <= 61  # not an hour later


def test_a_fold_step_that_fails_to_save_is_folded_again_exactly_once(url: str) -> None:
    t0 = 1_700_000_000.0
    with Store(url) as store:
        hub = Hub(store, window=timedelta(seconds=10), grace=timedelta(0), clock=lambda: t0)
        hub.register("m", _suite_text())
        hub.append("m", _batch(100, t0, 1), "events")
        hub.step()
        hub.append("m", _batch(100, t0 + 1, 2), "events")
        hub.append("m", pa.table({"x": [1.0]}), "labels")  # labels fold the events first
        hub.append("m", _batch(50, t0 + 2, 3), "events")

        def down(*args: object, **kwargs: object) -> None:
            raise StoreError("the database went away")

        store.save_windows = down  # type: ignore[method-assign]
        with pytest.raises(StoreError):
            hub.step()  # folded in memory, not saved
        del store.save_windows
        hub.step()  # reloaded from the store, then folded again
        assert _windowed(store) == 250
        hub.step()
        assert _windowed(store) == 250


def test_a_followers_refused_requests_are_counted_by_the_leader(url: str) -> None:
    from watchkeeper.monitors.security import REJECTED
    from watchkeeper.profiles.core import Profile

    now = [1_700_000_000.0]
    stores = [Store(url), Store(url)]
    leader, follower = (Hub(s, window=timedelta(seconds=10), grace=timedelta(0),
                            clock=lambda: now[0], lease_ttl=30) for s in stores)
    try:
        _leader_and_follower(leader, follower)
        for _ in range(3):
            follower.reject("m", "invalid")
        follower.reject("m", "auth")
        follower.step()  # handed over through the event log
        assert follower.counters["rejected_invalid"] == 3
        leader.reject("m", "auth")
        leader.step()  # the follower's, in the window of their arrival: saved with the fold
        now[0] += 20
        leader.step()  # the leader's own, in its window by its clock: saved as it closes
        windows = stores[0].load_windows("m")
        tally = sum(Profile.from_dict(w.profile).joint[REJECTED] for w in windows)
        assert tally.tolist() == [3, 2] and sum(w.rows for w in windows) == 0
    finally:
        for s in stores:
            s.close()


def _duplicate_columns(n: int, ts: float) -> bytes:
    """A batch that reads back but that no profile can be made of (two columns named x), as
    a store written by an older server (which took it over HTTP) may hold."""
    from watchkeeper.wire import to_ipc

    return to_ipc(pa.Table.from_arrays([pa.array(np.ones(n)), pa.array(np.ones(n)),
                                        pa.array(np.full(n, ts))], names=["x", "x", "_ts"]))


def test_a_batch_that_fails_to_fold_is_set_aside_and_the_fold_goes_on(url: str) -> None:
    """Of a step of several batches that fails, each is folded alone to find the one to
    blame; that one is set aside after three attempts, the others are folded once."""
    t0 = 1_700_000_000.0
    with Store(url) as store:
        hub = Hub(store, window=timedelta(seconds=10), grace=timedelta(0), clock=lambda: t0)
        hub.register("m", _suite_text())
        other = Hub(store, window=timedelta(seconds=10), grace=timedelta(0), clock=lambda: t0)
        hub.register("n", _suite_text())  # another model folds on meanwhile
        hub.append("m", _batch(100, t0, 1), "events")
        hub.append("m", _batch(50, t0 + 1, 2), "events")
        bad = store.append_events("m", _duplicate_columns(30, t0 + 2), 30)
        hub.append("m", pa.table({"x": [1.0]}), "labels")
        hub.append("m", _batch(20, t0 + 3, 3), "events")
        for i in range(8):  # bounded: 1 failed step of all, then one batch at a time
            hub.append("n", _batch(10, t0 + i, 10 + i), "events")
            hub.step()
        assert _windowed(store) == 170 and _windowed(store, "n") == 80
        assert store.watermark("m") > bad
        [aside] = store.quarantined_events("m")
        assert aside.seq == bad and "duplicate column names" in aside.error
        assert hub.quarantined == {"m": 1} and hub.counters["fold_errors"] == 4
        assert not hub.fold.failing and not hub.fold.isolate
        hub.append("m", _batch(5, t0 + 4, 4), "events")
        hub.step()
        assert _windowed(store) == 175  # each batch folded exactly once
        other.load()  # a restart: the batch stays aside, read from the store
        assert other.quarantined == {"m": 1} and other.models["m"].current.windows


@pytest.mark.slow
def test_a_corrupt_stored_batch_is_set_aside_across_restarts(
        url: str, suite_file: Path, tmp_path: Path) -> None:
    args = ("--store", url, "--suite", f"m={suite_file}", "--window", "1s",
            "--grace", "1s", "--lease-ttl", f"{TTL:g}s")
    def post(server: Server, seed: int) -> None:
        status, _ = request(server.url + "/v1/models/m/events",
                            arrow(_batch(300, time.time(), seed)), token=WRITE,
                            content_type=ARROW)
        assert status == 200

    def metric(server: Server) -> str:
        return request(server.url + "/metrics", token=READ)[1]

    store = Store(url)
    first = Server(tmp_path, *args).start()
    try:
        post(first, 1)
        valid = arrow(_batch(300, time.time(), 2))
        with store._engine.begin() as conn:  # as a row damaged on disk would look
            corrupt = conn.execute(sa.insert(tables.events).values(
                model="m", kind="events", received_at=datetime.now(UTC), rows=300,
                payload=valid[:len(valid) // 2])).inserted_primary_key[0]
        post(first, 3)
        post(first, 4)
        assert _caught_up(store) == 900  # exactly the valid rows
        assert store.watermark("m") > corrupt
        assert 'watchkeeper_quarantined_batches{model="m"} 1.0' in metric(first)
        assert first.logs().count("set aside after 3 failed attempts") == 1
        assert f"batch {corrupt} " in first.logs()
    finally:
        first.stop()
    [aside] = store.quarantined_events("m")  # kept, with why
    assert aside.seq == corrupt and aside.payload == valid[:len(valid) // 2]
    assert "OSError" in aside.error or "ArrowInvalid" in aside.error
    second = Server(tmp_path, *args).start()  # the same store
    try:
        post(second, 5)
        assert _caught_up(store) == 1200
        assert 'watchkeeper_quarantined_batches{model="m"} 1.0' in metric(second)
        assert [e.seq for e in store.quarantined_events("m")] == [corrupt]
        assert "set aside" not in second.logs() and "cannot be read" not in second.logs()
        _, doc = request(second.url + "/v1/models/m/windows", token=READ)
        assert sum(w["rows"] for w in doc["windows"]) == 1200
        # operators see what was set aside: the API and the CLI
        _, doc = request(second.url + "/v1/models/m/quarantine", token=READ)
        [listed] = doc["batches"]
        assert (listed["seq"], listed["rows"], listed["error"]) == (corrupt, 300, aside.error)
        assert request(second.url + "/v1/models/m/quarantine")[0] == 401  # needs a token
        from click.testing import CliRunner

        from watchkeeper.cli import main

        out = CliRunner(env={"WATCHKEEPER_READ_TOKEN": READ}).invoke(
            main, ["quarantine", "--server", second.url, "--model", "m"])
        assert out.exit_code == 0 and f"batch {corrupt}  events  300 rows" in out.output
    finally:
        second.stop()
        store.close()


# -- real servers --------------------------------------------------------------------------
TTL = 3.0


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fold_lease") / "suite.yaml"
    path.write_text(_suite_text())
    return path


@pytest.mark.slow
def test_two_servers_fold_each_event_once_across_takeovers(
        url: str, suite_file: Path, tmp_path: Path) -> None:
    args = ("--store", url, "--suite", f"m={suite_file}", "--window", "1s",
            "--grace", "1s", "--lease-ttl", f"{TTL:g}s")
    first = Server(tmp_path, *args).start()  # registers the suite and takes the lease
    second = Server(tmp_path, *args).start()
    servers = [first, second]
    store = Store(url)
    acked = 0
    try:
        assert _holder(store, servers) is first
        wait_for(lambda: [request(s.url + "/healthz")[1]["folding"] for s in servers]
                 == [True, False], timeout=60)

        # 1. both ingest, one folds
        streams = [Stream(first, 1), Stream(second, 2)]
        for s in streams:
            s.start()
        time.sleep(3)
        acked += sum(s.stop() for s in streams)
        assert _caught_up(store) == acked == _logged(store)
        _, doc = request(second.url + "/v1/models/m/windows", token=READ)  # a follower reads
        assert sum(w["rows"] for w in doc["windows"]) == acked

        # 2. the leader freezes (SIGSTOP) while the other streams: it takes over once the
        #    lease runs out; woken up, the old leader's writes are refused; it follows
        streams = [Stream(second, 3)]
        streams[0].start()
        time.sleep(0.5)
        freeze(first, url)
        frozen = time.monotonic()
        # (how soon is a timing, printed, not asserted: on a loaded machine the
        # follower's step that takes over can wait seconds for a CPU)
        wait_for(lambda: _holder(store, servers) is second, timeout=60, every=0.05)
        took = time.monotonic() - frozen
        time.sleep(1.0)
        first.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: request(first.url + "/healthz")[1]["folding"] is False, timeout=60)
        streams.append(Stream(first, 4))  # the old leader ingests again, as a follower
        streams[-1].start()
        time.sleep(2)
        acked += sum(s.stop() for s in streams)
        assert _caught_up(store) == acked == _logged(store)
        assert _holder(store, servers) is second

        # 3. kill -9 of the leader while the other streams: the survivor takes over
        streams = [Stream(first, 5)]
        streams[0].start()
        time.sleep(1.0)
        second.kill9()
        killed = time.monotonic()
        wait_for(lambda: _holder(store, servers) is first, timeout=60, every=0.05)
        took_after_kill = time.monotonic() - killed
        time.sleep(1.5)
        acked += streams[0].stop()
        assert _caught_up(store) == acked == _logged(store)
        assert request(first.url + "/healthz")[1]["folding"] is True
        _, doc = request(first.url + "/v1/models/m/windows", token=READ)
        assert sum(w["rows"] for w in doc["windows"]) == acked
        print(f"acknowledged {acked} rows; takeover after SIGSTOP {took:.2f} s, after "
              f"kill -9 {took_after_kill:.2f} s")
    finally:
        for s in servers:
            if s.proc is not None and s.proc.poll() is None:
                os.kill(s.proc.pid, signal.SIGCONT)
            s.stop()
        store.close()


def _sample(server: Server, name: str) -> float | None:
    """One sample of a server's /metrics (None if absent)."""
    _, text = request(server.url + "/metrics", token=READ)
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


LEADER = "watchkeeper_fold_leader"
TAKEN = 'watchkeeper_fold_lease_changes_total{change="taken"}'
LOST = 'watchkeeper_fold_lease_changes_total{change="lost"}'


@pytest.mark.slow
def test_metrics_say_which_server_folds_and_count_the_lease_changing_hands(
        url: str, suite_file: Path, tmp_path: Path) -> None:
    args = ("--store", url, "--suite", f"m={suite_file}", "--window", "1s",
            "--grace", "1s", "--lease-ttl", "2s")
    first = Server(tmp_path, *args).start()
    second = Server(tmp_path, *args).start()
    try:
        assert [_sample(s, LEADER) for s in (first, second)] == [1.0, 0.0]
        assert [_sample(s, TAKEN) for s in (first, second)] == [1.0, 0.0]
        assert [_sample(s, LOST) for s in (first, second)] == [0.0, 0.0]
        assert first.proc is not None
        freeze(first, url)  # frozen past its lease: the other takes it
        wait_for(lambda: _sample(second, LEADER) == 1.0, timeout=10, every=0.1)
        assert (_sample(second, TAKEN), _sample(second, LOST)) == (1.0, 0.0)
        first.proc.send_signal(signal.SIGCONT)  # woken up, it finds the lease gone
        # the gauge drops when the renewal finds the lease gone; the fold loop counts the
        # loss on its next step, a moment later
        wait_for(lambda: (_sample(first, LEADER), _sample(first, LOST)) == (0.0, 1.0),
                 timeout=10, every=0.1)
        assert _sample(first, TAKEN) == 1.0
        assert request(first.url + "/healthz")[1]["folding"] is False
        second.stop()  # a clean stop gives the lease back: the first folds again
        wait_for(lambda: _sample(first, LEADER) == 1.0, timeout=10, every=0.1)
        assert (_sample(first, TAKEN), _sample(first, LOST)) == (2.0, 1.0)
        assert _sample(first, "watchkeeper_fold_lease_errors_total") == 0.0
    finally:
        for s in (first, second):
            if s.proc is not None and s.proc.poll() is None:
                os.kill(s.proc.pid, signal.SIGCONT)
            s.stop()
