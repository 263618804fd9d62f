"""Incidents on the server: notified to a real webhook receiver, listed, acknowledged."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import READ, WATCHKEEPER, WRITE, Server, request, wait_for
from tests.test_server import arrow, post


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def receiver():
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def batch(seconds_ago: float, broken: bool, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = 400
    x = rng.normal(size=n)
    if broken:
        x[rng.random(n) < 0.7] = np.nan  # the upstream producer stops filling x
    return pa.table({"x": x, "y": rng.choice(["a", "b"], n),
                     "_ts": np.full(n, time.time() - seconds_ago)})


def test_an_upstream_break_is_one_notified_incident_with_advice(tmp_path: Path,
                                                                 receiver: str) -> None:
    rng = np.random.default_rng(0)
    wk.init(pa.table({"x": rng.normal(size=5_000), "y": rng.choice(["a", "b"], 5_000)})).save(
        tmp_path / "s.yaml")
    server = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
                    f"m={tmp_path / 's.yaml'}", "--window", "1s", "--grace", "1s",
                    "--webhook", receiver).start()
    try:
        # 12 past one-second windows: clean, 4 broken, clean again
        for i, broken in enumerate([False] * 4 + [True] * 4 + [False] * 4):
            assert post(server, "/v1/models/m/events", arrow(batch(40 - i, broken, i)),
                        content_type="application/vnd.apache.arrow.stream")[0] == 200
        doc = wait_for(lambda: (d := request(server.url + "/v1/models/m/incidents?status="
                                             "resolved", token=READ)[1])["incidents"] and d)
        [incident] = doc["incidents"]
        assert incident["advice"]["diagnosis"] == "upstream data break"
        assert incident["advice"]["causes"][0]["name"] == "x"
        assert "check the upstream producer of x" in incident["advice"]["actions"][0]
        wait_for(lambda: len(Receiver.received) >= 2)
        statuses = [p["status"] for p in Receiver.received]
        assert statuses == ["firing", "resolved"]  # one open, one resolve
        first = Receiver.received[0]
        assert first["version"] == "4" and first["alerts"][0]["labels"]["alertname"] \
            == "missing_rate"
        env = {"WATCHKEEPER_READ_TOKEN": READ, "WATCHKEEPER_WRITE_TOKEN": WRITE,
               "PATH": "/usr/bin:/bin"}
        shown = subprocess.run([str(WATCHKEEPER), "incident", incident["id"], "--server",
                                server.url, "--model", "m"], capture_output=True, text=True,
                               env=env, timeout=60)
        assert shown.returncode == 0 and "diagnosis: upstream data break" in shown.stdout
        listed = subprocess.run([str(WATCHKEEPER), "incidents", "--all", "--server",
                                 server.url, "--model", "m"], capture_output=True, text=True,
                                env=env, timeout=60)
        assert incident["id"] in listed.stdout
        acked = subprocess.run([str(WATCHKEEPER), "ack", incident["id"], "--by", "ops",
                                "--server", server.url, "--model", "m"], capture_output=True,
                               text=True, env=env, timeout=60)
        assert acked.returncode == 0
        silenced = subprocess.run([str(WATCHKEEPER), "silence", "--match", "column=x",
                                   "--hours", "1", "--server", server.url, "--model", "m"],
                                  capture_output=True, text=True, env=env, timeout=60)
        assert silenced.returncode == 0 and "silence" in silenced.stdout
        after = request(server.url + f"/v1/models/m/incidents/{incident['id']}", token=READ)
        assert after[1]["acknowledged_by"] == "ops"
    finally:
        server.stop()
