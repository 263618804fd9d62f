"""Dashboard sessions and the keys servers share, in the store (so every server on it
sees a session opened, or closed, on any other).

A session is known by the SHA-256 of its id, never the id (which only the browser holds),
and expires by the database's clock. It remembers an HMAC of the token it was opened with,
keyed by its id, so that it ends as soon as that token is no longer the server's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa

from watchkeeper.store import tables as db
from watchkeeper.store.store import Store

ACCESS = ("read", "write")


def _id_hash(session: str) -> str:
    return hashlib.sha256(session.encode("utf-8", "replace")).hexdigest()


def _token_mac(session: str, token: str) -> str:
    return hmac.new(session.encode("utf-8", "replace"), token.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def open_session(store: Store, access: str, token: str, seconds: float) -> str:
    """A new session id for ``access`` ("read" or "write") opened with ``token``, valid
    ``seconds``; expired sessions are deleted on the way."""
    if access not in ACCESS:
        raise ValueError(f"access is one of {ACCESS}, not {access!r}")
    session = secrets.token_urlsafe(32)
    table = db.sessions
    with store._transaction(write=True) as conn:
        now = store._now(conn)
        conn.execute(sa.delete(table).where(table.c.expires_at <= now))
        conn.execute(sa.insert(table).values(
            id_hash=_id_hash(session), access=access, token_mac=_token_mac(session, token),
            created_at=now, expires_at=now + seconds))
    return session


def session_access(store: Store, session: str, tokens: dict[str, str | None]) -> str | None:
    """What an unexpired session allows ("read" or "write"), provided the token it was
    opened with is still ``tokens[access]``; else None."""
    table = db.sessions
    with store._transaction() as conn:
        now = store._now(conn)
        row = conn.execute(sa.select(table.c.access, table.c.token_mac).where(
            table.c.id_hash == _id_hash(session), table.c.expires_at > now)).first()
    if row is None:
        return None
    token = tokens.get(row.access)
    if token is None or not hmac.compare_digest(row.token_mac, _token_mac(session, token)):
        return None
    return str(row.access)


def close_session(store: Store, session: str) -> bool:
    """End a session now (logout); whether it existed."""
    table = db.sessions
    with store._transaction(write=True) as conn:
        return conn.execute(sa.delete(table).where(
            table.c.id_hash == _id_hash(session))).rowcount > 0


def shared_key(store: Store, name: str) -> bytes:
    """A random 32-byte key every server on the store shares, made on first use."""
    table = db.server_keys
    with store._transaction(write=True) as conn:
        conn.execute(store._insert(table).values(name=name, value=secrets.token_bytes(32))
                     .on_conflict_do_nothing())
        return bytes(conn.execute(sa.select(table.c.value).where(table.c.name == name))
                     .scalar_one())
