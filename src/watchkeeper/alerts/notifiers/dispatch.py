"""Dispatcher: every notification to every notifier, with retries, never raising, logged."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.alerts.notifiers.base import Notifier, redact
from watchkeeper.errors import DeliveryError

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification

log = logging.getLogger("watchkeeper.alerts")


@dataclass
class Delivery:
    """What happened to one notification at one notifier."""

    time: str
    incident: str
    model: str
    kind: str
    status: str
    window: str
    notifier: str
    outcome: str  # "sent" or "failed"
    attempts: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Dispatcher:
    """Sends notifications to notifiers: up to ``1 + retries`` attempts each, waiting
    ``backoff``, ``2·backoff``, ``4·backoff``… seconds between them (permanent errors such
    as HTTP 4xx are not retried). Never raises; each outcome is appended to ``log_path``
    as a JSON line. Secrets of the notifiers (tokens in URLs, passwords, auth headers)
    never appear in the log.

    >>> import io
    >>> from watchkeeper.alerts.notifiers.log import LogNotifier
    >>> Dispatcher([LogNotifier(io.StringIO())], retries=2)
    Dispatcher([LogNotifier(stream=<_io.StringIO>)], retries=2, backoff=0.5)
    """

    def __init__(self, notifiers: Iterable[Notifier], retries: int = 3, backoff: float = 0.5,
                 log_path: str | Path | None = None, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.notifiers = list(notifiers)
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.log_path = None if log_path is None else Path(log_path)
        self.sleep = sleep
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> list[Delivery]:
        """Deliver one notification to every notifier that takes it (see :func:`takes`);
        one Delivery per notifier."""
        return [self._deliver(notifier, notification) for notifier in self.notifiers
                if takes(notifier, notification)]

    def send_all(self, notifications: Iterable[Notification]) -> list[Delivery]:
        return [d for n in notifications for d in self.send(n)]

    def _deliver(self, notifier: Notifier, n: Notification) -> Delivery:
        secrets = _secrets(notifier)
        error: str | None = None
        attempts = 0
        for attempt in range(self.retries + 1):
            attempts = attempt + 1
            try:
                notifier.send(n)
                error = None
                break
            except Exception as e:  # a notifier must never take the caller down
                error = redact(f"{type(e).__name__}: {e}" if not isinstance(e, DeliveryError)
                               else str(e), secrets)
                if getattr(e, "permanent", False) or attempt == self.retries:
                    break
                self.sleep(self.backoff * 2 ** attempt)
        delivery = Delivery(
            time=datetime.now(UTC).isoformat(), incident=n.incident, model=n.model,
            kind=n.kind, status=n.status, window=n.window,
            notifier=redact(repr(notifier), secrets), outcome="failed" if error else "sent",
            attempts=attempts, error=error)
        self._record(delivery)
        return delivery

    def _record(self, d: Delivery) -> None:
        if d.error:
            log.warning("notification %s of incident %s to %s failed after %d attempt(s): %s",
                        d.kind, d.incident, d.notifier, d.attempts, d.error)
        if self.log_path is None:
            return
        line = json.dumps(d.to_dict(), sort_keys=True) + "\n"
        try:
            with self._lock:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with self.log_path.open("a", encoding="utf-8") as f:
                    f.write(line)
        except OSError as e:
            log.error("cannot append to the notification log %s: %s", self.log_path, e)

    def __repr__(self) -> str:
        return (f"Dispatcher({self.notifiers!r}, retries={self.retries}, "
                f"backoff={self.backoff:g})")


def takes(notifier: Any, n: Notification) -> bool:
    """Whether ``notifier`` is sent ``n``: an ``acknowledge`` only to those that say they
    take it (``acknowledges``: pagers, chats); any only if its ``accepts`` (a route) does."""
    if n.kind == "acknowledge" and not getattr(notifier, "acknowledges", False):
        return False
    accepts = getattr(notifier, "accepts", None)
    try:
        return bool(accepts(n)) if callable(accepts) else True
    except Exception:  # a notifier must never take the caller down
        log.exception("notifier %r: accepts() failed; sending to it", notifier)
        return True


def _secrets(notifier: Any) -> list[str]:
    get = getattr(notifier, "secrets", None)
    try:
        return list(get()) if callable(get) else []
    except Exception:
        return []
