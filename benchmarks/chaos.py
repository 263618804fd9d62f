"""Chaos on loopback: every acknowledged row counted exactly once (issue #19).

Each scenario runs a fresh ``watchkeeper serve`` subprocess on 127.0.0.1 (as the tests do,
``tests/server_helpers.py``), on SQLite (a temporary file) and on PostgreSQL (127.0.0.1:5432,
database ``test``, in a schema of its own dropped afterwards; ``--pg-url`` to change it). The
suite is ``watchkeeper.init`` of 3,000 synthetic rows (``id``, ``x``, ``colour``,
``prediction``, ``label``). Clients are the SDK's ``RemoteSink`` with one Idempotency-Key per
batch, the same on every retry (``watchkeeper.sdk.RemoteSink``).

* ``stall``: another connection holds the store's write lock for ``--stall`` seconds (SQLite:
  ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE events IN EXCLUSIVE MODE``) while 4 sinks with
  the SDK's defaults (5 s timeout, 3 retries) each send one batch of 100 rows: every attempt
  that timed out is still committed by the server once the lock goes. Rows counted in the
  windows vs rows sent.
* ``kill``: one sink sends ``--batches`` batches of 100 rows (2 s timeout, 8 retries) while
  the server is killed with SIGKILL ``--kills`` times at random moments and restarted on the
  same store and port: some kills fall between a commit and its answer. Rows counted vs sent.
* ``commit-kill``: ``--runs`` times, a batch waits for the store's write lock; the lock is
  released and the server killed 0 to 100 ms later, then restarted; the sink sends the batch
  again. Counted: runs where the batch was committed before the kill but its answer never
  reached the client (it had to send it again), and rows counted vs sent.
* ``stalled-upload``: rows/s acknowledged to 4 clients posting 1,000-row Arrow batches for
  ``--seconds``, alone and while another connection has declared ``Content-Length:
  268435456``, sent one byte and gone silent (``--body-timeout 60s``, so it stays stalled).
* ``wide``: time to answer a one-row batch of 50,000 columns (JSON rows, NDJSON, JSON
  columns, Arrow) under the default ``--max-columns``.

Rows counted are the rows of the model's windows in the store once its watermark has reached
the last batch. It asserts nothing; the Markdown report goes to stdout and to
``benchmarks/results/chaos.md``. Run from the repository root::

    .venv/bin/python benchmarks/chaos.py                      # all scenarios, both stores
    .venv/bin/python benchmarks/chaos.py --stores sqlite --scenarios stall,wide
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import secrets
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import watchkeeper as wk
from tests.server_helpers import WRITE, Server, request, scratch_schema, wait_for
from watchkeeper.errors import SinkError
from watchkeeper.sdk import RemoteSink
from watchkeeper.store import Store
from watchkeeper.wire import to_ipc

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ARROW = "application/vnd.apache.arrow.stream"
RESULTS = Path(__file__).parent / "results" / "chaos.md"


def batch(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pa.table({"id": seed * 1_000_000 + np.arange(n), "x": x,
                     "colour": rng.choice(["red", "blue"], n),
                     "prediction": (x > 0).astype(int), "_ts": np.full(n, time.time())})


def write_suite(path: Path) -> Path:
    reference = batch(3_000, 0).drop_columns(["_ts"])
    reference = reference.append_column("label", pa.array(
        (np.random.default_rng(1).random(3_000) < 0.5).astype(int)))
    wk.init(reference, target="label", id="id", prediction="prediction").save(path)
    return path


@contextmanager
def store_url(kind: str, workdir: Path, pg_url: str) -> Iterator[str]:
    """A fresh, empty store of this kind."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'chaos-{secrets.token_hex(3)}.db'}"
        return
    with scratch_schema(pg_url, "wk_chaos") as url:
        yield url


@contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Another connection holding the store's write lock while inside."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("LOCK TABLE events IN EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def counted(url: str, timeout: float = 120.0) -> tuple[int, int]:
    """(rows stored in the event log, rows in windows once the fold has caught up)."""
    with Store(url) as store:
        events = store.events_after("m", 0, limit=1_000_000)
        last = max((e.seq for e in events), default=0)
        wait_for(lambda: store.watermark("m") >= last, timeout=timeout)
        return sum(e.rows for e in events), sum(w.rows for w in store.load_windows("m"))


