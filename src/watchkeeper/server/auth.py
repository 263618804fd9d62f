"""Write, read and metrics tokens, compared in constant time; the dashboard's sessions;
failed authentications limited per client address.

A browser cannot send a bearer header when it navigates, so the dashboard's login form
trades a token for a session: a random id in a cookie (HttpOnly, SameSite=Strict), known
to the store by its hash (store/sessions.py), so that it expires there, ends at logout on
every server and ends when its token is changed. The cookie is accepted wherever a bearer
token is; a request that changes something (any method but GET and HEAD) and is
authenticated by the cookie must also carry the header ``X-Watchkeeper: 1``, which
another site cannot make a browser send.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from watchkeeper.errors import Forbidden, TooManyAttempts, Unauthorized

COOKIE = "watchkeeper_session"
CSRF_HEADER = "x-watchkeeper"
SAFE_METHODS = ("GET", "HEAD")
#: what each need is met by: the write token does everything, the metrics token only
#: lets Prometheus scrape /metrics
MEETS = {"write": ("write",), "read": ("write", "read"), "metrics": ("write", "read", "metrics")}
#: what a session cookie stands for: its access ("read" or "write"), or None
SessionLookup = Callable[[str], "str | None"]


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, or None."""
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


@dataclass(frozen=True)
class Tokens:
    """``write`` may ingest and deploy (and read); ``read`` may only query; ``metrics``
    may only scrape /metrics. No write or read token means authentication is off (for
    local use on a loopback address)."""

    write: str | None = None
    read: str | None = None
    metrics: str | None = None

    @property
    def enabled(self) -> bool:
        return self.write is not None or self.read is not None

    def access(self, token: str) -> str | None:
        """What a token allows: "write", "read", "metrics" or None (not a token of this
        server)."""
        given = token.encode()
        found = None
        for name in ("metrics", "read", "write"):  # every comparison made, in constant time
            mine = getattr(self, name)
            if mine is not None and hmac.compare_digest(given, mine.encode()):
                found = name
        return found

    def is_guess(self, header: str | None) -> bool:
        """A bearer token that is none of this server's (a failed authentication)."""
        token = bearer(header)
        return self.enabled and token is not None and self.access(token) is None

    def check(self, header: str | None, need: str, cookie: str | None = None,
              sessions: SessionLookup | None = None) -> int:
        """HTTP status for an Authorization header, else a session cookie looked up by
        ``sessions``: 200, 401 (none) or 403 (not allowed)."""
        if not self.enabled:
            return 200
        token = bearer(header)
        if token is not None:
            have = self.access(token)
        elif not header and cookie:
            have = sessions(cookie) if sessions is not None else None
        else:
            return 401
        return 200 if have in MEETS[need] else 403

    def check_request(self, headers: Mapping[str, str], cookies: Mapping[str, str],
                      method: str, need: str, sessions: SessionLookup | None = None
                      ) -> tuple[int, str]:
        """Status and reason for a request: bearer header first, else the session cookie,
        which needs the X-Watchkeeper header on anything but GET and HEAD."""
        header, cookie = headers.get("authorization"), cookies.get(COOKIE)
        if not self.enabled and method.upper() not in SAFE_METHODS and not same_origin(headers):
            # no tokens: any web page the operator visits could post to a local server
            return 403, "cross-site request refused (the server has no tokens)"
        status = self.check(header, need, cookie, sessions)
        if status == 401:
            return 401, "missing bearer token"
        if status == 200 and self.enabled and not header and method.upper() not in \
                SAFE_METHODS and headers.get(CSRF_HEADER) != "1":
            return 403, "a request authenticated by cookie must send the header X-Watchkeeper: 1"
        if status == 403:
            if not header:
                return 403, f"this session may not {need} (expired or signed out?)"
            return 403, f"this token may not {need}"
        return 200, ""


def authenticate(tokens: Tokens, limiter: LoginLimiter, address: str | None,
                 headers: Mapping[str, str], cookies: Mapping[str, str], method: str,
                 need: str, sessions: SessionLookup | None = None) -> None:
    """Let a request through if it may ``need`` (a bearer token, or a session cookie looked
    up by ``sessions``); else raise Unauthorized (401), Forbidden (403), or TooManyAttempts
    (429) for an address that sent too many wrong tokens lately, whatever its token now.
    A wrong bearer token is counted against ``address``."""
    header = headers.get("authorization")
    if tokens.enabled and bearer(header) is not None:
        wait = limiter.retry_after(address)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyAttempts(f"too many wrong tokens from your address: try again in "
                                  f"{seconds} s", seconds)
        if tokens.is_guess(header):
            limiter.failed(address)
    status, reason = tokens.check_request(headers, cookies, method, need, sessions)
    if status == 401:
        raise Unauthorized(reason)
    if status == 403:
        raise Forbidden(reason)


def same_origin(headers: Mapping[str, str]) -> bool:
    """Not a browser request from another site: browsers send Origin with cross-site posts
    (scripts and the SDK send none); behind a proxy, its Host or X-Forwarded-Host must name
    the public address."""
    origin = headers.get("origin")
    hosts = {headers.get("host"), headers.get("x-forwarded-host")} - {None}
    return origin is None or urlsplit(origin).netloc in hosts


class LoginLimiter:
    """Failed authentications (dashboard logins, bearer tokens that are none of the
    server's) per client address: after ``failures`` of them within ``window`` seconds, an
    address is refused (the server answers 429 with Retry-After, without looking at the
    token) until the oldest of those failures is ``window`` seconds old.

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
