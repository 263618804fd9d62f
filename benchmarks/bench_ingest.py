"""Benchmark: load on ``watchkeeper serve`` over loopback, by ingest format and batch size.

What it measures. For each configuration (format × batch rows × client processes) a fresh
server is started as a subprocess on 127.0.0.1, as the tests do (``tests/server_helpers.py``):

    watchkeeper serve --store sqlite:///<tmp>/bench.db --suite bench=<tmp>/suite.yaml
                      --window 1m --grace 10s --port <free>

with ``WATCHKEEPER_WRITE_TOKEN``/``WATCHKEEPER_READ_TOKEN`` set. The suite is built once by
``watchkeeper.init`` on ``synthetic_drift_pair(20_000, seed=0)[0]`` (15 float and 5 string
columns) plus an ``id`` column. Client processes (``--workers``, started with
``multiprocessing``) each keep one HTTP/1.1 keep-alive connection (``http.client``) and post
the same pre-encoded batch (the ``current`` frame of ``synthetic_drift_pair(batch, seed=1)``
plus ``id``) to ``/v1/models/bench/events`` for ``--seconds``. Formats:

* ``json``    – ``application/json``, a list of row objects;
* ``ndjson``  – ``application/x-ndjson``, one row object per line;
* ``columns`` – ``application/json``, ``{"columns": {name: [values]}}``;
* ``arrow``   – ``application/vnd.apache.arrow.stream``, an Arrow IPC stream.

Counted per configuration: acknowledged rows (the ``accepted`` of each 200 answer), other
statuses by code, exceptions by type, request latency. The server answers once the batch is
committed to the store's event log and folds it into windows in a background thread, so after
the clients stop the script waits until the model's watermark reaches the largest seq
acknowledged and reports how long folding lagged behind the last acknowledgement. Then it checks
that nothing was lost: rows in the event log (paged through ``Store.events_after``) ≥ rows
acknowledged (plus one warm-up batch), and rows in windows (``Store.load_windows``) = rows in
the event log. Peak RSS of the server is its ``VmHWM`` (``/proc/<pid>/status``), cross-checked
with RSS sampled by psutil; server and client CPU time are reported too (the machine's cores
are shared by clients and server).

Before the load runs, single-threaded in-process ceilings of each server step (parsing a body,
re-encoding to Arrow IPC, the SQLite append, and folding: reading IPC and profiling) are timed
without HTTP, to show where a format's time goes. ``--py-spy`` also samples the server with
py-spy during each load run (``--idle`` and ``--gil``, at the same time) and reports, per
thread group (event loop, request threads, fold thread), where its wall time went and who held
the GIL; such a run writes ``ingest_loopback_pyspy.md`` instead, since py-spy costs the server
some CPU.

Targets (issue #4): ≥ 50,000 rows/s with JSON and ≥ 500,000 rows/s with Arrow IPC, with no
acknowledged row lost and no 5xx answer. The Markdown report goes to stdout and to
``benchmarks/results/ingest_loopback.md``.

Run it from the repository root with the project venv (server extra installed; psutil from the
``bench`` extra is used when present)::

    .venv/bin/python benchmarks/bench_ingest.py                  # all formats, 2 and 4 clients
    .venv/bin/python benchmarks/bench_ingest.py --formats arrow --arrow-batches 100000 \\
        --workers 2 --seconds 10 --py-spy
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib.metadata
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Shared report helpers (same directory; importing it also checks that watchkeeper imports).
from bench_drift import (
    REPO,
    RESULTS_DIR,
    _cell,
    _cpu_model,
    _git_describe,
    _loadavg,
    _mem_total,
    _rel,
    _shown,
    _tail,
    write_report,
)

sys.path.insert(0, str(REPO))  # the tests' way of starting the real server

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from tests.server_helpers import WRITE, Server
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.server.ingest import parse_body
from watchkeeper.store import Store
from watchkeeper.wire import from_ipc, to_ipc

try:
    import psutil
except ImportError:  # pragma: no cover - the `bench` extra
    psutil = None

DATA_DIR = Path(__file__).resolve().parent / "data"
PYSPY_DIR = DATA_DIR / "ingest_pyspy"
MODEL = "bench"
PATH = f"/v1/models/{MODEL}/events"
REFERENCE_ROWS = 20_000

CONTENT_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "columns": "application/json",
    "arrow": "application/vnd.apache.arrow.stream",
}
FORMATS = tuple(CONTENT_TYPES)
JSON_FORMATS = ("json", "ndjson", "columns")
TARGETS = {"json": 50_000, "arrow": 500_000}  # rows/s acknowledged (issue #4)


# --------------------------------------------------------------------------------------------
# Payloads


def batch_table(rows: int) -> pa.Table:
    """The posted batch: the drifted frame of the synthetic pair (20 columns) plus ``id``."""
    table = synthetic_drift_pair(rows, seed=1)[1]
    return table.append_column("id", pa.array(np.arange(rows, dtype=np.int64)))


def _dumps(value: Any) -> bytes:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is in the server extra
        return json.dumps(value).encode()
    return orjson.dumps(value)


def encode(table: pa.Table, fmt: str) -> bytes:
    if fmt == "json":
        return _dumps(table.to_pylist())
    if fmt == "ndjson":
        return b"\n".join(_dumps(row) for row in table.to_pylist()) + b"\n"
    if fmt == "columns":
        return _dumps({"columns": table.to_pydict()})
    if fmt == "arrow":
        return to_ipc(table)
    raise ValueError(fmt)


# --------------------------------------------------------------------------------------------
# Clients (each its own process)


def client(
    port: int,
    body: bytes,
    content_type: str,
    seconds: float,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Post ``body`` over one keep-alive connection until ``seconds`` after ``go``."""
    headers = {
        "Content-Type": content_type,
        "Authorization": f"Bearer {WRITE}",
        "Content-Length": str(len(body)),
    }

    def connect() -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.connect()
        return conn

    conn = connect()
    ready.put(os.getpid())
    go.wait()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    deadline = time.time() + seconds
    acked = requests = 0
    max_seq = 0
    last_ack = None
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    while time.time() < deadline:
        t0 = time.perf_counter()
        try:
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            errors[type(error).__name__] += 1
            conn.close()
            time.sleep(0.05)
            with contextlib.suppress(OSError):
                conn = connect()
            continue
        latencies.append(time.perf_counter() - t0)
        requests += 1
        statuses[response.status] += 1
        if response.status == 200:
            answer = json.loads(raw)
            acked += int(answer["accepted"])
            max_seq = max(max_seq, int(answer["seq"]))
            last_ack = time.time()
        if response.will_close:
            conn.close()
            conn = connect()
    conn.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    results.put(
        {
            "acked": acked,
            "requests": requests,
            "max_seq": max_seq,
            "last_ack": last_ack,
            "statuses": dict(statuses),
            "errors": dict(errors),
            "latencies": latencies,
            "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        }
    )


# --------------------------------------------------------------------------------------------
# One configuration


@dataclass
class Config:
    fmt: str
    batch: int
    workers: int

    @property
    def label(self) -> str:
        return f"{self.fmt}_{self.batch}_w{self.workers}"


@dataclass
class Outcome:
    config: Config
    body_bytes: int
    wall_s: float = math.nan
    acked: int = 0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    warmup_rows: int = 0
    logged_rows: int | None = None
    logged_batches: int | None = None
    window_rows: int | None = None
    max_seq: int = 0
    fold_lag_s: float | None = None
    fold_s: float | None = None
    server_cpu_s: float | None = None
    thread_cpu_s: dict[int, float] = field(default_factory=dict)
    cpu_wall_s: float = math.nan
    machine_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    peak_rss_mb: float | None = None
    sampled_rss_mb: float | None = None
    pyspy: dict[str, Any] | None = None
    error: str | None = None

    @property
    def rows_per_s(self) -> float:
        return self.acked / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def fivexx(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    @property
    def non200(self) -> Counter[int]:
        return Counter({code: n for code, n in self.statuses.items() if code != 200})

    @property
    def lost(self) -> int | None:
        """Acknowledged rows missing from the event log, plus any event-log rows missing from
        (or counted twice in) the windows."""
        if self.logged_rows is None or self.window_rows is None:
            return None
        missing = max(0, self.acked + self.warmup_rows - self.logged_rows)
        return missing + abs(self.window_rows - self.logged_rows)


def _server_pid(server: Server) -> int:
    assert server.proc is not None
    return server.proc.pid


def _vm_hwm_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class Sampler(threading.Thread):
    """Samples the server's RSS every 0.2 s (psutil) while the clients run."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid) if psutil is not None else None
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while self.proc is not None and not self.stop.is_set():
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            self.stop.wait(0.2)


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by thread id (Linux /proc)."""
    times = {}
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                times[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return times


def _machine_busy_s() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    return None


def count_logged(store: Store, page_bytes: int) -> tuple[int, int, int]:
    """(rows, batches, max seq) in the event log, paged so payloads never pile up."""
    limit = max(1, (256 << 20) // max(1, page_bytes))
    rows = batches = last = 0
    while True:
        events = store.events_after(MODEL, last, limit=limit)
        if not events:
            return rows, batches, last
        rows += sum(e.rows for e in events)
        batches += len(events)
        last = events[-1].seq
        del events


def run_config(
    config: Config,
    body: bytes,
    ipc_bytes: int,
    suite_path: Path,
    seconds: float,
    fold_timeout: float,
    pyspy: str | None,
) -> Outcome:
    outcome = Outcome(config, len(body))
    workdir = Path(tempfile.mkdtemp(prefix=f"bench_ingest_{config.label}_"))
    db = workdir / "bench.db"
    server = Server(
        workdir,
        "--store", f"sqlite:///{db}",
        "--suite", f"{MODEL}={suite_path}",
        "--window", "1m",
        "--grace", "10s",
    )  # fmt: skip
    store: Store | None = None
    procs: list[Any] = []
    spy: list[Spy] | None = None
    try:
        server.start(timeout=60)
        pid = _server_pid(server)
        content_type = CONTENT_TYPES[config.fmt]
        # One warm-up batch (first-request imports, SQLite pages); counted as logged, not timed.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {WRITE}"}
        conn.request("POST", PATH, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"warm-up batch got {response.status}: {raw[:300]!r}")
        warm = json.loads(raw)
        outcome.warmup_rows, outcome.max_seq = int(warm["accepted"]), int(warm["seq"])

        ctx = mp.get_context("fork")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        args = (server.port, body, content_type, seconds, ready, go, results)
        for _ in range(config.workers):
            procs.append(ctx.Process(target=client, args=args, daemon=True))
            procs[-1].start()
        for _ in procs:
            ready.get(timeout=60)
        sampler = Sampler(pid)
        spy = _start_pyspy(pyspy, pid, seconds, config) if pyspy else None
        cpu0, busy0 = _thread_cpu(pid), _machine_busy_s()
        sampler.start()
        t0 = time.time()
        go.set()
        reports = [results.get(timeout=seconds + 300) for _ in procs]
        cpu1, busy1 = _thread_cpu(pid), _machine_busy_s()
        outcome.cpu_wall_s = time.time() - t0
        for proc in procs:
            proc.join(30)
        sampler.stop.set()
        sampler.join()
        last_ack = max((r["last_ack"] for r in reports if r["last_ack"]), default=None)
        outcome.wall_s = (last_ack - t0) if last_ack else math.nan
        for r in reports:
            outcome.acked += r["acked"]
            outcome.requests += r["requests"]
            outcome.statuses.update({int(k): v for k, v in r["statuses"].items()})
            outcome.errors.update(r["errors"])
            outcome.latencies += r["latencies"]
            outcome.client_cpu_s += r["cpu_s"]
            outcome.max_seq = max(outcome.max_seq, r["max_seq"])
        if cpu1:
            used = {tid: cpu1[tid] - cpu0.get(tid, 0.0) for tid in cpu1}
            outcome.server_cpu_s = sum(used.values())
            outcome.thread_cpu_s = {tid: t for tid, t in used.items() if t > 0}
        if busy0 is not None and busy1 is not None:
            outcome.machine_cpu_s = busy1 - busy0
        outcome.sampled_rss_mb = sampler.peak / 2**20 if sampler.proc is not None else None

        # Folding: the watermark reaches the largest acknowledged seq.
        store = Store(f"sqlite:///{db}")
        deadline = time.time() + fold_timeout
        while store.watermark(MODEL) < outcome.max_seq and time.time() < deadline:
            if server.proc is not None and server.proc.poll() is not None:
                raise RuntimeError(f"server exited while folding: {_tail(server.logs())}")
            time.sleep(0.05)
        caught_up = time.time()
        if store.watermark(MODEL) >= outcome.max_seq:
            outcome.fold_lag_s = caught_up - (last_ack or t0)
            outcome.fold_s = caught_up - t0
        if spy is not None:
            outcome.pyspy = _finish_pyspy(spy, seconds)
            spy = None
        outcome.peak_rss_mb = _vm_hwm_mb(pid)
        rows, batches, last_seq = count_logged(store, ipc_bytes)
        outcome.logged_rows, outcome.logged_batches = rows, batches
        outcome.max_seq = max(outcome.max_seq, last_seq)
        if outcome.fold_lag_s is not None:
            # The log may hold batches whose answer never arrived: wait for those too.
            while store.watermark(MODEL) < last_seq and time.time() < deadline:
                time.sleep(0.05)
            outcome.window_rows = sum(w.rows for w in store.load_windows(MODEL))
    except Exception as error:
        outcome.error = f"{type(error).__name__}: {error}"
        with contextlib.suppress(Exception):
            outcome.error += f" (server log: {_tail(server.logs())})"
    finally:
        for proc in procs:  # only after a failure are any still running
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
        for leftover in spy or []:
            if leftover.proc.poll() is None:
                leftover.proc.kill()
                leftover.proc.wait()
        if store is not None:
            store.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return outcome


# --------------------------------------------------------------------------------------------
# py-spy: where the server's threads spend their time

PYSPY_RATE = 100

#: Thread groups, by the Python thread name py-spy reports.
THREADS = {
    "MainThread": "event loop",
    "AnyIO worker thread": "request threads",
    "watchkeeper-hub": "fold thread",
}

#: A sample whose innermost frame is one of these is a thread waiting for work.
IDLE_LEAF = re.compile(
    r"^(\w+\.)?(select|wait|get|sleep|_wait_for_tstate_lock|acquire) \((selectors|threading|"
    r"queue|time|asyncio)"
)

#: Activities, most specific first: a sample counts for the first pattern found in its stack
#: (frames as ``function (file:line)``, root to leaf, ``;``-separated).
ACTIVITIES: list[tuple[str, str]] = [
    ("append: wait for the write lock (BEGIN IMMEDIATE)", r"append_events \(.*_begin \("),
    ("append: COMMIT (WAL write, checkpoints)", r"append_events \(.*do_commit \("),
    ("append: INSERT of the payload", r"append_events \("),
    ("parse: JSON rows → Arrow (_from_rows, pa.array per column)", r"_from_rows \("),
    ("parse: JSON decode / columns → Arrow", r"(_json|_ndjson) \(.*ingest\.py"),
    ("parse: Arrow IPC read", r"parse_body \("),
    ("to_ipc re-encode", r"to_ipc \("),
    ("fold: read the event log (events_after)", r"events_after \("),
    ("fold: from_ipc", r"from_ipc \("),
    ("fold: save windows + watermark", r"(save_windows|save_findings) \("),
    ("fold: profile + merge (OnlineMonitor.ingest)", r"OnlineMonitor\.ingest \("),
    ("fold: close/evaluate windows (tick)", r"\.tick \("),
    ("fold: other", r"hub\.py"),
    ("HTTP: receive the body", r"(Request\.body|Request\.stream|ContentLengthReader|"
     r"receive_data|data_received|_read_ready) \("),
    ("HTTP: uvicorn/Starlette/FastAPI", r"(uvicorn|h11|starlette|fastapi)/"),
    ("thread hand-off (anyio, call_soon_threadsafe)", r"(call_soon_threadsafe|_write_to_self|"
     r"run_sync_in_worker_thread|WorkerThread\.run) \("),
]  # fmt: skip


@dataclass
class Spy:
    mode: str  # "idle": every thread, waiting or not; "gil": only the thread holding the GIL
    proc: subprocess.Popen[bytes]
    path: Path


def _start_pyspy(pyspy: str, pid: int, seconds: float, config: Config) -> list[Spy]:
    PYSPY_DIR.mkdir(parents=True, exist_ok=True)
    spies = []
    for mode in ("idle", "gil"):
        path = PYSPY_DIR / f"{config.label}.{mode}.txt"
        path.unlink(missing_ok=True)
        cmd = [
            pyspy, "record", "--pid", str(pid), "--rate", str(PYSPY_RATE),
            "--duration", str(max(1, int(seconds))), "--format", "raw", "--threads",
            "--nonblocking", f"--{mode}", "--output", str(path),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        spies.append(Spy(mode, proc, path))
    return spies


def _finish_pyspy(spies: list[Spy], seconds: float) -> dict[str, Any]:
    summary: dict[str, Any] = {"seconds": max(1, int(seconds))}
    for spy in spies:
        try:
            _, err = spy.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            spy.proc.kill()
            _, err = spy.proc.communicate()
        if not spy.path.exists():
            summary["error"] = _tail(err.decode(errors="replace"))
            continue
        summary[spy.mode] = summarize_pyspy(spy.path)
    return summary


def summarize_pyspy(path: Path) -> dict[str, Any]:
    """Samples by (thread group, activity) from py-spy's collapsed stacks.

    Lines look like ``thread (TID): NAME;frame;...;frame COUNT``. In non-blocking mode py-spy
    sometimes misses the name (``thread (TID);frame...``): it is taken from the thread's other
    lines. Lines without Python frames (native pool threads) are left out.
    """
    lines = []
    names: dict[int, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        head, _, frames = stack.partition(";")
        tid_text, _, name = head.partition(":")
        try:
            tid = int(tid_text.split("(", 1)[1].split(")", 1)[0])
        except (IndexError, ValueError):
            continue
        if name.strip():
            names[tid] = name.strip()
        if frames and count.isdigit():
            lines.append((tid, frames, int(count)))
    patterns = [(name, re.compile(p)) for name, p in ACTIVITIES]
    samples: Counter[tuple[str, str]] = Counter()
    threads: dict[str, set[int]] = {}
    for tid, frames, count in lines:
        group = THREADS.get(names.get(tid, ""), "other threads")
        threads.setdefault(group, set()).add(tid)
        leaf = frames.rsplit(";", 1)[-1]
        if IDLE_LEAF.search(leaf):
            activity = "idle (waiting for work)"
        else:
            activity = next((a for a, p in patterns if p.search(frames)), "other")
        samples[group, activity] += count
    return {"file": _rel(path), "samples": samples, "threads": threads}


def _pyspy_lines(o: Outcome) -> list[str]:
    """Per thread group, where its time went; then who held the GIL."""
    assert o.pyspy is not None
    lines = [f"**{o.config.label}**", ""]
    ticks = PYSPY_RATE * o.pyspy["seconds"]
    idle = o.pyspy.get("idle")
    if idle:
        per_group: dict[str, Counter[str]] = {}
        for (group, activity), n in idle["samples"].items():
            per_group.setdefault(group, Counter())[activity] += n
        for group in (*THREADS.values(), "other threads"):
            acts = per_group.get(group)
            if not acts:
                continue
            total = sum(acts.values())
            tids = idle["threads"].get(group, set())
            count = max(1, len(tids))
            busy = 100 * (total - acts["idle (waiting for work)"]) / total
            cpu = sum(o.thread_cpu_s.get(tid, 0.0) for tid in tids) / o.cpu_wall_s
            parts = ", ".join(
                f"{a} {100 * n / total:.0f}%" for a, n in acts.most_common() if 100 * n / total >= 2
            )
            lines.append(
                f"- {group} ({count} thread{'s' if count > 1 else ''}, CPU {100 * cpu:.0f}%): "
                f"not idle {busy:.0f}% of wall time — {parts}"
            )
        seen = set().union(*idle["threads"].values()) if idle["threads"] else set()
        native = [t for tid, t in o.thread_cpu_s.items() if tid not in seen]
        if native and o.cpu_wall_s > 0:
            lines.append(
                f"- {len(native)} threads without Python frames (native, e.g. Arrow's CPU pool): "
                f"CPU {100 * sum(native) / o.cpu_wall_s:.0f}%"
            )
    gil = o.pyspy.get("gil")
    if gil:
        acts = Counter()
        for (_group, activity), n in gil["samples"].items():
            acts[activity] += n
        total = sum(acts.values()) or 1
        parts = ", ".join(
            f"{a} {100 * n / total:.0f}%" for a, n in acts.most_common() if 100 * n / total >= 2
        )
        lines.append(
            f"- GIL held {100 * total / ticks:.0f}% of wall time (samples ÷ {ticks:,} ticks); "
            f"by holder: {parts}"
        )
    if o.pyspy.get("error"):
        lines.append(f"- py-spy: {_cell(o.pyspy['error'])}")
    lines.append("")
    return lines


# --------------------------------------------------------------------------------------------
# In-process ceilings (one thread, no HTTP)


def _best(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def ceilings(
    payloads: dict[tuple[str, int], bytes], tables: dict[int, pa.Table], suite: Any
) -> list[str]:
    """Rows/s of each server step alone, in this process, single-threaded."""
    lines = [
        "| step | batch rows | rows/s (one thread, best of 3) |",
        "|---|---:|---:|",
    ]
    for (fmt, batch), body in payloads.items():
        seconds = _best(lambda b=body, f=fmt: parse_body(b, CONTENT_TYPES[f]))
        lines.append(f"| parse_body {fmt} | {batch:,} | {batch / seconds:,.0f} |")
    with tempfile.TemporaryDirectory(prefix="bench_ingest_ceiling_") as scratch:
        store = Store(f"sqlite:///{Path(scratch) / 'ceiling.db'}")
        try:
            for batch, table in tables.items():
                ipc = to_ipc(table)
                seconds = _best(lambda t=table: to_ipc(t))
                lines.append(f"| to_ipc (re-encode) | {batch:,} | {batch / seconds:,.0f} |")
                seconds = _best(lambda p=ipc, n=batch: store.append_events(MODEL, p, n))
                lines.append(
                    f"| Store.append_events (SQLite, {len(ipc) / 2**20:.1f} MiB) | {batch:,} "
                    f"| {batch / seconds:,.0f} |"
                )
                seconds = _best(lambda p=ipc: from_ipc(p))
                lines.append(f"| fold: from_ipc | {batch:,} | {batch / seconds:,.0f} |")
                seconds = _best(lambda t=table: suite.profile(t))
                lines.append(f"| fold: suite.profile | {batch:,} | {batch / seconds:,.0f} |")
        finally:
            store.close()
    return lines


# --------------------------------------------------------------------------------------------
# Report


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _codes(counter: Counter[Any]) -> str:
    return ", ".join(f"{k}×{v}" for k, v in sorted(counter.items())) or "0"


def _num(value: float | None, spec: str, missing: str = "—") -> str:
    return missing if value is None or not math.isfinite(value) else format(value, spec)


def machine_info(load_at_start: str, workers: Sequence[int]) -> list[str]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    versions = []
    for name in ("watchkeeper", "pyarrow", "orjson", "fastapi", "starlette", "uvicorn",
                 "sqlalchemy", "psutil", "py-spy"):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    import sqlite3

    return [
        f"- CPUs: nproc {affinity or os.cpu_count()} ({_cpu_model()}), shared by the server "
        f"and {'/'.join(map(str, workers))} client processes",
        f"- memory: {_mem_total()}",
        f"- load average (1, 5, 15 min) at start: {load_at_start}; at end: {_loadavg()}",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_version()} ({sys.executable}); SQLite "
        f"{sqlite3.sqlite_version}",
        f"- packages: {', '.join(versions)}",
        f"- repository: {_git_describe()}",
    ]


def render(
    outcomes: list[Outcome],
    ceiling_lines: list[str] | None,
    args: argparse.Namespace,
    machine: list[str],
    command: str,
    started: dt.datetime,
    elapsed_s: float,
) -> str:
    lines = [
        "# Ingest load benchmark: `watchkeeper serve` on loopback",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, {elapsed_s / 60:.1f} min in all. For each row a "
        "fresh server (SQLite store, window 1m, grace 10s) and N client processes, each "
        f"posting one pre-encoded batch over a keep-alive connection for {args.seconds:g} s. "
        "Batches: 15 float + 5 string columns (`synthetic_drift_pair`) + `id`. "
        "*rows/s* = rows acknowledged (durable in the event log) / time from start to the "
        "last acknowledgement. *fold lag* = last acknowledgement → watermark at the last seq "
        "(the server folds in the background); *fold rows/s* = rows / start → caught up.",
        "",
        "| format | batch rows | clients | body MiB | requests | rows acked | **rows/s** "
        "| MiB/s | latency p50 / p99 ms | non-200 | exceptions | lost | fold lag s "
        "| fold rows/s | server CPU % (busiest threads) | clients CPU % "
        "| other processes CPU % | server peak RSS MiB (max sampled during load) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        c = o.config
        head = [c.fmt, f"{c.batch:,}", str(c.workers), f"{o.body_bytes / 2**20:.2f}"]
        if o.error and not o.requests:
            cells = [*head, f"failed: {_cell(o.error)}", *[""] * 13]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        wall = o.wall_s
        rows_all = o.acked + o.warmup_rows
        fold_rate = rows_all / o.fold_s if o.fold_s else None
        server_cpu = "—"
        if o.server_cpu_s is not None and o.cpu_wall_s > 0:
            busiest = sorted(o.thread_cpu_s.values(), reverse=True)
            shares = [100 * t / o.cpu_wall_s for t in busiest]
            server_cpu = (
                f"{100 * o.server_cpu_s / o.cpu_wall_s:.0f} ("
                + "/".join(f"{x:.0f}" for x in shares if x >= 3)
                + ")"
            )
        client_cpu = 100 * o.client_cpu_s / args.seconds
        others = None
        if o.machine_cpu_s is not None and o.server_cpu_s is not None and o.cpu_wall_s > 0:
            others = 100 * (o.machine_cpu_s - o.server_cpu_s - o.client_cpu_s) / o.cpu_wall_s
        cells = [
            *head,
            f"{o.requests:,}",
            f"{o.acked:,}",
            f"**{_num(o.rows_per_s, ',.0f')}**",
            _num(o.requests * o.body_bytes / 2**20 / wall, ".0f"),
            f"{_num(_pct(o.latencies, 0.5) * 1e3, '.0f')} / "
            f"{_num(_pct(o.latencies, 0.99) * 1e3, '.0f')}",
            _codes(o.non200),
            _codes(o.errors),
            "?" if o.lost is None else f"{o.lost:,}",
            _num(o.fold_lag_s, ".1f", "timed out"),
            _num(fold_rate, ",.0f"),
            server_cpu,
            _num(client_cpu, ".0f"),
            _num(None if others is None else max(0.0, others), ".0f"),
            f"{_num(o.peak_rss_mb, ',.0f')} ({_num(o.sampled_rss_mb, ',.0f')})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Targets", ""]
    for family, target in TARGETS.items():
        fmts = JSON_FORMATS if family == "json" else ("arrow",)
        done = [o for o in outcomes if o.config.fmt in fmts and o.requests]
        for fmt in fmts:
            mine = [o for o in done if o.config.fmt == fmt]
            if not mine:
                continue
            best = max(mine, key=lambda o: o.rows_per_s if math.isfinite(o.rows_per_s) else 0)
            fivexx = sum(o.fivexx for o in mine)
            lost_values = [o.lost for o in mine]
            lost = None if any(v is None for v in lost_values) else sum(lost_values)
            ok = best.rows_per_s >= target and fivexx == 0 and lost == 0
            verdict = "**met**" if ok else "**missed**"
            lines.append(
                f"- {fmt} ({CONTENT_TYPES[fmt]}) ≥ {target:,} rows/s, 0 lost, 0 5xx: best "
                f"{_num(best.rows_per_s, ',.0f')} rows/s ({best.config.batch:,}-row batches, "
                f"{best.config.workers} clients, {best.rows_per_s / target:.2f}× target); "
                f"lost {'?' if lost is None else lost}, 5xx {fivexx} over "
                f"{len(mine)} run(s) — {verdict}"
            )
    lines += [
        "",
        "## Durability check",
        "",
        "Rows acknowledged (+ the warm-up batch) vs rows in the store's event log vs rows in "
        "the windows, after the watermark reached the last seq. lost = acknowledged rows "
        "missing from the log + |windows − log|.",
        "",
        "| run | acked + warm-up | event log rows (batches) | window rows | lost |",
        "|---|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        c = o.config
        logged = "—" if o.logged_rows is None else f"{o.logged_rows:,} ({o.logged_batches:,})"
        windows = "—" if o.window_rows is None else f"{o.window_rows:,}"
        lines.append(
            f"| {c.label} | {o.acked + o.warmup_rows:,} | {logged} | {windows} "
            f"| {'?' if o.lost is None else o.lost} |"
        )
    failed = [o for o in outcomes if o.error]
    if failed:
        lines += ["", "## Errors", ""]
        lines += [f"- {o.config.label}: {_cell(o.error or '')}" for o in failed]
    spied = [o for o in outcomes if o.pyspy]
    if spied:
        lines += [
            "",
            "## Where the server's time goes (py-spy)",
            "",
            f"Two `py-spy record --rate {PYSPY_RATE} --nonblocking --threads` on the server "
            "during the timed part of each run: with `--idle`, every thread is sampled on "
            "every tick, so a share is of that thread group's wall time (waiting for the GIL "
            "counts as the activity it waits in); with `--gil`, only the thread holding the "
            "GIL is sampled, so the sample count over the ticks is how busy the GIL was. "
            "*CPU* is the group's CPU time over the run (100% = one core). Collapsed stacks: "
            f"`{_rel(PYSPY_DIR)}/`.",
            "",
        ]
        for o in spied:
            lines += _pyspy_lines(o)
    if ceiling_lines:
        lines += [
            "",
            "## Single-thread ceilings of each server step (in-process, no HTTP)",
            "",
            "What one thread of this process does alone with the same batches; the server "
            "runs parse + to_ipc + append per request in its thread pool and from_ipc + "
            "profile per batch in its fold thread, all under one GIL.",
            "",
            *ceiling_lines,
        ]
    lines += [
        "",
        "## Notes",
        "",
        "- Every request of a run carries the same bytes (ids repeat); the suite has no "
        "target, so nothing is joined by id.",
        "- The clients run on the same 2 cores as the server; *clients CPU %* is their "
        "summed CPU time over the run (100 % = one core); *other processes CPU %* is the rest "
        "of the machine's busy time (/proc/stat) in the same interval, i.e. noise from "
        "whatever else ran (the machine has 200 %).",
        "- Server CPU: all its threads' CPU time over the timed run (100 % = one core), then "
        "the busiest threads' shares; the server is one Python process, so Python-level work "
        "in its threads shares one GIL.",
        "- Peak RSS is the server's `VmHWM` read before it stops (its whole life: start, "
        "load, fold).",
        "",
        "## Machine",
        "",
        *machine,
        "",
        "## Rerun",
        "",
        "```sh",
        command,
        "```",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main


def _log(message: str) -> None:
    print(f"[bench_ingest] {message}", file=sys.stderr, flush=True)


def _ints(text: str) -> list[int]:
    values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Load-test `watchkeeper serve` on loopback.")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="seconds of load per run (default 20)"
    )
    parser.add_argument(
        "--workers",
        type=_ints,
        default=[2, 4],
        help="client process counts to try, comma-separated (default 2,4)",
    )
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated subset of {','.join(FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--json-batches",
        type=_ints,
        default=[1_000, 10_000],
        help="batch rows for json, ndjson, columns (default 1000,10000)",
    )
    parser.add_argument(
        "--arrow-batches",
        type=_ints,
        default=[10_000, 100_000],
        help="batch rows for arrow (default 10000,100000)",
    )
    parser.add_argument(
        "--fold-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for folding after a run (default 600)",
    )
    parser.add_argument(
        "--py-spy", action="store_true", help="sample the server with py-spy during each run"
    )
    parser.add_argument(
        "--no-ceilings", action="store_true", help="skip the in-process single-thread timings"
    )
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        parser.error(f"--formats: unknown {unknown}; choose from {','.join(FORMATS)}")
    args.formats = [f for f in FORMATS if f in formats]
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    t_start = time.perf_counter()
    load_at_start = _loadavg()
    command = _shown([
        os.path.abspath(sys.executable), _rel(__file__),
        "--seconds", f"{args.seconds:g}",
        "--workers", ",".join(map(str, args.workers)),
        "--formats", ",".join(args.formats),
        "--json-batches", ",".join(map(str, args.json_batches)),
        "--arrow-batches", ",".join(map(str, args.arrow_batches)),
        *(["--py-spy"] if args.py_spy else []),
        *(["--no-ceilings"] if args.no_ceilings else []),
    ])  # fmt: skip
    pyspy = None
    if args.py_spy:
        pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if pyspy is None:
            sys.exit("--py-spy: py-spy not found; .venv/bin/pip install py-spy")
    if psutil is None:
        _log("psutil not installed (the `bench` extra): RSS from /proc only")

    scratch = Path(tempfile.mkdtemp(prefix="bench_ingest_suite_"))
    try:
        reference = synthetic_drift_pair(REFERENCE_ROWS, seed=0)[0]
        reference = reference.append_column("id", pa.array(np.arange(REFERENCE_ROWS)))
        _log(f"building the suite on {REFERENCE_ROWS:,} reference rows ...")
        suite = wk.init(reference)
        suite_path = scratch / "suite.yaml"
        suite.save(suite_path)

        plan: list[tuple[str, int]] = []
        for fmt in args.formats:
            batches = args.arrow_batches if fmt == "arrow" else args.json_batches
            plan += [(fmt, batch) for batch in batches]
        tables = {batch: batch_table(batch) for batch in sorted({b for _, b in plan})}
        _log("encoding batches ...")
        payloads = {(fmt, batch): encode(tables[batch], fmt) for fmt, batch in plan}
        ceiling_lines = None
        if not args.no_ceilings:
            _log("timing single-thread ceilings ...")
            ceiling_lines = ceilings(payloads, tables, suite)
        ipc_sizes = {batch: len(to_ipc(table)) for batch, table in tables.items()}

        outcomes = []
        for fmt, batch in plan:
            for workers in args.workers:
                config = Config(fmt, batch, workers)
                _log(
                    f"{config.label}: {len(payloads[fmt, batch]) / 2**20:.1f} MiB per "
                    f"request, {args.seconds:g} s ..."
                )
                outcome = run_config(
                    config,
                    payloads[fmt, batch],
                    ipc_sizes[batch],
                    suite_path,
                    args.seconds,
                    args.fold_timeout,
                    pyspy,
                )
                outcomes.append(outcome)
                if outcome.error:
                    _log(f"  failed: {outcome.error}")
                _log(
                    f"  {outcome.rows_per_s:,.0f} rows/s acked, non-200 "
                    f"{_codes(outcome.non200)}, exceptions {_codes(outcome.errors)}, lost "
                    f"{outcome.lost}, fold lag {_num(outcome.fold_lag_s, '.1f')} s, peak RSS "
                    f"{_num(outcome.peak_rss_mb, ',.0f')} MiB"
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report = render(
        outcomes,
        ceiling_lines,
        args,
        machine_info(load_at_start, args.workers),
        command,
        started,
        time.perf_counter() - t_start,
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    # A profiled run goes to its own file: py-spy costs the server a little CPU.
    out = RESULTS_DIR / ("ingest_loopback_pyspy.md" if args.py_spy else "ingest_loopback.md")
    write_report(out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
