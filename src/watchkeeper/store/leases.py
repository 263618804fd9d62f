"""The fold lease: which of several server processes on a store folds its event log."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from watchkeeper.errors import LeaseLost, StoreError
from watchkeeper.store import tables as db
from watchkeeper.store.base import TERM, StoreBase, check_lease_args, log
from watchkeeper.store.records import Lease


class LeaseStore(StoreBase):
    """Leases by scope, taken, renewed, released and checked by the database's clock."""

    def acquire_lease(self, scope: str, owner: str, ttl: float, *,
                      dead: str | None = None) -> Lease:
        """Take the lease on ``scope`` for ``owner`` for ``ttl`` seconds if it is free (never
        taken, expired or released), already ``owner``'s (a renewal) or held by ``dead`` (an
        owner known to have died); returns the lease as it stands, so ``lease.owner ==
        owner`` says whether ``owner`` holds it now. Atomic: of several owners trying at
        once, one gets it. Taking it from another owner adds one to its epoch; a renewal
        keeps the epoch, even past the expiry (nobody took it in between)."""
        check_lease_args(scope, owner)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 1e9:
            raise StoreError(f"ttl must be a positive number of seconds, got {ttl!r}")
        if self._terms is None:
            return self._acquire(scope, owner, ttl, dead)
        # SQLite file: a lease held by another, live, is only read (no write lock needed);
        # one to take waits for the write lock a short while, then forks a term (terms.py)
        with self._transaction() as conn:
            term = conn.info[TERM]
            row = conn.execute(sa.select(db.fold_leases).where(
                db.fold_leases.c.scope == scope)).mappings().first()
            lease = None if row is None else Lease(**row, now=self._now(conn))
        if lease is not None and lease.owner not in (owner, dead) and not lease.expired:
            return lease
        renewal = lease is not None and lease.owner == owner
        try:  # a renewal waits for its turn as ever; a takeover a short while
            return self._acquire(scope, owner, ttl, dead,
                                 busy=None if renewal else min(1.0, ttl / 4))
        except StoreError as e:
            if renewal or "locked" not in str(e):
                raise
        if self._terms.fork(term, lambda copy: _take_in_copy(copy, scope, owner, ttl, dead)):
            log.warning("took the %r lease over in a new term of %s: the write lock of the "
                        "store's file was held (by a process frozen inside a write?)",
                        scope, self.url)
        taken = self.lease(scope)
        assert taken is not None  # (a copy of the store had it)
        return taken

    def _acquire(self, scope: str, owner: str, ttl: float, dead: str | None,
                 busy: float | None = None) -> Lease:
        table = db.fold_leases
        mine = table.c.owner == owner
        with self._transaction(write=True, busy=busy) as conn:
            now = self._now(conn)
            free = [mine, table.c.expires_at <= now]
            if dead is not None and dead != owner:
                free.append(table.c.owner == dead)
            taken = conn.execute(
                sa.update(table)
                .where(table.c.scope == scope, sa.or_(*free))
                .values(
                    owner=owner,
                    expires_at=now + ttl,
                    epoch=sa.case((mine, table.c.epoch), else_=table.c.epoch + 1),
                    acquired_at=sa.case((mine, table.c.acquired_at), else_=now),
                )
            ).rowcount
            if not taken:  # the first time: whoever inserts the row holds the lease
                conn.execute(
                    self._insert(table)
                    .values(scope=scope, owner=owner, epoch=1, acquired_at=now,
                            expires_at=now + ttl)
                    .on_conflict_do_nothing()
                )
            row = conn.execute(sa.select(table).where(table.c.scope == scope)).mappings().one()
        return Lease(**row, now=now)

    def release_lease(self, scope: str, owner: str) -> bool:
        """Give up ``owner``'s lease on ``scope`` now (a clean stop), so that another owner
        can take it at once; False if ``owner`` did not hold it."""
        check_lease_args(scope, owner)
        table = db.fold_leases
        with self._transaction(write=True) as conn:
            now = self._now(conn)
            released = conn.execute(
                sa.update(table)
                .where(table.c.scope == scope, table.c.owner == owner, table.c.expires_at > now)
                .values(expires_at=now)
            ).rowcount
        return bool(released)

    def check_lease(self, lease: Lease) -> None:
        """LeaseLost unless ``lease`` is still held, by its owner in its epoch, and has not
        run out by the database's clock (before an action the store cannot fence, such as
        sending a notification)."""
        table = db.fold_leases
        query = sa.select(table.c.scope).where(
            table.c.scope == lease.scope, table.c.owner == lease.owner,
            table.c.epoch == lease.epoch, table.c.expires_at > self._clock())
        with self._transaction() as conn:
            if conn.scalar(query) is None:
                raise LeaseLost(f"the {lease.scope!r} lease of {lease.owner} (epoch "
                                f"{lease.epoch}) has run out or been taken over")

    def lease(self, scope: str) -> Lease | None:
        """The lease on ``scope`` as it stands (expired or not), or None if never taken."""
        table = db.fold_leases
        with self._transaction() as conn:
            now = self._now(conn)
            row = conn.execute(sa.select(table).where(table.c.scope == scope)).mappings().first()
        return None if row is None else Lease(**row, now=now)


def _take_in_copy(copy: sqlite3.Connection, scope: str, owner: str, ttl: float,
                  dead: str | None) -> bool:
    """Take the lease in a copy of a SQLite store (a new term, terms.py) as
    :meth:`Store.acquire_lease` would; whether it was free (expired, released, never taken
    or ``dead``'s) there."""
    now = copy.execute("SELECT (julianday('now') - 2440587.5) * 86400.0").fetchone()[0]
    row = copy.execute("SELECT owner, epoch, expires_at FROM fold_leases WHERE scope = ?",
                       (scope,)).fetchone()
    if row is None:
        copy.execute("INSERT INTO fold_leases (scope, owner, epoch, acquired_at, expires_at) "
                     "VALUES (?, ?, 1, ?, ?)", (scope, owner, now, now + ttl))
        return True
    holder, epoch, expires_at = row
    if holder != owner and holder != dead and expires_at > now:
        return False
    copy.execute("UPDATE fold_leases SET owner = ?, epoch = ?, acquired_at = ?, expires_at = ? "
                 "WHERE scope = ?", (owner, epoch + (holder != owner), now, now + ttl, scope))
    return True

