"""Incidents on the server: notified to a real webhook receiver, listed, acknowledged."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import READ, WATCHKEEPER, WRITE, Server, arrow, post, request, wait_for
from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import StoreError
from watchkeeper.server.hub import Hub
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile


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


def _window(server: Server, ts: float, broken: bool, seed: int) -> None:
    table = batch(0, broken, seed)
    table = table.set_column(table.column_names.index("_ts"), "_ts",
                             pa.array(np.full(table.num_rows, ts)))
    assert post(server, "/v1/models/m/events", arrow(table),
                content_type="application/vnd.apache.arrow.stream")[0] == 200


def _incidents(server: Server, status: str | None = None) -> list[dict]:
    query = f"?status={status}" if status else ""
    return request(server.url + f"/v1/models/m/incidents{query}", token=READ)[1]["incidents"]


@pytest.mark.slow
def test_incidents_acks_and_silences_survive_kill_9(tmp_path: Path, receiver: str) -> None:
    rng = np.random.default_rng(0)
    wk.init(pa.table({"x": rng.normal(size=5_000), "y": rng.choice(["a", "b"], 5_000)})).save(
        tmp_path / "s.yaml")
    args = ("--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite", f"m={tmp_path / 's.yaml'}",
            "--window", "1s", "--grace", "1s", "--webhook", receiver)
    t0 = np.floor(time.time()) - 120  # one-second windows, all in the past: they close at once
    first = Server(tmp_path, *args).start()
    try:
        for i, broken in enumerate([False] * 4 + [True] * 4):
            _window(first, t0 + i, broken, i)
        [opened] = wait_for(lambda: _incidents(first, "open"))
        wait_for(lambda: Receiver.received)
        status, acked = post(first, f"/v1/models/m/incidents/{opened['id']}/ack?by=ops", b"")
        assert status == 200 and acked["acknowledged_by"] == "ops"
        status, made = post(first, "/v1/models/m/silences", json.dumps(
            {"matchers": {"column": "y"}, "hours": 1, "comment": "y is being fixed"}).encode())
        assert status == 200
    finally:
        first.kill9()
        first.stop()
    second = Server(tmp_path, *args).start()  # the same store
    try:
        [resumed] = _incidents(second)
        assert (resumed["id"], resumed["status"]) == (opened["id"], opened["status"])
        assert resumed["acknowledged"] and resumed["acknowledged_by"] == "ops"
        silences = request(second.url + "/v1/models/m/silences", token=READ)[1]["silences"]
        assert [(s["id"], s["comment"]) for s in silences] == [(made["id"], "y is being fixed")]
        gone = f"/v1/models/m/silences/{made['id']}"
        assert request(second.url + gone, method="DELETE", token=READ)[0] == 403
        assert request(second.url + gone, method="DELETE", token=WRITE)[0] == 200
        assert request(second.url + gone, method="DELETE", token=WRITE)[0] == 404
        assert request(second.url + "/v1/models/m/silences", token=READ)[1]["silences"] == []
        # the condition still holds for two windows, then clears
        for i, broken in enumerate([True] * 2 + [False] * 4, start=8):
            _window(second, t0 + i, broken, i)
        [resolved] = wait_for(lambda: _incidents(second, "resolved"))
        assert resolved["id"] == opened["id"] and resolved["acknowledged_by"] == "ops"
        assert len(_incidents(second)) == 1  # no second incident for the same condition
        wait_for(lambda: len(Receiver.received) >= 2)
        time.sleep(0.5)  # anything sent late would show now
        sent = [(p["status"], p["groupLabels"]["incident"]) for p in Receiver.received]
        assert sent == [("firing", opened["id"]), ("resolved", opened["id"])]
    finally:
        second.stop()


class Sent:
    """A notifier that keeps what it is sent."""

    def __init__(self) -> None:
        self.notes: list = []

    def send(self, notification) -> None:
        self.notes.append(notification)


def test_alert_state_resumes_after_a_crash_between_windows_and_alerts(
        store_url: str) -> None:
    """Windows saved but not judged when the process died are judged on restart: the same
    incident (its id is derived from what opened it), notified once (nothing is sent
    before the alert state that says it is saved); an acknowledgement saved before the
    next crash stands; on both store backends."""
    rng = np.random.default_rng(0)
    text = suitefile.dump(wk.init(pa.table({"x": rng.normal(size=5_000),
                                            "y": rng.choice(["a", "b"], 5_000)})).to_dict())
    t0 = 1_700_000_000.0
    now = [t0]
    sent = Sent()
    store = Store(store_url)

    def hub() -> Hub:
        h = Hub(store, window=timedelta(seconds=1), grace=timedelta(0),
                retention=timedelta(days=1), clock=lambda: now[0],
                dispatcher=Dispatcher([sent], retries=0))
        h.load()
        return h

    def window(h: Hub, i: int, broken: bool) -> None:
        h.append("m", batch(0, broken, i).set_column(2, "_ts", pa.array(np.full(400, t0 + i))),
                 "events")
        now[0] = t0 + i + 1
        h.step()

    try:
        first = hub()
        first.register("m", text)
        for i in range(4):
            window(first, i, False)
        window(first, 4, True)
        store.save_alert_state = lambda *a: (_ for _ in ()).throw(StoreError("crash"))
        with pytest.raises(StoreError):  # windows saved, alert state not: the process dies
            window(first, 5, True)
        assert sent.notes == []  # not saved: not sent
        del store.save_alert_state

        second = hub()  # judges window 5 again: the incident is told once
        [opened] = sent.notes
        assert opened.kind == "open"
        second.acknowledge("m", opened.incident, "ops")
        window(second, 6, True)  # saved after this window too; then the process dies

        third = hub()
        [incident] = third.models["m"].alerts.incidents.values()
        assert (incident.id, incident.acknowledged_by, incident.is_open) == (
            opened.incident, "ops", True)
        for i in range(7, 11):
            window(third, i, False)
        assert [(n.kind, n.incident) for n in sent.notes[1:]] == [("resolve", opened.incident)]
        assert not third.models["m"].alerts_unsaved
        assert store.alert_state("m")["last_start"] == datetime.fromtimestamp(
            t0 + 10, UTC).isoformat()
    finally:
        store.close()
