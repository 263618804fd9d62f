"""The fold lease and the fold, in process, driven by injected clocks (no sleeping): the
hub's lease is held for as long as its own monotonic clock says, windows close by its wall
clock. The subprocess tests (kill -9, takeover between processes) are in
tests/server/test_fold_lease.py and tests/server/test_chaos_ha.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

import watchkeeper as wk
from watchkeeper.errors import LeaseLost
from watchkeeper.server.hub import SCOPE, FoldLease, Hub
from watchkeeper.store import Store, tables
from watchkeeper.suite import file as suitefile
from watchkeeper.wire import to_ipc

T0 = 1_700_000_000.0
TTL = 30.0


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wk.db'}"


@pytest.fixture
def stores(db: str) -> Iterator[tuple[Store, Store]]:
    """Two connections to one SQLite file: two server processes sharing a store."""
    a, b = Store(db), Store(db)
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="module")
def suite_text() -> str:
    rng = np.random.default_rng(0)
    reference = pa.table({"x": rng.normal(size=2_000), "y": rng.choice(["a", "b"], 2_000)})
    return suitefile.dump(wk.init(reference).to_dict())


def _batch(n: int, ts: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.normal(size=n), "y": rng.choice(["a", "b"], n),
                     "_ts": np.full(n, ts)})


def _run_out(store: Store) -> None:
    """The lease runs out by the database's clock (its holder did not renew it in time)."""
    with store._engine.begin() as conn:
        conn.execute(sa.update(tables.fold_leases).values(expires_at=0.0))


def _rows(store: Store, model: str = "m") -> int:
    return sum(w.rows for w in store.load_windows(model))


