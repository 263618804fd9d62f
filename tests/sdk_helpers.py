"""Shared by the SDK tests: a recording HTTP receiver, a uvicorn server in a thread."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class Served:
    """A uvicorn server on 127.0.0.1 in a thread, with bounded waits."""

    def __init__(self, app: Any) -> None:
        uvicorn = pytest.importorskip("uvicorn")
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        assert wait_until(lambda: self.server.started, 15), "uvicorn did not start"
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive()

    def request(self, method: str, path: str, body: dict | None = None,
                headers: dict[str, str] | None = None) -> int:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, dict(self.headers), body))
        self.server.times.append(time.monotonic())
        status = self.server.plan.pop(0) if self.server.plan else 200
        if isinstance(status, float):  # a hang: answer 200 after that many seconds
            time.sleep(status)
            status = 200
        if status == 200:
            rows = pa.ipc.open_stream(body).read_all().num_rows
            payload = json.dumps({"accepted": rows}).encode()
        else:
            payload = json.dumps({"detail": f"status {status} as planned"}).encode()
        self.send_response(status)
        if status != 200 and self.server.retry_after is not None:
            self.send_header("Retry-After", self.server.retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


class RecordingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Recorder)
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.times: list[float] = []
        self.plan: list[int | float] = []
        self.retry_after: str | None = None


@contextlib.contextmanager
def recording(port: int = 0) -> Iterator[RecordingServer]:
    """A RecordingServer answering on a thread (on ``port``, 0 for any free one) while
    the block runs; shut down and closed after it."""
    srv = RecordingServer(port)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def url_of(srv: RecordingServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def keyed_bodies(srv: RecordingServer) -> list[tuple[str, bytes]]:
    return [(headers["Idempotency-Key"], body) for _, headers, body in srv.seen]


def assert_one_key_per_batch(srv: RecordingServer) -> None:
    """No batch was sent under two keys, and no key was used for two batches."""
    by_key: dict[str, set[bytes]] = {}
    by_body: dict[bytes, set[str]] = {}
    for key, body in keyed_bodies(srv):
        by_key.setdefault(key, set()).add(body)
        by_body.setdefault(body, set()).add(key)
    assert all(len(bodies) == 1 for bodies in by_key.values())
    assert all(len(keys) == 1 for keys in by_body.values())
