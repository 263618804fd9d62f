"""Each server's own event-log file next to a SQLite store (store/logs.py): batches copied
into the store once each, a key seen by two servers kept once, nobody waits on a writer
frozen inside its transaction (real SQLite locks: a transaction left open by another
connection), a stale leader's copy refused, a gone server's file deleted once copied."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchkeeper.errors import LeaseLost, StoreError
from watchkeeper.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'wk.db'}")
    yield s
    s.close()


def _seqs(store: Store, model: str = "m") -> list[tuple[bytes, str | None]]:
    return [(e.payload, e.idempotency_key) for e in store.events_after(model, 0, limit=1000)]


def test_batches_of_every_servers_log_are_copied_once_and_a_key_kept_once(
    store: Store, tmp_path: Path
) -> None:
    a, b = store.open_log("host:1:aa"), store.open_log("host:2:bb")
    assert a.path.parent == tmp_path / "wk.db-logs" and a.path != b.path
    assert store.append_to_log(a, "m", b"a1", 3).seq == 1
    assert store.append_to_log(a, "m", b"a2", 2, key="k1").seq == 2
    again = store.append_to_log(a, "m", b"a2", 2, key="k1")  # a retry on the same server
    assert (again.seq, again.duplicate) == (2, True)
    assert store.append_to_log(b, "m", b"b1", 4, key="k1").duplicate is False  # not seen yet
    store.append_to_log(b, "m", b"b2", 1, key="k2")
    assert store.events_after("m", 0) == []  # nothing in the store before the copy
    assert store.backlog()["m"][0] == 4
    assert store.import_logs() == {"m": 1}  # b's copy of k1 dropped
    assert sorted(_seqs(store)) == [(b"a1", None), (b"a2", "k1"), (b"b2", "k2")]
    assert store.import_logs() == {} and len(_seqs(store)) == 3  # copied once
    assert store.backlog() == {"m": (3, store.backlog()["m"][1])}  # in the store, not folded
    # a retry once the batch is in the store is a duplicate on any server
    assert store.append_to_log(b, "m", b"a2", 2, key="k1").duplicate is True
    assert (store.log_cursor(a.name), store.log_cursor(b.name)) == (2, 2)
    assert a.prune(store.log_cursor(a.name)) == 2  # the owner forgets what was copied
    assert store.append_to_log(a, "m", b"a3", 1).seq == 3  # seqs never reused
    assert store.import_logs() == {} and len(_seqs(store)) == 4
    for log in (a, b):
        log.close()


def test_nobody_waits_on_a_writer_frozen_inside_its_transaction(
    store: Store, tmp_path: Path
) -> None:
    follower = store.open_log("host:3:cc")
    store.append_to_log(follower, "m", b"f1", 1)
    # the leader frozen inside its fold transaction: the store's write lock held
    leader = sqlite3.connect(tmp_path / "wk.db", isolation_level=None, timeout=0.1)
    leader.execute("BEGIN IMMEDIATE")
    leader.execute("UPDATE models SET watermark = watermark")
    try:
        assert store.append_to_log(follower, "m", b"f2", 1, key="k").duplicate is False
        assert store.log_backlog()["m"][0] == 2  # read while the store is locked
        with pytest.raises(StoreError, match="locked"):
            store.import_logs()  # the store's writer is the frozen one: no copy meanwhile
    finally:
        leader.execute("ROLLBACK")
        leader.close()
    # a follower frozen inside an upload: its own file's write lock held
    frozen = sqlite3.connect(follower.path, isolation_level=None, timeout=0.1)
    frozen.execute("BEGIN IMMEDIATE")
    frozen.execute(
        "INSERT INTO log_events (model, kind, received_at, rows, payload) "
        "VALUES ('m', 'events', '2026-01-01 00:00:00', 1, x'00')"
    )
    try:
        assert store.import_logs() == {}  # its committed batches copied
        assert [p for p, _ in _seqs(store)] == [b"f1", b"f2"]
        other = store.open_log("host:4:dd")  # other servers' ingest goes on
        store.append_to_log(other, "m", b"o1", 1)
        store.import_logs()
        assert [p for p, _ in _seqs(store)] == [b"f1", b"f2", b"o1"]
        other.close()
    finally:
        frozen.execute("ROLLBACK")
        frozen.close()
    follower.close()


def test_a_stale_leaders_copy_is_refused_and_a_gone_servers_file_deleted(store: Store) -> None:
    log = store.open_log("host:5:ee")
    store.append_to_log(log, "m", b"x", 1)
    old = store.acquire_lease("fold", "old", 60)
    assert store.acquire_lease("fold", "new", 60, dead="old").owner == "new"
    with pytest.raises(LeaseLost):
        store.import_logs(lease=old)
    assert store.events_after("m", 0) == [] and store.log_cursor(log.name) == 0
    new = store.lease("fold")
    assert new is not None
    assert store.import_logs(lease=new, gone=lambda owner: owner == "host:5:ee") == {}
    assert log.path.exists()  # not deleted while batches were still to copy
    log.close()
    store.import_logs(lease=new, gone=lambda owner: owner == "host:5:ee")
    assert not log.path.exists() and store.log_cursor(log.name) == 0
    assert [e.payload for e in store.events_after("m", 0)] == [b"x"]


def test_only_a_sqlite_file_has_logs_of_its_own() -> None:
    with Store("sqlite://") as memory:
        assert memory.log_dir is None
        with pytest.raises(StoreError, match="SQLite files"):
            memory.open_log("host:1:aa")
        assert memory.import_logs() == {} and memory.log_backlog() == {}


def test_a_copy_reads_a_bounded_number_of_bytes_from_all_the_files(store: Store) -> None:
    logs = [store.open_log(f"host:{n}:ff") for n in (6, 7)]
    for n, log in enumerate(logs):
        for i in range(3):
            store.append_to_log(log, "m", bytes([n, i]) * 500, 1)
    store.import_logs(max_bytes=2_500)  # 2 batches of the first file, 1 of the second
    assert [len(e.payload) for e in store.events_after("m", 0)] == [1000, 1000, 1000]
    store.import_logs(max_bytes=10_000)
    assert len(store.events_after("m", 0)) == 6 and store.log_backlog() == {}
    for log in logs:
        log.close()
