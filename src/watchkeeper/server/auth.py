"""Write and read tokens, compared in constant time; the dashboard's session cookie.

A browser cannot send a bearer header when it navigates, so the dashboard's login form
trades a token for a cookie (HttpOnly, SameSite=Strict) holding an HMAC of the token, not
the token itself. The cookie is accepted wherever a bearer token is; a request that
changes something (any method but GET and HEAD) and is authenticated by the cookie must
also carry the header ``X-Watchkeeper: 1``, which another site cannot make a browser send.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

COOKIE = "watchkeeper_session"
CSRF_HEADER = "x-watchkeeper"
SAFE_METHODS = ("GET", "HEAD")


def session_of(token: str) -> str:
    """The cookie value standing for a token (changing the token ends its sessions).

    >>> session_of("s3cret") == session_of("s3cret") != session_of("other")
    True
    """
    return hmac.new(token.encode(), b"watchkeeper dashboard session", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Tokens:
    """``write`` may ingest and deploy (and read); ``read`` may only query.
    Both None means authentication is off (for local use on a loopback address)."""

    write: str | None = None
    read: str | None = None

    @property
    def enabled(self) -> bool:
        return self.write is not None or self.read is not None

    def access(self, token: str) -> str | None:
        """What a token allows: "write", "read" or None (not a token of this server)."""
        given = token.encode()
        is_write = self.write is not None and hmac.compare_digest(given, self.write.encode())
        is_read = self.read is not None and hmac.compare_digest(given, self.read.encode())
        return "write" if is_write else "read" if is_read else None

    def _session_access(self, cookie: str) -> str | None:
        given = cookie.encode()
        is_write = self.write is not None and hmac.compare_digest(
            given, session_of(self.write).encode())
        is_read = self.read is not None and hmac.compare_digest(
            given, session_of(self.read).encode())
        return "write" if is_write else "read" if is_read else None

    def check(self, header: str | None, need: str, cookie: str | None = None) -> int:
        """HTTP status for an Authorization header, else a session cookie: 200, 401 (none)
        or 403 (not allowed)."""
        if not self.enabled:
            return 200
        if header and header.lower().startswith("bearer "):
            have = self.access(header[7:].strip())
        elif not header and cookie:
            have = self._session_access(cookie)
        else:
            return 401
        if need == "write":
            return 200 if have == "write" else 403
        return 200 if have is not None else 403

    def check_request(self, headers: Mapping[str, str], cookies: Mapping[str, str],
                      method: str, need: str) -> tuple[int, str]:
        """Status and reason for a request: bearer header first, else the session cookie,
        which needs the X-Watchkeeper header on anything but GET and HEAD."""
        header, cookie = headers.get("authorization"), cookies.get(COOKIE)
        if not self.enabled and method.upper() not in SAFE_METHODS and not same_origin(headers):
            # no tokens: any web page the operator visits could post to a local server
            return 403, "cross-site request refused (the server has no tokens)"
        status = self.check(header, need, cookie)
        if status == 401:
            return 401, "missing bearer token"
        if status == 200 and self.enabled and not header and method.upper() not in \
                SAFE_METHODS and headers.get(CSRF_HEADER) != "1":
            return 403, "a request authenticated by cookie must send the header X-Watchkeeper: 1"
        if status == 403:
            return 403, f"this token may not {need}"
        return 200, ""


def same_origin(headers: Mapping[str, str]) -> bool:
    """Not a browser request from another site: browsers send Origin with cross-site posts
    (scripts and the SDK send none); behind a proxy, its Host or X-Forwarded-Host must name
    the public address."""
    origin = headers.get("origin")
    hosts = {headers.get("host"), headers.get("x-forwarded-host")} - {None}
    return origin is None or urlsplit(origin).netloc in hosts
