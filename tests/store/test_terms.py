"""Terms of a SQLite store file (store/terms.py): a takeover while another process holds the
file's write lock (real SQLite locks: a transaction left open on another connection, as a
process frozen inside it would) forks a new term instead of waiting; every reader sees the
new term; what the frozen writer commits afterwards is reported lost and read by nobody."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from watchkeeper.errors import LeaseLost, StoreError
from watchkeeper.store import Store
from watchkeeper.store import tables as db
from watchkeeper.store import terms as terms_module
from watchkeeper.store.terms import ABANDONED

TTL = 60.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "wk.db"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{path}")
    yield s
    s.close()


def _frozen_writer(path: Path) -> sqlite3.Connection:
    """Another connection holding the file's write lock, with a write not committed."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE models SET watermark = 99")
    conn.execute("INSERT OR REPLACE INTO log_cursors (file, seq) VALUES ('s.db', 99)")
    return conn


def test_a_takeover_forks_a_term_when_the_write_lock_stays_held(store: Store, path: Path
                                                                ) -> None:
    lease = store.acquire_lease("fold", "a", TTL)
    store.save_windows("m", [], watermark=5, lease=lease)  # committed before: kept
    holder = _frozen_writer(path)
    try:
        # b is told a is gone: its write waits a moment, then it forks term 1
        taken = store.acquire_lease("fold", "b", TTL, dead="a")
        assert (taken.owner, taken.epoch) == ("b", lease.epoch + 1)
        assert (path.parent / "wk.db-terms" / "1.db").exists()
        with Store(f"sqlite:///{path}") as reader:  # any process reads the new term
            seen = reader.lease("fold")
            assert seen is not None and (seen.owner, seen.epoch) == ("b", taken.epoch)
            assert reader.watermark("m") == 5
        with pytest.raises(LeaseLost):  # a's lease is gone, by the current term
            store.check_lease(lease)
        with pytest.raises(LeaseLost):
            store.save_windows("m", [], watermark=7, lease=lease)
        store.save_windows("m", [], watermark=6, lease=taken)  # while the lock is still held
        holder.execute("COMMIT")  # the frozen writer wakes up: into term 0, read by nobody
    finally:
        holder.close()
    assert store.watermark("m") == 6
    assert store.log_cursor("s.db") == 0  # (a server prunes its own event log up to it)
    assert store.acquire_lease("fold", "a", TTL).owner == "b"  # a renewal finds b's lease


def test_a_write_that_commits_to_a_term_left_meanwhile_is_reported_not_saved(
        store: Store, path: Path) -> None:
    lease = store.acquire_lease("fold", "a", TTL)
    inside, forked = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def frozen(fenced: bool) -> None:  # a's fold (or a plain write) stuck in its transaction
        try:
            with store._transaction(write=True, lease=lease if fenced else None) as conn:
                conn.execute(sa.update(db.models).values(watermark=42))
                inside.set()
                forked.wait(30)
        except BaseException as e:
            errors.append(e)

    store.save_windows("m", [], watermark=1, lease=lease)
    with Store(f"sqlite:///{path}") as other:
        for fenced, lost in ((True, LeaseLost), (False, StoreError)):
            inside.clear()
            forked.clear()
            thread = threading.Thread(target=frozen, args=(fenced,))
            thread.start()
            assert inside.wait(30)
            holder = other.lease("fold")
            assert holder is not None
            other.acquire_lease("fold", f"b{fenced}", TTL, dead=holder.owner)
            forked.set()
            thread.join(30)
            assert len(errors) == 1 and type(errors.pop()) is lost  # "nothing saved"
            assert other.watermark("m") == 1  # its commit is in the old term: unread
    terms = sorted(p.name for p in (path.parent / "wk.db-terms").glob("*.db"))
    assert terms == ["1.db", "2.db"]
    assert path.exists()  # the store's own file is never deleted


def test_old_terms_are_deleted_and_a_live_holders_lease_is_never_forked(
        store: Store, path: Path) -> None:
    for term, owner in enumerate(["a", "b", "c"], start=1):
        holder = _frozen_writer(path if term == 1 else path.parent / "wk.db-terms" /
                                f"{term - 1}.db")
        try:
            previous = store.lease("fold")
            store.acquire_lease("fold", owner, TTL,
                                dead=None if previous is None else previous.owner)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    names = sorted(p.name for p in (path.parent / "wk.db-terms").iterdir())
    assert [n for n in names if n.endswith(".db")] == ["2.db", "3.db"]  # 1 is gone
    lease = store.lease("fold")
    assert lease is not None and (lease.owner, lease.epoch) == ("c", 3)
    holder = _frozen_writer(path.parent / "wk.db-terms" / "3.db")
    try:  # c holds it and is not known gone: d only reads it, whatever the lock
        assert store.acquire_lease("fold", "d", TTL).owner == "c"
        assert not (path.parent / "wk.db-terms" / "4.claim").exists()
        with pytest.raises(StoreError, match="locked"):  # c's renewal waits, as ever
            store._acquire("fold", "c", TTL, None, busy=0.1)
    finally:
        holder.close()



