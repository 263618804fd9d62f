"""Start the real server as a subprocess on 127.0.0.1 and talk to it over HTTP."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from watchkeeper.server.hub import SCOPE
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile

WRITE, READ = "write-secret-token", "read-secret-token"
WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")


def freeze(server: Server, url: str, tries: int = 500) -> None:
    """SIGSTOP ``server`` at a moment it holds no write lock on the SQLite file of ``url``
    (any moment on PostgreSQL). SQLite has one writer at a time: a server frozen inside a
    write holds up every other writer until it wakes (README, "several servers"), so a test
    of what the others do meanwhile must not freeze it there by chance."""
    assert server.proc is not None
    pid = str(server.proc.pid)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    for _ in range(tries):
        server.proc.send_signal(signal.SIGSTOP)
        if path is None:
            return
        # the signal is only queued: a thread inside a system call (taking the write lock)
        # finishes it before it stops, so the locks are read once every thread has stopped
        wait_for(lambda: stopped(pid), timeout=60, every=0.001)
        files = {os.stat(f).st_ino for f in (path, path + "-shm", path + "-wal")
                 if os.path.exists(f)}
        writing = False
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                if "->" in fields or len(fields) < 8:  # a lock waited for, not held
                    continue
                if fields[3] == "WRITE" and fields[4] == pid and \
                        int(fields[5].rsplit(":", 1)[1]) in files:
                    writing = True
        if not writing:
            return
        server.proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise TimeoutError(f"server {pid} was inside a write at each of {tries} tries")


def stopped(pid: str) -> bool:
    """Whether every thread of the process is stopped (SIGSTOP delivered)."""
    tasks = Path(f"/proc/{pid}/task")
    states = []
    for task in tasks.iterdir():
        try:  # state: the field after the command's closing parenthesis
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return all(state in "tT" for state in states)


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

    def start(self, timeout: float = 120.0) -> Server:  # a loaded machine starts slowly
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


# -- shared by the server tests (ingest bodies, metrics, the fold-lease stream) ----------------
ARROW = "application/vnd.apache.arrow.stream"


def arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def post(server: Server, path: str, body: bytes, token: str | None = WRITE,
         content_type: str = "application/json"):
    return request(server.url + path, body, token=token, content_type=content_type)


def metric(server: Server, name: str) -> float:
    """The value of one sample of /metrics (0 if absent)."""
    _, text = request(server.url + "/metrics", token=READ)
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _suite_text() -> str:
    rng = np.random.default_rng(0)
    return suitefile.dump(wk.init(pa.table({"x": rng.normal(size=3_000),
                                            "y": rng.choice(["a", "b"], 3_000)})).to_dict())


def _batch(n: int, ts: float, seed: int, broken: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    if broken:
        x[rng.random(n) < 0.7] = np.nan
    return pa.table({"x": x, "y": rng.choice(["a", "b"], n), "_ts": np.full(n, ts)})


def _windowed(store: Store, model: str = "m") -> int:
    return sum(w.rows for w in store.load_windows(model))


class Stream(threading.Thread):
    """Posts batches of 300 rows to one server until stopped; counts acknowledged rows.

    With ``keyed``, each batch carries an Idempotency-Key and the batches that got no 200
    are kept in ``unanswered`` (body, key), for a client's retry elsewhere: a batch in
    flight when its server is killed may be stored without its answer reaching the client.
    """

    #: batches mostly missing ``x`` (see :func:`_batch`)
    broken = False
    #: seconds a post may take
    timeout = 30.0

    def __init__(self, server: Server, seed: int, keyed: bool = False) -> None:
        super().__init__(daemon=True)
        self.server, self.seed, self.keyed = server, seed, keyed
        self.acked = 0
        self.failed = 0
        self.unanswered: list[tuple[bytes, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            body = arrow(_batch(300, time.time(), self.seed * 100_000 + i, self.broken))
            key = f"stream-{self.seed}-{i}"
            i += 1
            try:
                status, _ = request(self.server.url + "/v1/models/m/events", body,
                                    token=WRITE, content_type=ARROW, timeout=self.timeout,
                                    headers={"Idempotency-Key": key} if self.keyed else None)
            except OSError:
                status = 0
            if status == 200:
                self.acked += 300
            else:
                self.failed += 1
                if self.keyed:
                    self.unanswered.append((body, key))
            time.sleep(0.02)

    def stop(self) -> int:
        self.halt.set()
        self.join(60)
        return self.acked


def _holder(store: Store, servers: list[Server]) -> Server | None:
    lease = store.lease(SCOPE)
    if lease is None or lease.expired:
        return None
    for s in servers:
        assert s.proc is not None
        if f":{s.proc.pid}:" in lease.owner:
            return s
    return None


def _caught_up(store: Store) -> int:
    """Wait until the leader folded every logged event; the rows in the windows."""
    wait_for(lambda: not store.log_backlog(), timeout=60)  # servers' own logs copied
    last = 0
    while page := store.events_after("m", last, limit=10_000, max_bytes=1 << 30):
        last = page[-1].seq
    wait_for(lambda: store.watermark("m") >= last, timeout=60)
    return _windowed(store)


def _logged(store: Store) -> int:
    rows = last = 0
    while page := store.events_after("m", last, limit=10_000):
        rows += sum(e.rows for e in page)
        last = page[-1].seq
    return rows
