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
import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
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


class LoginLimiter:
    """Failed logins per client address: after ``failures`` of them within ``window``
    seconds, an address is refused (the server answers 429 with Retry-After, without looking
    at the token) until the oldest of those failures is ``window`` seconds old.

    Successful logins are not counted, nor do they clear the count (a read token must not
    buy more guesses at the write token). IPv6 clients count per /64, the block one client
    usually holds. At most ``capacity`` addresses are tracked: beyond that, the one whose
    last failure is the oldest is forgotten, and counted in ``forgotten``. ``failures`` 0
    turns the limit off.

    >>> now = [0.0]
    >>> limiter = LoginLimiter(failures=2, window=60, clock=lambda: now[0])
    >>> limiter.failed("10.0.0.1")
    >>> limiter.retry_after("10.0.0.1")
    0.0
    >>> limiter.failed("10.0.0.1")
    >>> limiter.retry_after("10.0.0.1"), limiter.retry_after("10.0.0.2")
    (60.0, 0.0)
    >>> now[0] = 60.0
    >>> limiter.retry_after("10.0.0.1")
    0.0
    """

    def __init__(self, failures: int = 5, window: float = 60.0, capacity: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 0 or window <= 0 or capacity < 1:
            raise ValueError("failures ≥ 0, window > 0 and capacity ≥ 1 are needed")
        self.failures = failures
        self.window = float(window)
        self.capacity = capacity
        self.forgotten = 0  # addresses dropped to stay within capacity
        self._clock = clock
        #: per address, its latest failures (at most ``failures``), least recent first
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str | None) -> float:
        """Seconds until ``address`` may try again; 0 if it may now."""
        if not self.failures:
            return 0.0
        with self._lock:
            now = self._clock()
            self._expire(now)
            times = self._seen.get(_client_key(address))
            if times is None or len(times) < self.failures:
                return 0.0
            return max(0.0, times[0] + self.window - now)

    def failed(self, address: str | None) -> None:
        """Count a failed login from ``address``."""
        if not self.failures:
            return
        with self._lock:
            now = self._clock()
            self._expire(now)
            key = _client_key(address)
            times = self._seen.pop(key, None) or deque(maxlen=self.failures)
            times.append(now)
            self._seen[key] = times
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
                self.forgotten += 1

    def state(self) -> tuple[int, int]:
        """Addresses tracked, and how many of them are refused now."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            blocked = sum(1 for t in self._seen.values()
                          if len(t) >= self.failures and now - t[0] < self.window)
            return len(self._seen), blocked

    def _expire(self, now: float) -> None:
        """Forget addresses whose last failure is out of the window (they come first)."""
        while self._seen:
            times = next(iter(self._seen.values()))
            if now - times[-1] < self.window:
                return
            self._seen.popitem(last=False)


def _client_key(address: str | None) -> str:
    """What a client is counted as: its IPv4 address, or its IPv6 /64."""
    if not address:
        return "?"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
