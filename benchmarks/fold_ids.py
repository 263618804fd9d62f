"""Fold throughput of id'd rows (prediction records kept in the store for late labels)
against rows without an id, in process (no HTTP: the fold alone).

A hub (window 1m, grace 10s, retention 7d, no lease) on a fresh store with the binary
suite of join_memory.py (id, x, z, proba, prediction; target label, id id). ``--rows``
rows in Arrow batches of ``--batch`` rows (event times over 60 minutes, each batch an
interval of its own, as live traffic comes) are appended to the store's event log first;
then the hub's fold folds them all (``Fold.advance`` in this thread, no window closing),
and its wall time (and the process's CPU time: the machine may be shared) until the
watermark reaches the last batch is reported, with rows/s. Two streams on the same suite:
the rows with their ``id`` column (each one written to label_records), and the same rows
without it. Counts are checked (rows windowed, records stored).

    .venv/bin/python benchmarks/fold_ids.py --rows 1000000
    .venv/bin/python benchmarks/fold_ids.py --store postgresql+psycopg://127.0.0.1/test
    .venv/bin/python benchmarks/fold_ids.py --rows 200000 --profile /tmp/fold.prof  # cProfile

It prints one table row per stream.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
from benchmarks.join_memory import rows  # the same id'd stream as the join benchmark

import watchkeeper as wk
from tests.server_helpers import scratch_schema
from watchkeeper.server.hub import Hub
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile
from watchkeeper.wire import to_ipc

MODEL = "m"
T0 = 1_700_000_000.0
SPAN = 3600.0




def suite_text() -> str:
    reference = rows(20_000, 0, 1, T0, SPAN).drop_columns(["_ts"])
    label = (np.random.default_rng(2).random(20_000) < 0.5).astype(np.int64)
    reference = reference.append_column("label", pa.array(label))
    return suitefile.dump(wk.init(reference, target="label", id="id").to_dict())


def fold(url: str, n: int, batch: int, with_ids: bool,
         profile: Path | None) -> tuple[float, float, int, int]:
    """Seconds (wall, CPU) to fold ``n`` logged rows, rows windowed, prediction records
    stored."""
    with Store(url) as store:
        now = [T0]  # no window closes: the fold alone is timed
        hub = Hub(store, window=timedelta(minutes=1), grace=timedelta(seconds=10),
                  clock=lambda: now[0])
        hub.load()
        hub.register(MODEL, suite_text())
        hub.step(now=now[0])  # the model loaded, nothing to fold yet
        step = SPAN * batch / n
        last = 0
        for i, first in enumerate(range(0, n, batch)):
            table = rows(min(batch, n - first), first, 10 + i, T0 + i * step, step)
            if not with_ids:
                table = table.drop_columns(["id"])
            last = store.append_events(MODEL, to_ipc(table), rows=table.num_rows)
        profiler = cProfile.Profile() if profile else None
        t0, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        hub.fold.advance(MODEL, hub.states()[MODEL])  # the fold alone, in this thread
        if profiler:
            profiler.disable()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
        if profiler and profile:
            profiler.dump_stats(str(profile))
        assert store.watermark(MODEL) == last
        windowed = sum(w.rows for w in store.load_windows(MODEL))
        return seconds, cpu, windowed, store.label_record_count(MODEL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--store", default=None,
                        help="a PostgreSQL URL (a scratch schema is used); default SQLite")
    parser.add_argument("--streams", default="ids,no-ids", help="ids, no-ids or both")
    parser.add_argument("--profile", type=Path, default=None,
                        help="cProfile the fold of the id'd stream into this file")
    args = parser.parse_args()
    print("| store | stream | rows | fold s | CPU s | rows/s | rows windowed | records |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for stream in args.streams.split(","):
        ids = stream == "ids"
        with tempfile.TemporaryDirectory(prefix="fold_ids_") as tmp:
            if args.store:
                with scratch_schema(args.store, "fold_ids") as url:
                    result = fold(url, args.rows, args.batch, ids, args.profile if ids else None)
            else:
                result = fold(f"sqlite:///{tmp}/fold.db", args.rows, args.batch, ids,
                              args.profile if ids else None)
        seconds, cpu, windowed, records = result
        assert windowed == args.rows, (windowed, args.rows)
        assert records == (args.rows if ids else 0), records
        kind = "PostgreSQL" if args.store else "SQLite"
        print(f"| {kind} | {stream} | {args.rows:,} | {seconds:.1f} | {cpu:.1f} | "
              f"{args.rows / seconds:,.0f} | {windowed:,} | {records:,} |", flush=True)


if __name__ == "__main__":
    main()
