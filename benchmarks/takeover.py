"""Takeover (and restart) time with a large retained event log.

A store holds ``--batches`` folded event batches of ``--rows`` rows each (kept for the
retention, as late labels and restarts may need them), appended directly to the store's
event log and folded once by an in-process hub. Then a new hub (a new server process, or a
follower taking the fold lease) loads the store and takes one step: the time until it has
rebuilt every model and folded one new batch is the takeover time. Two suites:

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
    return {"fill": filled, "fold": folded, "takeover": took}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store URL (default: SQLite in a temp dir)")
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--suites", default="plain,labels")
    args = parser.parse_args(argv)
    lines = [f"# Takeover with {args.batches:,} retained batches of {args.rows} rows", "",
             "| suite | store | fill log (s) | first fold (s) | takeover (s) |",
             "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.suites.split(","):
            url = args.store or f"sqlite:///{Path(tmp) / name}.db"
            model = f"takeover_{name}_{int(time.time())}"
            got = measure(url, model, name == "labels", args.batches, args.rows)
            backend = url.split(":", 1)[0]
            lines.append(f"| {name} | {backend} | {got['fill']:.1f} | {got['fold']:.1f} | "
                         f"{got['takeover']:.2f} |")
            print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    out = Path(__file__).resolve().parent / "results" / "takeover.md"
    out.write_text(report)
    sys.stdout.write("\n" + report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
