"""Shared by tests of several stages: where the data sets are, the CLI as a user runs it,
fairness tables with known rates, a stored window record, an HTTP receiver on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from watchkeeper.store import WindowRecord
from watchkeeper.suite import file as suitefile

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
ACS = DATA / "acs_employment_ma"
ADULT = DATA / "adult"
#: tests/data: suite files and inputs written for the tests
TEST_DATA = Path(__file__).resolve().parent / "data"
WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true"}
    return subprocess.run([str(WATCHKEEPER), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def two_groups(rate_a: float, rate_b: float = 0.5, n: int = 20_000) -> pa.Table:
    """Groups a and b of n/2 rows each, with exactly these selection rates."""
    group = np.where(np.arange(n) < n // 2, "a", "b")
    step = np.arange(n) % (n // 2) % 200
    pred = np.where(group == "a", step < 200 * rate_a, step < 200 * rate_b).astype(int)
    return pa.table({"id": np.arange(n), "gender": group, "target": (step % 2).astype(int),
                     "prediction": pred})


def policy_suite(reference: pa.Table, min_di_ratio: float) -> wk.Suite:
    """A suite whose fairness monitor's ``min_di_ratio`` is edited in its suite file."""
    document = wk.init(reference).to_dict()
    monitor = next(m for m in document["monitors"] if m["type"] == "fairness")
    monitor["min_di_ratio"] = min_di_ratio
    return wk.Suite.from_dict(suitefile.parse(suitefile.dump(document), "suite"))


def window(start: datetime, *, rows: int = 10, state: str = "closed", **profile) -> WindowRecord:
    return WindowRecord(
        model="m",
        start=start,
        end=start + timedelta(hours=1),
        suite_version=1,
        rows=rows,
        state=state,
        profile={"rows": rows, **profile},
        metrics={"accuracy": 0.9},
    )


class Receiver:
    """A JSON-recording HTTP server on 127.0.0.1 (notifier tests); answers with scripted
    status codes."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "json": json.loads(body)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
