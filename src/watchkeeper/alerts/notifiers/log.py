"""Log: one line per notification on a stream (stdout by default)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification


class LogNotifier:
    """Writes each notification's subject (``as_json=True``: its Alertmanager JSON) as a
    line.

    >>> import io
    >>> LogNotifier(io.StringIO())
    LogNotifier(stream=<_io.StringIO>)
    """

    acknowledges = True  # "[ACKNOWLEDGED] …" tells the channel someone is on it

    def __init__(self, stream: TextIO | None = None, as_json: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.as_json = as_json

    def send(self, notification: Notification) -> None:
        if self.as_json:
            line = json.dumps(notification.to_alertmanager(), sort_keys=True, default=str)
        else:
            line = f"{notification.at.isoformat()} {notification.subject} " \
                   f"[incident {notification.incident}, notification {notification.key}]"
        self.stream.write(line + "\n")
        self.stream.flush()

    def __repr__(self) -> str:
        name = getattr(self.stream, "name", None) or f"<{type(self.stream).__module__}." \
            f"{type(self.stream).__name__}>"
        return f"LogNotifier(stream={name})"
