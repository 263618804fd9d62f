"""The fold lease: which of the servers sharing a store folds its event log.

One lease for the whole store (one row, scope "fold"), taken atomically, renewed every
third of its TTL by a thread of its own and given back on a clean stop. When its holder
dies, another server takes it as soon as it expires (within the TTL of the holder's last
renewal; at its next try, within a third of the TTL, if the holder was a process of the
same host that is gone). Every write of the fold is fenced by the lease's owner and epoch
in its own transaction (:class:`Fenced`), so a holder that stalled past its TTL and lost
the lease writes nothing more.

How long the lease holds is measured on this process's ``clock`` (``time.monotonic`` unless
a test passes another), from the moment a renewal was sent.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from watchkeeper.errors import LeaseLost, StoreError
from watchkeeper.store import LabelRecords, Lease, Store, WindowRecord

log = logging.getLogger("watchkeeper.server")
#: The fold lease's scope: one server folds every model of a store.
SCOPE = "fold"


def owner_id() -> str:
    """Who a server process is, in the fold lease: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class FoldLease:
    """This process's hold on the store's fold lease (``ttl`` None: it folds without one,
    the only process folding the store), and the epoch the fold's state in memory was
    built under. ``wake`` is called whenever the lease is taken or lost."""

    def __init__(self, store: Store, ttl: float | None, owner: str, counters: Counter[str],
                 *, clock: Callable[[], float] = time.monotonic,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.ttl = ttl
        self.owner = owner
        self.counters = counters
        self.clock = clock
        self._wake = wake
        #: the lease as last taken or renewed, and the ``clock()`` until which it holds
        self.holding: tuple[Lease | None, float] = (None, 0.0)
        #: epoch of the lease the fold's state in memory was built under (None: not folding)
        self.epoch: int | None = None

    @property
    def folding(self) -> bool:
        """Whether this process folds the event log (holds the lease, or needs none)."""
        return self.ttl is None or (self.held() is not None and self.epoch is not None)

    def held(self) -> Lease | None:
        """The lease this process holds now, or None (always None without leases)."""
        lease, until = self.holding
        return lease if lease is not None and self.clock() < until else None

    def fence(self) -> Lease | None:
        """The lease that fences the fold's writes (None without leases); LeaseLost if the
        state in memory is not the one built under the lease held now."""
        if self.ttl is None:
            return None
        lease = self.held()
        if lease is None or lease.epoch != self.epoch:
            raise LeaseLost(f"{self.owner} no longer holds the fold lease (epoch {self.epoch})")
        return lease

    def renew(self) -> float:
        """Take or renew the fold lease; returns how long to wait before trying again."""
        if self.ttl is None:
            raise ValueError("no fold lease to renew: this hub folds without one")
        ttl = self.ttl
        sent = self.clock()
        held, until = self.holding
        if held is not None and sent >= until:  # it lapsed: this process stalled (frozen,
            # paused) or could not reach the store; another server takes it first
            log.warning("the fold lease ran out before it was renewed: leaving it to "
                        "another server for a while")
            self.holding = (None, 0.0)
            self._wake()
            return ttl / 2
        try:
            lease = self.store.acquire_lease(SCOPE, self.owner, ttl)
            if lease.owner != self.owner and not lease.expired and dead(lease.owner):
                log.info("the fold lease's holder %s is gone: taking over", lease.owner)
                lease = self.store.acquire_lease(SCOPE, self.owner, ttl, dead=lease.owner)
        except StoreError as exc:  # the lease runs on until its deadline, then lapses
            self.counters["lease_errors"] += 1
            log.warning("cannot renew the fold lease: %s", exc)
            return min(1.0, ttl / 3)
        if lease.owner == self.owner:
            previous = self.holding[0]
            taken = previous is None or previous.epoch != lease.epoch
            if taken:  # counted before it shows: a scrape never sees it held and not taken
                self.counters["lease_taken"] += 1
            # the lease ran `remaining` seconds from a moment after `sent`
            self.holding = (lease, sent + lease.remaining)
            if taken:
                log.info("took the fold lease (epoch %d)", lease.epoch)
                self._wake()
            return ttl / 3
        if self.holding[0] is not None:
            log.warning("the fold lease went to %s", lease.owner)
            self.holding = (None, 0.0)
            self._wake()
        # someone else folds: try again as soon as their lease may have run out
        return max(0.05, min(ttl / 3, lease.remaining + 0.05))

    def keep(self, stop: threading.Event, wait: float) -> None:
        """Renew the lease until ``stop`` is set (the lease thread's loop)."""
        while not stop.wait(wait):
            wait = self.renew()

    def release(self) -> None:
        """Give the lease back (a clean stop), so that another server may take over at once;
        a step still busy writes nothing more."""
        if self.ttl is None or self.holding[0] is None:
            return
        self.holding = (None, 0.0)
        try:
            self.store.release_lease(SCOPE, self.owner)
        except StoreError as exc:
            log.warning("cannot release the fold lease: %s", exc)


class Fenced:
    """The store as the fold writes to it: windows, watermark and findings are fenced by
    the fold lease (the OnlineMonitors save through this)."""

    def __init__(self, store: Store, fence: Callable[[], Lease | None]) -> None:
        self._store = store
        self._fence = fence

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def save_windows(self, model: str, windows: list[WindowRecord],
                     watermark: int | None = None, labels: LabelRecords | None = None) -> None:
        self._store.save_windows(model, windows, watermark, lease=self._fence(), labels=labels)

    def save_findings(self, model: str, window_start: datetime,
                      findings: list[dict[str, Any]]) -> None:
        self._store.save_findings(model, window_start, findings, lease=self._fence())


def dead(owner: str) -> bool:
    """Whether a lease owner is a process of this host that is gone (a server restarted
    after kill -9 takes over at once instead of waiting for the lease to run out). Only a
    certainty counts: another host, this process, or a pid that exists are not dead."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (owned by someone else)
        return False
    try:  # a zombie (killed, not reaped yet) is gone too
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