def serve(workdir: Path, suite: Path, url: str, *args: str) -> Server:
    return Server(workdir, "--store", url, "--suite", f"m={suite}", "--window", "2s",
                  "--grace", "1s", *args).start(timeout=60)


def scenario_stall(workdir: Path, suite: Path, url: str, stall: float) -> dict[str, Any]:
    server = serve(workdir, suite, url)
    try:
        sinks = [RemoteSink(server.url, "m", token=WRITE) for _ in range(4)]
        errors: list[str] = []

        def send(sink: Any, seed: int) -> None:
            try:
                sink.send_events(batch(100, seed))
            except SinkError as exc:
                errors.append(str(exc))

        started = time.monotonic()
        with write_lock(url):
            threads = [threading.Thread(target=send, args=(s, i)) for i, s in enumerate(sinks)]
            for t in threads:
                t.start()
            time.sleep(stall)
        for t in threads:
            t.join(120)
        took = time.monotonic() - started
        stored, windowed = counted(url)
        return {"sent": 400, "acknowledged": sum(s.accepted for s in sinks),
                "requests": sum(s.requests for s in sinks), "errors": len(errors),
                "stored": stored, "counted": windowed, "seconds": round(took, 1)}
    finally:
        server.stop()


def scenario_kill(workdir: Path, suite: Path, url: str, batches: int,
                  kills: int) -> dict[str, Any]:
    server = serve(workdir, suite, url)
    sink = RemoteSink(server.url, "m", token=WRITE, timeout=2.0, retries=8, backoff=0.2)
    sent, gave_up = [0], [0]
    done = threading.Event()

    def send() -> None:
        for i in range(batches):
            time.sleep(0.05)  # about 20 batches/s, so that the kills fall among them
            try:
                sink.send_events(batch(100, 1000 + i))
                sent[0] += 100
            except SinkError:
                gave_up[0] += 1
        done.set()

    sender = threading.Thread(target=send)
    sender.start()
    rng = random.Random(19)
    duplicates = 0  # answered by each server process (read just before it is killed)
    try:
        for _ in range(kills):
            if done.wait(rng.uniform(0.5, 2.0)):
                break
            duplicates += duplicates_of(server)
            server.kill9()
            server.stop()
            server.start(timeout=60)
        sender.join(600)
        duplicates += duplicates_of(server)
        stored, windowed = counted(url)
    finally:
        server.stop()
        sink.close()
    return {"batches": batches, "kills": kills, "sent": sent[0], "gave up": gave_up[0],
            "requests": sink.requests, "duplicates answered (at least)": duplicates,
            "stored": stored, "counted": windowed}


def scenario_commit_kill(workdir: Path, suite: Path, url: str, runs: int) -> dict[str, Any]:
    server = serve(workdir, suite, url)
    between, sent, rng = 0, 0, random.Random(7)
    reader = Store(url)

    def logged() -> int:
        return sum(e.rows for e in reader.events_after("m", 0, limit=1_000_000))

    try:
        for i in range(runs):
            sink = RemoteSink(server.url, "m", token=WRITE, retries=8, backoff=0.2)
            before = logged()
            sending = threading.Thread(target=sink.send_events, args=(batch(100, 5000 + i),))
            with write_lock(url):  # the request waits for the store...
                sending.start()
                wait_for(lambda s=sink: s.requests >= 1, timeout=10)
                time.sleep(0.3)
            time.sleep(rng.uniform(0.0, 0.1))  # ...commits once it is free: kill about then
            server.kill9()
            committed = logged() > before
            server.stop()
            server.start(timeout=60)
            sending.join(120)
            sent += sink.accepted
            between += committed and sink.requests >= 2  # committed, and its answer lost
            sink.close()
        stored, windowed = counted(url)
    finally:
        server.stop()
        reader.close()
    return {"runs": runs, "kills between commit and answer": between, "sent": sent,
            "stored": stored, "counted": windowed}