def _gone_owner() -> str:
    """A lease owner of this host whose process has exited (as after kill -9)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:feedbeef"


# -- the lease -------------------------------------------------------------------------------
def test_the_lease_is_taken_renewed_lapses_by_the_injected_clock_and_is_taken_over(
        stores: tuple[Store, Store]) -> None:
    clock = Clock(100.0)
    a = FoldLease(stores[0], TTL, "host-a:1:aa", Counter(), clock=clock)
    b = FoldLease(stores[1], TTL, "host-b:2:bb", Counter(), clock=clock)

    assert a.renew() == TTL / 3  # taken: renewed again in a third of the TTL
    taken = a.held()
    assert taken is not None and taken.epoch == 1 and a.counters["lease_taken"] == 1
    wait = b.renew()  # held by a: b tries again about when it may run out, at most TTL/3
    assert b.held() is None and 0.05 <= wait <= TTL / 3

    clock.advance(TTL / 3)  # a renews on time: same epoch, held a third longer
    until = a.holding[1]
    a.renew()
    assert a.held() is not None and a.held().epoch == 1 and a.holding[1] > until
    assert a.counters["lease_taken"] == 1

    clock.advance(TTL + 1)  # a stalls past its TTL: by its own clock it holds nothing
    assert a.held() is None
    a.epoch = 1
    with pytest.raises(LeaseLost):
        a.fence()
    assert a.renew() == TTL / 2  # and it leaves the lease to another server for a while
    assert a.holding == (None, 0.0)

    _run_out(stores[0])  # by the database's clock too: b takes it, in a new epoch
    b.renew()
    assert b.held() is not None and b.held().epoch == 2
    assert b.counters["lease_taken"] == 1
    assert a.renew() <= TTL / 3 and a.held() is None  # a sees b hold it now

    b.release()  # a clean stop: a takes it at its next try, without waiting for the TTL
    assert b.held() is None
    a.renew()
    assert a.held() is not None and a.held().epoch == 3


def test_a_lease_held_by_a_process_of_this_host_that_is_gone_is_taken_at_once(
        stores: tuple[Store, Store]) -> None:
    gone = _gone_owner()
    held = stores[0].acquire_lease(SCOPE, gone, TTL)  # not expired by any clock
    assert held.owner == gone and not held.expired
    b = FoldLease(stores[1], TTL, "host-b:2:bb", Counter(), clock=Clock(0.0))
    b.renew()
    assert b.held() is not None and b.held().epoch == held.epoch + 1


def test_writes_fenced_by_a_lease_lost_are_refused(stores: tuple[Store, Store]) -> None:
    clock = Clock(0.0)
    a = FoldLease(stores[0], TTL, "host-a:1:aa", Counter(), clock=clock)
    a.renew()
    lease = a.held()
    assert lease is not None
    a.epoch = lease.epoch
    assert a.fence() == lease and a.folding
    seq = stores[0].append_events("m", to_ipc(_batch(5, T0, 1)), 5)
    _run_out(stores[1])
    b = FoldLease(stores[1], TTL, "host-b:2:bb", Counter(), clock=clock)
    b.renew()
    # a still believes it holds the lease (its clock has not moved); the store refuses
    assert a.fence() == lease
    with pytest.raises(LeaseLost):
        stores[0].quarantine_event("m", seq, "test", lease=a.fence())
    with pytest.raises(LeaseLost):
        stores[0].check_lease(lease)
    assert stores[0].quarantined_events("m") == []


# -- hubs: lease, takeover and the fold ------------------------------------------------------
def _hub(store: Store, wall: Clock, mono: Clock, **options: object) -> Hub:
    return Hub(store, window=timedelta(seconds=10), grace=timedelta(0), clock=wall,
               monotonic=mono, **options)  # type: ignore[arg-type]


def test_a_leader_that_stalls_past_its_lease_stops_folding_and_a_follower_takes_over(
        stores: tuple[Store, Store], suite_text: str) -> None:
    wall, mono = Clock(T0), Clock(1_000.0)
    leader = _hub(stores[0], wall, mono, lease_ttl=TTL)
    follower = _hub(stores[1], wall, mono, lease_ttl=TTL)
    leader.fold_lease.renew()
    follower.fold_lease.renew()
    leader.load()
    leader.register("m", suite_text)
    follower.load()
    assert leader.folding and not follower.folding and "m" in follower.models

    leader.append("m", _batch(100, T0 + 1, 1), "events")
    follower.append("m", _batch(50, T0 + 2, 2), "events")  # any server ingests
    leader.step()
    follower.step()  # follows: folds nothing
    assert _rows(stores[0]) == 150

    mono.advance(TTL + 1)  # the leader stalled: its lease ran out by its own clock
    assert not leader.folding
    leader.append("m", _batch(30, T0 + 3, 3), "events")
    leader.step()  # it stops folding and serves from the store
    assert leader.counters["lease_lost"] == 1 and _rows(stores[0]) == 150

    _run_out(stores[1])  # … and by the database's clock: the follower takes it
    follower.fold_lease.renew()
    assert follower.lease() is not None and follower.lease().epoch == 2
    follower.step()  # takes over: rebuilt from the store, folds on from the watermark
    assert follower.folding and _rows(stores[0]) == 180  # each event once

    wall.advance(30)  # the window is due by the wall clock: closed and judged
    follower.step()
    [window] = stores[0].load_windows("m")
    assert (window.state, window.rows) == ("closed", 180)
    assert follower.models["m"].alerts is not None
    assert follower.models["m"].alerts.last_start == window.start

    leader.fold_lease.renew()  # the old leader now follows the new one
    assert leader.lease() is None
    mono.advance(2)  # its view of the windows refreshes (every follow_seconds)
    leader.step()
    assert [w.state for w in leader.models["m"].current.windows.values()] == ["closed"]


def test_a_fold_step_closes_windows_by_the_wall_clock_and_expires_by_the_monotonic_one(
        db: str, suite_text: str) -> None:
    wall, mono = Clock(T0), Clock(0.0)
    with Store(db) as store:
        hub = _hub(store, wall, mono, lease_ttl=None, retention=timedelta(seconds=60),
                   expire_seconds=30.0)
        hub.register("m", suite_text)
        hub.append("m", _batch(100, T0 + 1, 1), "events")
        hub.append("m", _batch(20, T0 + 12, 2), "events")
        hub.step()  # folded into two windows; neither is due yet
        assert sorted((w.state, w.rows) for w in store.load_windows("m")) == [
            ("open", 20), ("open", 100)]
        assert store.watermark("m") == max(e.seq for e in store.events_after("m", -1))
        hub.step()  # nothing new: nothing changes
        assert _rows(store) == 120

        wall.advance(15)  # the first window is due, the second not yet
        hub.step()
        assert sorted((w.state, w.rows) for w in store.load_windows("m")) == [
            ("closed", 100), ("open", 20)]

        # the events were received now (by the database's clock); with the wall clock a
        # day ahead they are past the retention, but they are looked for only every
        # expire_seconds of the monotonic clock (the first step looked already)
        wall.at = time.time() + 86_400
        hub.step()
        assert hub.counters["expired_events:m"] == 0
        mono.advance(31)
        hub.step()
        assert hub.counters["expired_events:m"] == 2
        assert store.events_after("m", -1) == []


def test_a_silence_saves_outside_the_lock_readers_wait_for(db: str, suite_text: str) -> None:
    """An operator's change does its store I/O without the registry's lock: readers answer
    while the save hangs, and see the change once it is saved."""
    with Store(db) as store:
        hub = _hub(store, Clock(T0), Clock(0.0), lease_ttl=None)
        hub.register("m", suite_text)
        saving, release = threading.Event(), threading.Event()
        save = store.save_alert_state

        def slow_save(*args: Any) -> int:
            saving.set()
            assert release.wait(30)
            return save(*args)

        store.save_alert_state = slow_save  # type: ignore[method-assign]
        until = datetime.fromtimestamp(T0 + 3600, UTC)
        worker = threading.Thread(target=hub.silence, args=("m", {"column": "x"}, until))
        worker.start()
        try:
            assert saving.wait(30)
            reader = threading.Thread(target=lambda: (hub.alert_view("m"), hub.states()))
            reader.start()
            reader.join(5)
            assert not reader.is_alive()  # not waiting for the save
            shown = hub.alert_view("m")
            assert shown is not None and shown.alerts.silences == []  # not saved yet
        finally:
            release.set()
            worker.join(30)
        del store.save_alert_state
        shown = hub.alert_view("m")
        assert shown is not None and len(shown.alerts.silences) == 1
