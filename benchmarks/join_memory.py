"""Server memory and restart time with many prediction records retained for late labels.

A real ``watchkeeper serve`` on 127.0.0.1 (window 1m, retention 7d) with a binary suite
that joins labels by id; ``--rows`` id'd rows are posted in Arrow batches of ``--batch``
rows (event times over ``--minutes`` minutes, whatever the rows, all within the
retention, each batch a time interval of its own as live traffic comes: the windows kept
are the same, only the rows retained grow), then labels for
``--labels`` of them (random ids). Reported, per run: the server's RSS (VmRSS) empty
(suite deployed, no data), after the rows are folded, after the labels are folded; the
peak (VmHWM); how long a restart takes until /healthz says it folds and is caught up,
and its RSS then; labels posted after the restart that matched nothing (/metrics).

    .venv/bin/python benchmarks/join_memory.py --rows 1000000 10000000
    .venv/bin/python benchmarks/join_memory.py --store postgresql+psycopg://127.0.0.1/test
    .venv/bin/python benchmarks/join_memory.py --server-src /tmp/old/src  # an older server

It prints a table row per run (``--out FILE``: appends them there too); the results are
in benchmarks/results/join_memory.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from tests.server_helpers import READ, WRITE, Server, request, scratch_schema, wait_for
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile
from watchkeeper.wire import to_ipc

MODEL = "m"
ARROW = "application/vnd.apache.arrow.stream"


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def settled(pid: int, timeout: float = 30.0) -> float:
    """VmRSS once it has stopped moving (within 1 MiB over 3 s): the step that folded the
    last batch hands its memory back after its commit, which /healthz reports first (on a
    loaded machine, seconds later)."""
    seen = [status_mb(pid, "VmRSS")]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        seen.append(status_mb(pid, "VmRSS"))
        last = seen[-7:]
        if len(last) == 7 and max(last) - min(last) <= 1.0:
            break
    return seen[-1]


def rows(n: int, start: int, seed: int, t0: float, span: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    proba = 1 / (1 + np.exp(-x))
    return pa.table({"id": np.arange(start, start + n), "x": x, "z": rng.normal(size=n),
                     "proba": proba, "prediction": (proba > 0.5).astype(np.int64),
                     "_ts": t0 + rng.random(n) * span})


def suite_file(workdir: Path) -> Path:
    reference = rows(5_000, -5_000, 0, 0.0, 1.0).drop_columns(["_ts"])
    label = (np.random.default_rng(1).random(5_000) < reference.column("proba").to_numpy())
    reference = reference.append_column("label", pa.array(label.astype(np.int64)))
    path = workdir / "suite.yaml"
    path.write_text(suitefile.dump(wk.init(reference, target="label", id="id").to_dict()))
    return path


def post(server: Server, kind: str, table: pa.Table) -> None:
    for _ in range(100):  # 503 while the server's ingest budget is full: try again
        status, answer = request(server.url + f"/v1/models/{MODEL}/{kind}", to_ipc(table),
                                 token=WRITE, content_type=ARROW, timeout=120)
        if status != 503:
            break
        time.sleep(0.5)
    if status >= 300:
        raise RuntimeError(f"{kind}: {status} {answer}")


def caught_up(server: Server) -> bool:
    """Every batch logged is folded (/healthz: no backlog)."""
    status, answer = request(server.url + "/healthz")
    return status == 200 and answer.get("backlog_batches") == 0


def unmatched(server: Server) -> int:
    _, text = request(server.url + "/metrics", token=READ)
    found = re.findall(r'unmatched_labels\w*\{[^}]*model="m"[^}]*\} ([0-9.e+]+)', str(text))
    return int(sum(float(v) for v in found))


def folding(server: Server) -> bool:
    status, answer = request(server.url + "/healthz")
    return status == 200 and bool(answer.get("folding")) and not answer.get("loading")


def run(url: str, n: int, batch: int, labels: int, workdir: Path, env: dict[str, str],
        minutes: float, detail: bool = False) -> dict[str, float]:
    suite = suite_file(workdir)
    args = ("--store", url, "--suite", f"{MODEL}={suite}", "--window", "1m", "--grace", "10s",
            "--retention", "7d")
    server = Server(workdir, *args, env=env).start(timeout=120)
    out: dict[str, float] = {"rows": n}
    try:
        assert server.proc is not None
        wait_for(lambda: folding(server), timeout=120)
        time.sleep(2)
        out["empty MiB"] = status_mb(server.proc.pid, "VmRSS")
        span = minutes * 60.0
        t0 = time.time() - span - 60
        started = time.monotonic()
        step = span * batch / n  # each batch an interval of its own, as traffic comes
        for i, first in enumerate(range(0, n, batch)):
            post(server, "events", rows(min(batch, n - first), first, 10 + i, t0 + i * step,
                                        step))
            if i % 10 == 9:  # keep the backlog short: the fold's pace, not the network's
                wait_for(lambda: caught_up(server), timeout=600, every=0.5)
        wait_for(lambda: caught_up(server), timeout=3600, every=0.5)
        out["ingest+fold s"] = time.monotonic() - started
        out["records"] = float("nan")  # not counted for an older server: its store would
        if "PYTHONPATH" not in env:  # be migrated past it by the Store opened here
            with Store(url) as store:
                out["records"] = store.label_record_count(MODEL)
        out["after rows MiB"] = settled(server.proc.pid)
        ids = np.random.default_rng(5).choice(n, size=min(labels, n), replace=False)
        label_values = (np.random.default_rng(6).random(len(ids)) < 0.5).astype(np.int64)
        started = time.monotonic()
        post(server, "labels", pa.table({"id": ids, "label": label_values}))
        wait_for(lambda: caught_up(server), timeout=600, every=0.2)
        out["labels fold s"] = time.monotonic() - started
        out["after labels MiB"] = settled(server.proc.pid)
        if detail:  # which part of the RSS: the heap (anonymous) or mapped files
            out["anon MiB"] = status_mb(server.proc.pid, "RssAnon")
            out["file MiB"] = status_mb(server.proc.pid, "RssFile")
        out["peak MiB"] = status_mb(server.proc.pid, "VmHWM")
        server.stop()
        started = time.monotonic()
        server.start(timeout=600)
        wait_for(lambda: folding(server), timeout=600, every=0.1)
        out["restart s"] = time.monotonic() - started
        assert server.proc is not None
        out["restarted MiB"] = status_mb(server.proc.pid, "VmRSS")
        post(server, "labels", pa.table({"id": ids[:1000], "label": 1 - label_values[:1000]}))
        wait_for(lambda: caught_up(server), timeout=600, every=0.2)
        out["unmatched after restart"] = unmatched(server)
    finally:
        server.stop()
    return out


@contextmanager
def store_url(given: str | None, tmp: str) -> Iterator[str]:
    """A new SQLite file, or a schema of its own in the given PostgreSQL database."""
    if given is None:
        yield f"sqlite:///{tmp}/watchkeeper.db"
        return
    with scratch_schema(given, "wk_join_memory") as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--store", default=None, help="store URL (default: a new SQLite file)")
    parser.add_argument("--server-src", type=Path, default=None,
                        help="run the server from this src/ (e.g. an older version's, for a "
                        "comparison): it goes first on the server's PYTHONPATH")
    parser.add_argument("--server-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="environment of the server, e.g. MALLOC_ARENA_MAX=8")
    parser.add_argument("--detail", action="store_true",
                        help="also report the RSS after the labels split into anonymous "
                        "memory (heap) and mapped files")
    parser.add_argument("--out", type=Path, default=None,
                        help="also append the rows to this file")
    args = parser.parse_args()
    lines = []
    for n in args.rows:
        with tempfile.TemporaryDirectory() as tmp, store_url(args.store, tmp) as url:
            env = {"PYTHONPATH": str(args.server_src)} if args.server_src else {}
            env.update(dict(e.split("=", 1) for e in args.server_env))
            result = run(url, n, args.batch, args.labels, Path(tmp), env,
                         args.minutes, args.detail)
        backend = url.split(":", 1)[0]
        line = f"| {backend} | " + " | ".join(
            f"{v:,.0f}" if k in ("rows", "records", "unmatched after restart") else f"{v:.1f}"
            for k, v in result.items()) + " |"
        print(list(result), flush=True)
        print(line, flush=True)
        lines.append(line)
    if args.out is not None:
        with args.out.open("a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
