"""The Notifier protocol, secret masking and a small JSON POST (raising DeliveryError)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from watchkeeper.errors import ConfigError, DeliveryError

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification

MASK = "***"
SECRET_HEADER = re.compile(r"auth|token|key|secret|cookie|pass|signature", re.I)


@runtime_checkable
class Notifier(Protocol):
    """Delivers a notification somewhere; raises on failure (the Dispatcher retries).

    Optional attributes the Dispatcher looks at: ``acknowledges`` (True: it is also sent
    ``acknowledge`` notifications, which others never get), ``secrets()`` (strings never
    to log) and ``accepts(notification)`` (False: not for this notifier, see routing)."""

    def send(self, notification: Notification) -> None: ...


def mask_url(url: str) -> str:
    """A URL safe to print: credentials, query, fragment and token-like path parts masked.

    >>> mask_url("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX")
    'https://hooks.slack.com/services/***'
    >>> mask_url("https://bob:pw@example.com:8443/api/v2/alerts?token=abc")
    'https://***@example.com:8443/api/v2/alerts?***'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    except ValueError:
        return MASK
    if parts.username or parts.password:
        netloc = f"{MASK}@{netloc}"
    hidden = set(_hidden_segments(url))
    path, out = parts.path.split("/"), list[str]()
    for i, segment in enumerate(path):
        if i in hidden:
            if not out or out[-1] != MASK:
                out.append(MASK)
        else:
            out.append(segment)
    return urlunsplit((parts.scheme, netloc, "/".join(out), MASK if parts.query else "",
                       MASK if parts.fragment else ""))


def _hidden_segments(url: str) -> list[int]:
    """Indexes of the path segments to hide: everything after the first one on chat-hook
    hosts (Slack, Discord, …), token-looking segments elsewhere."""
    parts = urlsplit(url)
    host, path = parts.hostname or "", parts.path.split("/")
    if host.endswith(("slack.com", "discord.com", "office.com")) or "hook" in host:
        return list(range(2, len(path)))
    return [i for i, s in enumerate(path) if _looks_secret(s)]


def _looks_secret(segment: str) -> bool:
    return len(segment) >= 20 or (len(segment) >= 8 and any(c.isdigit() for c in segment)
                                  and any(c.isalpha() for c in segment))


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***`` (longest first)."""
    for s in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(s, MASK)
    return text


def url_secrets(url: str) -> list[str]:
    """Parts of a URL never to print: the URL, its credentials, query and hidden path."""
    try:
        parts = urlsplit(url)
        path = parts.path.split("/")
        out = [url, parts.query, parts.fragment, parts.password or "", parts.username or ""]
        hidden = _hidden_segments(url)
    except ValueError:
        return [url]
    if hidden:
        out.append("/".join(path[hidden[0]:]))
        out += [path[i] for i in hidden]
    return [s for s in out if s]


def post_json(url: str, body: Any, headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> int:
    """POST ``body`` as JSON; returns the status. Errors name no URL (it may hold tokens)."""
    data = json.dumps(body, allow_nan=False, default=str).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "watchkeeper", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as e:
        permanent = 400 <= e.code < 500 and e.code not in (408, 425, 429)
        raise DeliveryError(f"HTTP {e.code} {e.reason}", permanent) from None
    except urllib.error.URLError as e:
        raise DeliveryError(f"connection failed: {e.reason}") from None
    except (TimeoutError, OSError) as e:
        raise DeliveryError(f"connection failed: {type(e).__name__}: {e}") from None


def read_secret(source: str, what: str) -> str:
    """A secret named by ``source``: ``env:NAME`` (an environment variable) or
    ``file:PATH`` (the file's text, stripped). Never the secret itself, so it appears in
    no command line or shell history; errors name the source, never the value.

    >>> import os
    >>> os.environ["WK_DOCTEST_KEY"] = "R0UT1NGKEY"
    >>> read_secret("env:WK_DOCTEST_KEY", "--pagerduty")
    'R0UT1NGKEY'
    >>> read_secret("R0UT1NGKEY", "--pagerduty")
    Traceback (most recent call last):
    ...
    watchkeeper.errors.ConfigError: --pagerduty: give env:VARIABLE or file:PATH (not the \
secret itself)
    """
    import os
    from pathlib import Path

    kind, sep, name = source.partition(":")
    if not sep or kind not in ("env", "file") or not name:
        raise ConfigError(f"{what}: give env:VARIABLE or file:PATH (not the secret itself)")
    if kind == "env":
        value = os.environ.get(name, "").strip()
        if not value:
            raise ConfigError(f"{what}: environment variable {name} is not set or empty")
        return value
    try:
        value = Path(name).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: cannot read {name} "
                          f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    if not value:
        raise ConfigError(f"{what}: {name} is empty")
    return value


class ChatWebhook:
    """A chat service's incoming webhook (its URL is the secret): POSTs ``message()`` of
    each notification as JSON, acknowledgements too."""

    acknowledges = True

    def __init__(self, webhook_url: str, timeout: float = 10.0) -> None:
        self.webhook_url = webhook_url
        self.timeout = timeout

    def message(self, notification: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, notification: Notification) -> None:
        post_json(self.webhook_url, self.message(notification), timeout=self.timeout)

    def secrets(self) -> list[str]:
        return url_secrets(self.webhook_url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self.webhook_url)!r})"
