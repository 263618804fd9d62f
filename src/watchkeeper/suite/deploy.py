"""Put a suite into service on a server, or roll back, from Python or the CLI.

>>> deploy  # doctest: +ELLIPSIS
<function deploy at ...>
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from watchkeeper.errors import DeployError
from watchkeeper.suite import file as suitefile
from watchkeeper.suite.core import Suite


def call(method: str, url: str, body: bytes | None = None, token: str | None = None,
         content_type: str = "application/yaml", timeout: float = 60.0,
         token_env: str = "WATCHKEEPER_WRITE_TOKEN") -> dict[str, Any]:
    """One request to a watchkeeper server; errors become one-line DeployErrors."""
    token = token or os.environ.get(token_env)
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise DeployError(f"{exc.code} from {url.split('/v1/')[0]}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeployError(f"cannot reach {url.split('/v1/')[0]}: {reason}") from None


def _suite_text(suite: Suite | str | os.PathLike[str]) -> str:
    if isinstance(suite, Suite):
        return suitefile.dump(suite.to_dict())
    path = Path(suite)
    if not path.exists():
        raise DeployError(f"{path}: no such file")
    return path.read_text(encoding="utf-8")


def deploy(suite: Suite | str | os.PathLike[str], *, model: str, server: str,
           token: str | None = None, note: str | None = None) -> dict[str, Any]:
    """Register ``suite`` as the active version of ``model`` on ``server`` (from its next
    window on). The token defaults to $WATCHKEEPER_WRITE_TOKEN. Returns the server's
    answer: the new version, the previous one, and what changed (``summary``)."""
    query = urllib.parse.urlencode({k: v for k, v in (("note", note),) if v})
    url = f"{server.rstrip('/')}/v1/models/{urllib.parse.quote(model)}/suites"
    return call("POST", url + (f"?{query}" if query else ""),
                _suite_text(suite).encode("utf-8"), token)


def rollback(*, model: str, version: int, server: str, token: str | None = None
             ) -> dict[str, Any]:
    """Make a stored version of ``model`` the active one again (from the next window on)."""
    url = f"{server.rstrip('/')}/v1/models/{urllib.parse.quote(model)}/suites/{version}/activate"
    return call("POST", url, b"", token)
