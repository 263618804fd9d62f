"""Start the real server as a subprocess on 127.0.0.1 and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WRITE, READ = "write-secret-token", "read-secret-token"
WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = env or {}  # e.g. other tokens
        self.host = "127.0.0.1"
        self.port = free_port()
        self.url = f"http://{self.host}:{self.port}"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        env = {**os.environ, "WATCHKEEPER_WRITE_TOKEN": WRITE, "WATCHKEEPER_READ_TOKEN": READ,
               **self.env}
        self.log = open(self.workdir / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(WATCHKEEPER), "serve", "--port", str(self.port), *self.args],
            cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.logs()}")
            try:
                if request(self.url + "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server did not start: {self.logs()}")

    def logs(self) -> str:
        return (self.workdir / f"server-{self.port}.log").read_text(errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def request(url: str, body: bytes | None = None, *, token: str | None = None,
            content_type: str = "application/json", timeout: float = 30.0,
            method: str | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Any]:
    headers = {"Content-Type": content_type, **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers,
                                 method=method or ("POST" if body is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(condition, timeout: float = 30.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def assert_stored_like_batch(suite: Any, batches: list[Any], stored: list[Any],
                             labels: Any) -> None:
    """Stored windows (one per batch) equal checking each batch at once with all labels:
    counts exactly, float sums up to the order of summation, metrics to their 6 stored
    significant digits."""
    import numpy as np
    import pytest

    from watchkeeper.profiles.core import Profile

    for batch, window in zip(batches, stored, strict=True):
        expected = suite.check(batch, labels=labels).windows[0]
        joint = Profile.from_dict(window.profile).joint
        for key, tally in expected.profile.joint.items():
            if tally.dtype.kind == "i":
                assert np.array_equal(tally, joint[key]), key
            else:
                np.testing.assert_allclose(tally, joint[key], rtol=1e-12)
        assert window.metrics["realised"] == pytest.approx(expected.metrics["realised"],
                                                           rel=1e-5)
        assert window.metrics["label_coverage"] == pytest.approx(
            expected.metrics["label_coverage"], rel=1e-5)


@contextmanager
def scratch_schema(pg_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new PostgreSQL schema of its own (dropped after): one store per run."""
    import secrets

    import sqlalchemy as sa

    schema = f"{prefix}_{secrets.token_hex(4)}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
