"""Terms of a SQLite store file: a takeover that never waits for a frozen writer.

A SQLite file has one writer at a time, and a process frozen (SIGSTOP, a VM pause) inside
a write transaction holds the file's write lock, a POSIX lock nobody can break, until it
wakes up. So when a server takes the fold lease over while the file's write lock stays busy
(:meth:`Store.acquire_lease`: the lease has run out and its write waited ``BUSY_MS`` in
vain), it does not wait: it *forks* a new term of the store, a copy of the file's last
committed state (WAL: readers are never blocked by the writer) in which it holds the lease,
and every process then reads and writes that copy. The frozen process's transaction, if it
ever commits, lands in the old term, which nobody reads any more.

Layout, next to the store's file ``STORE`` (term 0)::

    STORE-terms/<n>.claim   who forks term n (created with O_EXCL: one forker wins; the
                            number of a forker that died or froze while copying is skipped)
    STORE-terms/<n>.seed    {"from": term it copies, "written": that term's write count}
    STORE-terms/<n>.db      term n, once it is complete (renamed into place last)

The current term is the highest one claimed; a process waits (bounded) while it is being
copied, so nobody reads or writes the old term once a new one is claimed. Every write
transaction adds one to the file's write count (``PRAGMA user_version``, copied with the
file); a write committed to a term that is no longer current is kept only if the count it
wrote is at most the one the next term was copied at (:meth:`Terms.kept`), else the writer
is told nothing was saved (its commit landed in the old term after the copy). Terms older
than the one before the current are deleted at a fork (the frozen process may still hold the
one before). The store's own file is never deleted (it stays as it was at the first fork).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from watchkeeper.errors import StoreError
from watchkeeper.store.engine import open_existing

#: The write count is the header's 32-bit user_version: it wraps around, and is compared
#: as serial numbers (RFC 1982; only a few writes ever lie between two compared counts).
COUNTS = 2**32
#: Seconds a process waits for a claimed term to be copied before it gives up (StoreError).
READY_WAIT = 60.0
#: Seconds after which a claim whose term is not ready is taken as abandoned: its forker
#: touches it every TOUCH seconds while it copies, so it was frozen (one that died is known
#: at once); the term before stays current and the next takeover skips its number.
ABANDONED = 10.0
TOUCH = 1.0


class Terms:
    """The terms of one SQLite store file, as this process sees them."""

    def __init__(self, main: Path, engine: Engine) -> None:
        self.main = main
        self.dir = main.with_name(main.name + "-terms")
        self._engines: dict[int, Engine] = {0: engine}
        self._lock = threading.Lock()

    def path(self, term: int) -> Path:
        return self.main if term == 0 else self.dir / f"{term}.db"

    def current(self) -> int:
        """The current term: the highest claimed (waiting while it is being copied)."""
        deadline = time.monotonic() + READY_WAIT
        while True:
            try:
                names = os.listdir(self.dir)
            except FileNotFoundError:
                return 0
            ready = {0, *_numbers(names, ".db")}
            top = max(ready)
            waiting = [n for n in _numbers(names, ".claim")
                       if n > top and not self._abandoned(n)]
            if not waiting:
                return top
            if time.monotonic() > deadline:
                raise StoreError(f"{self.dir}: term {max(waiting)} of the store is claimed "
                                 f"but not ready after {READY_WAIT:.0f} s")
            time.sleep(0.01)

    def engine(self, term: int) -> Engine:
        """The engine of a term (opened on first use; older terms' are closed)."""
        with self._lock:
            engine = self._engines.get(term)
            if engine is None:
                engine = self._engines[term] = open_existing(self.path(term))
                for old in [t for t in self._engines if 0 < t < term]:
                    self._engines.pop(old).dispose()
            return engine

    def kept(self, term: int, written: int) -> bool:
        """Whether a write that committed write count ``written`` to ``term`` is in the
        current term (always, while ``term`` is current)."""
        if self.current() == term:
            return True
        try:
            later = min(n for n in _numbers(os.listdir(self.dir), ".db") if n > term)
            seed = json.loads((self.dir / f"{later}.seed").read_text())
        except (ValueError, OSError):
            return False
        if seed.get("from") != term or not isinstance(seed.get("written"), int):
            return False
        return (seed["written"] - written) % COUNTS < COUNTS // 2  # written ≤ seed's

    def fork(self, term: int, take: Callable[[sqlite3.Connection], bool]) -> bool:
        """Fork term ``term + 1`` from ``term``'s last committed state, if nobody claimed
        it yet: ``take`` changes the copy (takes the lease in it) and says whether to go
        on. Whether this process made the new term current."""
        n = term + 1
        self.dir.mkdir(exist_ok=True)
        while True:
            claim = self.dir / f"{n}.claim"
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                # its forker died while copying: its number is skipped, never reused (two
                # processes removing and claiming it again could both think it theirs)
                if self._abandoned(n) and not self.path(n).exists():
                    n += 1
                    continue
                return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        tmp = self.dir / f"{n}.db.tmp"
        copying = threading.Event()
        threading.Thread(target=_touch, args=(claim, copying), daemon=True,
                         name="watchkeeper-term-claim").start()
        try:
            with contextlib.closing(sqlite3.connect(self.path(term))) as source, \
                    contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as copy:
                source.backup(copy)  # one step: a consistent snapshot of what is committed
                copy.execute("PRAGMA journal_mode = DELETE")  # one file, renamed below
                written = int(copy.execute("PRAGMA user_version").fetchone()[0]) % COUNTS
                copy.execute("BEGIN IMMEDIATE")
                if not take(copy):
                    copy.execute("ROLLBACK")
                    raise _NotTaken
                copy.execute("COMMIT")
            (self.dir / f"{n}.seed").write_text(json.dumps({"from": term, "written": written}))
            os.replace(tmp, self.path(n))
        except BaseException as e:
            for path in (tmp, self.dir / f"{n}.seed", claim):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if isinstance(e, _NotTaken):
                return False
            if isinstance(e, sqlite3.Error | OSError):
                raise StoreError(f"{self.dir}: cannot fork term {n} of the store: {e}") from e
            raise
        finally:
            copying.set()
        self._drop_before(term)
        return True

    def forget(self) -> None:
        """In a child process after fork(): never reuse the parent's connections."""
        with self._lock:
            for engine in self._engines.values():
                engine.dispose(close=False)

    def close(self) -> None:
        with self._lock:
            engines = [e for t, e in self._engines.items() if t > 0]
            self._engines = {0: self._engines[0]}
        for engine in engines:
            engine.dispose()

    def _abandoned(self, n: int) -> bool:
        """Whether the claim of term ``n`` was given up: its forker is a process of this
        host that is gone (a SQLite file has its writers on one host), or it has not touched
        the claim for ABANDONED seconds (frozen while copying, say)."""
        claim = self.dir / f"{n}.claim"
        with contextlib.suppress(OSError, ValueError):
            if not _alive(int(claim.read_text() or "0")):
                return True
        with contextlib.suppress(OSError):
            return time.time() - claim.stat().st_mtime > ABANDONED
        return False  # gone meanwhile: looked at again on the next turn

    def _drop_before(self, term: int) -> None:
        """Delete the terms before ``term`` (never the store's own file): nobody reads
        them, and only a process frozen for two takeovers could still write one."""
        for name in os.listdir(self.dir):
            number = name.split(".", 1)[0]
            if number.isdigit() and 0 < int(number) < term:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).unlink()


def _touch(claim: Path, done: threading.Event) -> None:
    """While a term is copied: the claim's time, renewed (a large store takes a while)."""
    while not done.wait(TOUCH):
        with contextlib.suppress(OSError):
            os.utime(claim)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (0: not known yet, taken as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def next_count(user_version: int) -> int:
    """The write count after one more write, from ``PRAGMA user_version`` (signed)."""
    return (user_version + 1) % COUNTS


def as_pragma(count: int) -> int:
    """A write count as ``PRAGMA user_version`` takes it (a signed 32-bit integer)."""
    return count - COUNTS if count >= COUNTS // 2 else count


class _NotTaken(Exception):
    """The copy showed the lease held by a live owner after all: no fork."""


def _numbers(names: list[str], suffix: str) -> list[int]:
    return [int(name.removesuffix(suffix)) for name in names
            if name.endswith(suffix) and name.removesuffix(suffix).isdigit()]
