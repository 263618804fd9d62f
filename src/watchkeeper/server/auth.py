"""Write and read tokens, compared in constant time."""

from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Tokens:
    """``write`` may ingest and deploy (and read); ``read`` may only query.
    Both None means authentication is off (for local use on a loopback address)."""

    write: str | None = None
    read: str | None = None

    @property
    def enabled(self) -> bool:
        return self.write is not None or self.read is not None

    def check(self, header: str | None, need: str) -> int:
        """HTTP status for an Authorization header: 200, 401 (none) or 403 (not allowed)."""
        if not self.enabled:
            return 200
        if not header or not header.lower().startswith("bearer "):
            return 401
        given = header[7:].strip().encode()
        is_write = self.write is not None and hmac.compare_digest(given, self.write.encode())
        is_read = self.read is not None and hmac.compare_digest(given, self.read.encode())
        if need == "write":
            return 200 if is_write else 403
        return 200 if (is_read or is_write) else 403