def duplicates_of(server: Server) -> int:
    """Batches the server answered as duplicates so far (its /metrics)."""
    _, text = request(server.url + "/metrics")
    found = re.search(r'^watchkeeper_duplicate_batches_total\{model="m"\} (\S+)$', text,
                      re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def rate(server: Server, seconds: float, clients: int = 4) -> tuple[float, dict[int, int]]:
    """Rows/s acknowledged to ``clients`` posting 1,000-row Arrow batches, and statuses."""
    body = to_ipc(batch(1_000, 7))
    statuses: dict[int, int] = {}
    rows = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        while time.monotonic() < deadline:
            conn.request("POST", "/v1/models/m/events", body=body, headers={
                "Authorization": f"Bearer {WRITE}", "Content-Type": ARROW})
            response = conn.getresponse()
            answer = response.read()
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status == 200:
                    rows[0] += json.loads(answer)["accepted"]
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rows[0] / seconds, statuses


def scenario_stalled_upload(workdir: Path, suite: Path, url: str,
                            seconds: float) -> dict[str, Any]:
    server = serve(workdir, suite, url, "--body-timeout", "60s")
    try:
        alone, alone_statuses = rate(server, seconds)
        stalled = socket.create_connection((server.host, server.port))
        stalled.sendall(f"POST /v1/models/m/events HTTP/1.1\r\nHost: x\r\nAuthorization: "
                        f"Bearer {WRITE}\r\nContent-Type: {ARROW}\r\nContent-Length: "
                        f"{256 * 2**20}\r\n\r\nx".encode())
        time.sleep(0.5)
        beside, beside_statuses = rate(server, seconds)
        stalled.close()
        stored, windowed = counted(url)
    finally:
        server.stop()
    return {"rows/s alone": round(alone), "statuses alone": alone_statuses,
            "rows/s beside a stalled upload": round(beside), "statuses beside": beside_statuses,
            "stored": stored, "counted": windowed}


def scenario_wide(workdir: Path, suite: Path, url: str) -> dict[str, Any]:
    server = serve(workdir, suite, url)
    row = {f"c{i}": i for i in range(50_000)}
    bodies = {
        "json rows": (json.dumps([row]).encode(), "application/json"),
        "ndjson": (json.dumps(row).encode(), "application/x-ndjson"),
        "json columns": (json.dumps({"columns": {k: [v] for k, v in row.items()}}).encode(),
                         "application/json"),
        "arrow": (to_ipc(pa.table({k: [v] for k, v in row.items()})), ARROW),
    }
    out: dict[str, Any] = {}
    try:
        for name, (body, content_type) in bodies.items():
            conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
            started = time.perf_counter()
            conn.request("POST", "/v1/models/m/events", body=body, headers={
                "Authorization": f"Bearer {WRITE}", "Content-Type": content_type})
            response = conn.getresponse()
            detail = json.loads(response.read())["detail"]
            took = time.perf_counter() - started
            conn.close()
            out[name] = f"{response.status} in {took * 1000:.0f} ms ({len(body):,} bytes): " \
                        f"{detail[:70]}"
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--scenarios", default="stall,kill,commit-kill,stalled-upload,wide")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stall", type=float, default=12.0)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    scenarios: dict[str, Callable[[Path, Path, str], dict[str, Any]]] = {
        "stall": lambda w, s, u: scenario_stall(w, s, u, args.stall),
        "kill": lambda w, s, u: scenario_kill(w, s, u, args.batches, args.kills),
        "commit-kill": lambda w, s, u: scenario_commit_kill(w, s, u, args.runs),
        "stalled-upload": lambda w, s, u: scenario_stalled_upload(w, s, u, args.seconds),
        "wide": scenario_wide,
    }
    lines = ["# Chaos on loopback (issue #19)", "",
             f"`{' '.join(sys.argv[1:]) or '(defaults)'}`; {time.strftime('%Y-%m-%d %H:%M')}",
             ""]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        suite = write_suite(workdir / "suite.yaml")
        for name in args.scenarios.split(","):
            for kind in args.stores.split(","):
                with store_url(kind, workdir, args.pg_url) as url:
                    result = scenarios[name](workdir, suite, url)
                line = f"- **{name}** on {kind}: " + "; ".join(
                    f"{k} {v}" for k, v in result.items())
                print(line, flush=True)
                lines.append(line)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
