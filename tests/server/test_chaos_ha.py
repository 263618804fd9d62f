"""Liveness of three servers on one store while one of them is frozen (SIGSTOP: a VM pause,
a long GC, a network split) inside a transaction: the leader inside its fold transaction,
then a follower inside an upload, each for twice the lease's TTL. The others keep ingesting,
another server folds within the TTL (+ 2 s), the frozen one writes nothing once it wakes
up, every acknowledged row is counted once, and each notification is sent once.

On SQLite (one writer per file) each server appends to an event-log file of its own
(``--own-event-log``), so the servers' ingest goes on while the leader is frozen holding the
store's write lock, and the server taking over forks a new term of the store (a copy of its
last committed state, store/terms.py) instead of waiting for that lock.

The freeze is made by a hook the server processes load (``sitecustomize`` on PYTHONPATH):
a process stops itself (SIGSTOP) inside the transaction when the test drops a flag file
naming it. Figures are printed (``pytest -s``)."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.server_helpers import (
    Server,
    Stream,
    _caught_up,
    _holder,
    _logged,
    _suite_text,
    request,
    wait_for,
)
from watchkeeper.store import Store

TTL = 3.0

HOOK = textwrap.dedent("""
    import os
    import signal

    from watchkeeper.store import store as _store

    _FLAGS = os.environ["WK_CHAOS_FLAGS"]

    def _freeze_if_asked(where):
        try:
            os.remove(os.path.join(_FLAGS, f"{where}-{os.getpid()}"))
        except FileNotFoundError:
            return
        os.kill(os.getpid(), signal.SIGSTOP)  # inside the transaction

    _fence = _store.Store._fence

    def _fence_then_freeze(self, conn, lease, *, commit):
        _fence(self, conn, lease, commit=commit)
        if lease is not None and not commit:
            _freeze_if_asked("fold")

    _turn = _store.Store._append_turn

    def _turn_then_freeze(self, conn, model):
        _turn(self, conn, model)
        _freeze_if_asked("upload")

    _store.Store._fence = _fence_then_freeze
    _store.Store._append_turn = _turn_then_freeze

    from watchkeeper.store import logs as _logs  # a server's own event log (SQLite)

    _insert = _logs.EventLog._insert

    def _insert_then_freeze(conn, values):
        seq = _insert(conn, values)
        _freeze_if_asked("upload")
        return seq

    _logs.EventLog._insert = staticmethod(_insert_then_freeze)
""")


class BrokenStream(Stream):
    """A stream of batches mostly missing ``x``: an incident opens and stays open."""

    broken = True
    timeout = 60.0  # a post may wait out a frozen leader


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _rate(streams: list[Stream], seconds: float) -> float:
    """Rows acknowledged per second by these streams over the next ``seconds``."""
    before = sum(s.acked for s in streams)
    time.sleep(seconds)
    return (sum(s.acked for s in streams) - before) / seconds


def _watch(store: Store, servers: list[Server], frozen: Server, since: float,
           streams: list[Stream], seconds: float) -> tuple[float, float | None]:
    """Over the next ``seconds``: rows acknowledged per second by ``streams``, and how long
    after ``since`` another server than ``frozen`` held the fold lease (None: not yet)."""
    before, until = sum(s.acked for s in streams), time.monotonic() + seconds
    took = None
    while time.monotonic() < until:
        if took is None and _holder(store, servers) not in (None, frozen):
            took = time.monotonic() - since
        time.sleep(0.05)
    return (sum(s.acked for s in streams) - before) / seconds, took


def _freeze(server: Server, where: str, flags: Path) -> float:
    """Have ``server`` stop itself inside its next fold transaction or upload; returns when
    it did (time.monotonic())."""
    assert server.proc is not None
    (flags / f"{where}-{server.proc.pid}").touch()
    wait_for(lambda: _stopped(server.proc.pid), timeout=20, every=0.02)
    return time.monotonic()


@pytest.mark.slow
def test_a_frozen_leader_or_follower_stalls_neither_ingest_nor_takeover(
        store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = store_url.split(":", 1)[0]
    hook, flags = tmp_path / "hook", tmp_path / "flags"
    hook.mkdir()
    flags.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(  # the hook, and what was there
        filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("WK_CHAOS_FLAGS", str(flags))
    suite = tmp_path / "suite.yaml"
    suite.write_text(_suite_text())
    args = ("--store", store_url, "--suite", f"m={suite}", "--window", "1s", "--grace", "1s",
            "--lease-ttl", f"{TTL:g}s", "--notify-log")
    if backend == "sqlite":  # one writer per file: each server appends to a file of its own
        args += ("--own-event-log",)
    servers = [Server(tmp_path, *args).start() for _ in range(3)]
    store = Store(store_url)
    streams: dict[Server, Stream] = {}
    try:
        leader = servers[0]
        assert _holder(store, servers) is leader
        for i, s in enumerate(servers):
            streams[s] = BrokenStream(s, i + 1)
            streams[s].start()
        wait_for(lambda: store.watermark("m") > 0, timeout=20)
        normal = _rate(list(streams.values()), 3.0) / 3  # per server

        # 1. the leader freezes inside its fold transaction for 2 × TTL
        frozen_at = _freeze(leader, "fold", flags)
        watermark = store.watermark("m")
        others = [s for s in servers if s is not leader]
        rate, took = _watch(store, servers, leader, frozen_at,
                            [streams[s] for s in others], 2 * TTL)
        rate /= len(others)
        folded = store.watermark("m") - watermark  # by another server, while it is frozen
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: request(leader.url + "/healthz")[1]["folding"] is False, timeout=10)
        print(f"{backend}: normal {normal:.0f} rows/s per server; leader frozen in its fold "
              f"transaction: others {rate:.0f} rows/s per server, another takes over after "
              f"{took if took is None else round(took, 1)} s and folds {folded} batches "
              "before it wakes up")
        assert rate >= 0.5 * normal, (rate, normal)
        assert took is not None and took <= TTL + 2
        assert folded > 0

        # 2. a follower freezes inside an upload for 2 × TTL
        leader = _holder(store, servers)
        assert leader is not None
        follower = next(s for s in servers if s is not leader)
        frozen_at = _freeze(follower, "upload", flags)
        others = [s for s in servers if s is not follower]
        rate = _rate([streams[s] for s in others], 2 * TTL) / len(others)
        assert follower.proc is not None
        follower.proc.send_signal(signal.SIGCONT)
        print(f"{backend}: follower frozen in an upload: others {rate:.0f} rows/s per server")
        assert rate >= 0.5 * normal, (rate, normal)
        assert _holder(store, servers) is leader  # it kept folding
        time.sleep(2)

        acked = sum(s.stop() for s in streams.values())
        assert _caught_up(store) == acked == _logged(store)
        sent = Counter(line for s in servers for line in s.logs().splitlines()
                       if "[FIRING" in line or "[RESOLVED" in line)
        assert [line for line, n in sent.items() if n > 1] == []  # each sent once
        assert sum("[FIRING] m: missing_rate on x" in line for line in sent) == 1
        print(f"{backend}: {acked} rows acknowledged and counted once; "
              f"{sum(sent.values())} notifications, each sent once")
    finally:
        for s in servers:
            if s.proc is not None and s.proc.poll() is None:
                os.kill(s.proc.pid, signal.SIGCONT)
        for stream in streams.values():
            stream.halt.set()
        for s in servers:
            s.stop()
        store.close()
