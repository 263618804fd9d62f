"""Peak memory of `watchkeeper serve` while it folds large Arrow batches.

Two measurements, each on a fresh server (SQLite store, window 1m, grace 10s) with the
suite of bench_ingest.py (15 float + 5 string columns + id):

- loopback: ``--clients`` concurrent clients post ``--batches`` Arrow batches of ``--rows``
  rows in all over loopback while the server folds; the server's peak RSS (VmHWM) once
  the watermark reached the last batch;
- backlog: the same batches are appended to the store's event log first, then the server
  starts and folds them all at once (the fold alone: a restart after an outage, or a new
  leader taking over a backlog); VmHWM once caught up.

    .venv/bin/python benchmarks/fold_memory.py --batches 20 --rows 100000 --clients 2,4
    .venv/bin/python benchmarks/fold_memory.py --backlog 20 -- --fold-mib 16  # serve options

It writes benchmarks/results/fold_memory.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from tests.server_helpers import WRITE, Server, request, wait_for
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.store import Store
from watchkeeper.wire import to_ipc

MODEL = "bench"
ARROW = "application/vnd.apache.arrow.stream"


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def last_seq(store: Store) -> int:
    seq = 0
    while True:
        page = store.events_after(MODEL, seq, limit=1)
        if not page:
            return seq
        seq = page[-1].seq


def run(workdir: Path, suite_path: Path, payload: bytes, batches: int, clients: int,
        backlog: bool, extra: list[str]) -> tuple[float, float, int]:
    db = workdir / f"{'backlog' if backlog else 'loopback'}_{batches}_{clients}.db"
    args = ["--store", f"sqlite:///{db}", "--suite", f"{MODEL}={suite_path}",
            "--window", "1m", "--grace", "10s", *extra]
    if backlog:  # register the suite, then log every batch before any server runs
        server = Server(workdir, *args).start()
        server.stop()
        with Store(f"sqlite:///{db}") as store:
            for _ in range(batches):
                store.append_events(MODEL, payload, rows=ROWS[0])
    server = Server(workdir, *args).start()
    assert server.proc is not None
    pid = server.proc.pid
    start_mb = vm_rss_mb(pid)
    try:
        if not backlog:
            def post(_: int) -> None:
                status, answer = request(server.url + f"/v1/models/{MODEL}/events", payload,
                                         token=WRITE, content_type=ARROW, timeout=300)
                assert status == 200, answer

            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(post, range(batches)))
        with Store(f"sqlite:///{db}") as store:
            last = last_seq(store)
            wait_for(lambda: store.watermark(MODEL) >= last, timeout=900, every=0.2)
            rows = sum(w.rows for w in store.load_windows(MODEL))
        return start_mb, vm_hwm_mb(pid), rows
    finally:
        server.stop()


ROWS = [0]
RESULTS = Path(__file__).resolve().parent / "results" / "fold_memory.md"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="batches posted (loopback)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clients", type=_ints, default=[2, 4],
                        help="concurrent clients, one loopback run each (e.g. 2,4)")
    parser.add_argument("--backlog", type=_ints, default=[20, 50],
                        help="batches logged before the server starts, one run each")
    parser.add_argument("--note", default="", help="a line added to the report")
    parser.add_argument("serve_args", nargs="*", help="extra `watchkeeper serve` options")
    args = parser.parse_args()
    ROWS[0] = args.rows
    workdir = Path(tempfile.mkdtemp(prefix="fold_memory_"))
    reference = synthetic_drift_pair(20_000, seed=0)[0]
    reference = reference.append_column("id", pa.array(np.arange(20_000)))
    suite_path = workdir / "suite.yaml"
    wk.init(reference).save(suite_path)
    table = synthetic_drift_pair(args.rows, seed=1)[1]
    table = table.append_column("id", pa.array(np.arange(args.rows, dtype=np.int64)))
    payload = to_ipc(table)
    mib = len(payload) / 2**20
    print(f"{args.rows:,}-row Arrow batches of {mib:.1f} MiB; workdir {workdir}")
    runs = [("loopback", args.batches, c) for c in args.clients]
    runs += [("backlog", b, 0) for b in args.backlog]
    lines = []
    for mode, batches, clients in runs:
        t0 = time.monotonic()
        start, peak, rows = run(workdir, suite_path, payload, batches, max(1, clients),
                                mode == "backlog", args.serve_args)
        expected = batches * args.rows
        line = (f"| {mode} | {batches} | {clients or '—'} | {start:,.0f} | **{peak:,.0f}** | "
                f"{rows:,} / {expected:,} | {time.monotonic() - t0:.0f} |")
        print(line, flush=True)
        lines.append(line)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    report = [
        "# Fold memory: peak RSS of `watchkeeper serve` with large Arrow batches",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.rows:,}-row Arrow "
        f"batches of {mib:.1f} MiB (15 float + 5 string columns + id); SQLite store, window "
        f"1m, grace 10s; serve options: {' '.join(args.serve_args) or 'defaults'}. "
        "*loopback*: the clients post the batches over loopback while the server folds; "
        "*backlog*: the batches are in the event log before the server starts, so it folds "
        "them all at once (a restart after an outage, a new leader taking over). Peak = the "
        "server's VmHWM once the watermark reached the last batch.",
        "",
        "| mode | batches | clients | RSS at start MiB | peak RSS MiB | rows windowed | s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *lines,
        "",
        *([args.note, ""] if args.note else []),
        f"Machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; pyarrow "
        f"{pa.__version__}; repository {commit}.",
        "",
        "```sh",
        shlex.join([".venv/bin/python", "benchmarks/fold_memory.py", "--batches",
                    str(args.batches), "--rows", str(args.rows), "--clients",
                    ",".join(map(str, args.clients)), "--backlog",
                    ",".join(map(str, args.backlog)),
                    *(["--", *args.serve_args] if args.serve_args else [])]),
        "```",
        "",
    ]
    RESULTS.write_text("\n".join(report))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