def test_of_two_servers_forking_at_once_one_takes_the_lease_and_both_see_it(
        store: Store, path: Path) -> None:
    store.acquire_lease("fold", "a", TTL)
    holder = _frozen_writer(path)
    got: dict[str, str] = {}

    def take(owner: str) -> None:
        with Store(f"sqlite:///{path}") as mine:
            got[owner] = mine.acquire_lease("fold", owner, TTL, dead="a").owner

    try:
        threads = [threading.Thread(target=take, args=(owner,)) for owner in ("b", "c")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        holder.close()
    assert got["b"] == got["c"] in ("b", "c")
    assert sorted(p.name for p in (path.parent / "wk.db-terms").glob("*.db")) == ["1.db"]


def test_a_forker_that_died_while_copying_holds_up_nobody(store: Store, path: Path) -> None:
    """kill -9 of the server forking term 1, mid-copy: its claim stays, its term never
    comes. Nobody waits for it (a process of this host that is gone), and the next
    takeover forks term 2 instead of finding term 1 taken."""
    lease = store.acquire_lease("fold", "a", TTL)
    store.save_windows("m", [], watermark=3, lease=lease)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)
    terms = path.parent / "wk.db-terms"
    terms.mkdir()
    (terms / "1.claim").write_text(str(dead.pid))
    (terms / "1.db.tmp").write_bytes(b"half a copy")
    with Store(f"sqlite:///{path}") as reader:  # before: waited 60 s, then StoreError
        assert reader.watermark("m") == 3
    holder = _frozen_writer(path)
    try:
        taken = store.acquire_lease("fold", "b", TTL, dead="a")
        assert (taken.owner, taken.epoch) == ("b", lease.epoch + 1)
        assert (terms / "2.db").exists() and not (terms / "1.db").exists()
        store.save_windows("m", [], watermark=4, lease=taken)
    finally:
        holder.close()
    with Store(f"sqlite:///{path}") as reader:
        assert reader.watermark("m") == 4


def test_a_forker_frozen_while_copying_is_given_up_after_a_while(store: Store, path: Path
                                                                 ) -> None:
    """A live forker touches its claim while it copies; one frozen (SIGSTOP) stops touching
    it: after ABANDONED seconds readers stop waiting for its term, and the next takeover
    forks the one after."""
    lease = store.acquire_lease("fold", "a", TTL)
    terms = path.parent / "wk.db-terms"
    terms.mkdir()
    claim = terms / "1.claim"
    claim.write_text(str(os.getpid()))  # alive, but silent for longer than ABANDONED
    old = time.time() - ABANDONED - 1
    os.utime(claim, (old, old))
    with Store(f"sqlite:///{path}") as reader:
        seen = reader.lease("fold")
        assert seen is not None and seen.owner == "a"
    holder = _frozen_writer(path)
    try:
        taken = store.acquire_lease("fold", "b", TTL, dead="a")
        assert (taken.owner, taken.epoch) == ("b", lease.epoch + 1)
        assert (terms / "2.db").exists()
    finally:
        holder.close()


def test_a_forker_copying_a_large_store_keeps_its_claim(
        store: Store, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that takes longer than ABANDONED is not given up while its forker lives:
    readers wait for its term and then read it."""
    monkeypatch.setattr(terms_module, "ABANDONED", 0.3)
    monkeypatch.setattr(terms_module, "TOUCH", 0.05)
    store.acquire_lease("fold", "a", TTL)
    terms = store._terms
    assert terms is not None

    def slow_take(copy: sqlite3.Connection) -> bool:
        time.sleep(1.0)  # as a large store's copy takes
        return True

    forking = threading.Thread(target=terms.fork, args=(0, slow_take))
    forking.start()
    try:
        time.sleep(0.6)  # longer than ABANDONED, while it copies
        with Store(f"sqlite:///{path}") as reader:
            assert reader._terms is not None and reader._terms.current() == 1
    finally:
        forking.join(30)
