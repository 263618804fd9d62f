"""Takeover (and restart) time with a large retained event log.

A store holds ``--batches`` folded event batches of ``--rows`` rows each (kept for the
retention, as late labels and restarts may need them), appended directly to the store's
event log and folded once by an in-process hub. Then a new hub (a new server process, or a
follower taking the fold lease) loads the store and takes one step: the time until it has
rebuilt every model and folded one new batch is the takeover time. On SQLite, also the
takeover from a leader frozen inside a write (a connection left holding the file's write
lock): the new holder's lease write waits for the lock (1 s here), then it forks a new term
of the store, a copy of the file (store/terms.py), and loads and steps as above. Two suites:

- ``plain``: a suite without an id column (no late labels joined): nothing of the retained
  log is read;
- ``labels``: a suite with an id column: the prediction records for late labels are rows
  of the store (written by the fold), so nothing of the retained log is read either.

    .venv/bin/python benchmarks/takeover.py --batches 20000          # SQLite in a temp dir
    .venv/bin/python benchmarks/takeover.py --store postgresql+psycopg://postgres@127.0.0.1/test

It prints a Markdown table and writes benchmarks/results/takeover.md. Target (issue #19):
under 3 s with 20,000 retained batches.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from watchkeeper.server.hub import Hub
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile
from watchkeeper.wire import to_ipc

T0 = 1_700_000_000.0


def _table(n: int, seed: int, ids: bool, ts: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    columns = {"x": x, "prediction": (x > 0).astype(int), "_ts": np.full(n, ts)}
    if ids:
        columns = {"id": np.arange(seed * n, (seed + 1) * n), **columns}
    return pa.table(columns)


def _suite(ids: bool) -> str:
    reference = _table(3_000, 0, ids, T0).drop_columns(["_ts"])
    if ids:
        reference = reference.append_column("label", reference.column("prediction"))
        return suitefile.dump(wk.init(reference, target="label").to_dict())
    return suitefile.dump(wk.init(reference).to_dict())


def _hub(store: Store) -> Hub:
    return Hub(store, window=timedelta(minutes=5), grace=timedelta(0),
               retention=timedelta(days=7), clock=lambda: T0 + 600, lease_ttl=None)


def measure(url: str, model: str, ids: bool, batches: int, rows: int) -> dict[str, float]:
    """Fill the log, fold it once, then time a new hub's load and first step."""
    with Store(url) as store:
        first = _hub(store)
        first.register(model, _suite(ids))
        started = time.perf_counter()
        for i in range(batches):
            table = _table(rows, i + 1, ids, T0 + (i % 300))
            store.append_events(model, to_ipc(table), rows)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        while True:
            before = store.watermark(model)
            first.step()
            if store.watermark(model) == before:
                break
        folded = time.perf_counter() - started
        store.append_events(model, to_ipc(_table(rows, batches + 1, ids, T0 + 1)), rows)
        started = time.perf_counter()
        second = _hub(store)
        second.load()
        second.step()
        took = time.perf_counter() - started
        windowed = sum(w.rows for w in store.load_windows(model))
        assert windowed == (batches + 1) * rows, (windowed, batches, rows)
        got = {"fill": filled, "fold": folded, "takeover": took}
        if url.startswith("sqlite"):
            got.update(_frozen_takeover(store, url, model, ids, batches, rows))
    return got


def _frozen_takeover(store: Store, url: str, model: str, ids: bool, batches: int,
                     rows: int) -> dict[str, float]:
    """SQLite: the takeover from a leader frozen inside a write (it holds the write lock):
    the lease taken in a new term, then a new hub's load and first step there."""
    path = Path(url.removeprefix("sqlite:///"))
    store.acquire_lease("fold", "frozen", 60)
    store.append_events(model, to_ipc(_table(rows, batches + 2, ids, T0 + 2)), rows)
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    frozen = sqlite3.connect(path, isolation_level=None)
    try:
        frozen.execute("BEGIN IMMEDIATE")
        frozen.execute("UPDATE models SET watermark = 0")  # never committed
        started = time.perf_counter()
        lease = store.acquire_lease("fold", "next", 60, dead="frozen")  # forks a term
        forked = time.perf_counter() - started
        assert lease.owner == "next", lease
        third = _hub(store)
        third.load()
        third.step()
        took = time.perf_counter() - started
    finally:
        frozen.close()
    windowed = sum(w.rows for w in store.load_windows(model))
    assert windowed == (batches + 2) * rows, (windowed, batches, rows)
    return {"lease": forked, "frozen": took, "mib": size / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store URL (default: SQLite in a temp dir)")
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--suites", default="plain,labels")
    args = parser.parse_args(argv)
    lines = [f"# Takeover with {args.batches:,} retained batches of {args.rows} rows", "",
             "| suite | store | fill log (s) | first fold (s) | takeover (s) | store (MiB) | "
             "leader frozen in a write: lease in a new term (s) | takeover (s) |",
             "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.suites.split(","):
            url = args.store or f"sqlite:///{Path(tmp) / name}.db"
            model = f"takeover_{name}_{int(time.time())}"
            got = measure(url, model, name == "labels", args.batches, args.rows)
            backend = url.split(":", 1)[0]
            frozen = (f"{got['mib']:.0f} | {got['lease']:.2f} | {got['frozen']:.2f}"
                      if "frozen" in got else "– | – | –")
            lines.append(f"| {name} | {backend} | {got['fill']:.1f} | {got['fold']:.1f} | "
                         f"{got['takeover']:.2f} | {frozen} |")
            print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    out = Path(__file__).resolve().parent / "results" / "takeover.md"
    out.write_text(report)
    sys.stdout.write("\n" + report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
