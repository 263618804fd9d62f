"""Benchmark: what ingest pays for scrubbing personal data, and a wrong-token storm.

1. In process: ``Privacy.scrub`` (server/privacy.py) on a batch of ``--rows`` rows of
   ``synthetic_drift_pair`` (15 float and 5 string columns, all in the suite) plus
   ``_client`` (1,000 distinct ids), then the same batch with two columns the suite never
   saw (an e-mail column, a free-text note), and one row of 50,000 columns the suite never
   saw (half strings, half floats), against ``to_ipc`` (how the batch is stored) for
   scale. Median of ``--repeat`` runs (client pseudonyms are cached after the first).
2. Over loopback: a server (``watchkeeper serve``, tokens on, defaults) gets ``--storm``
   requests with wrong bearer tokens from one address on one keep-alive connection; counted
   by status, with the wall time.

Run: ``.venv/bin/python benchmarks/bench_privacy.py`` (about 20 s).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import watchkeeper as wk
from tests.server_helpers import Server
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.server.hub import Hub
from watchkeeper.server.privacy import Privacy
from watchkeeper.store import Store
from watchkeeper.wire import to_ipc


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def scrub_cost(rows: int, repeat: int) -> None:
    reference, current = synthetic_drift_pair(rows, seed=0)
    suite = wk.init(reference)
    batch = current.append_column("_client", pa.array([f"c{i % 1000}" for i in range(rows)]))
    extra = batch.append_column("email", pa.array([f"p{i}@mail.example" for i in range(rows)]))
    extra = extra.append_column("note", pa.array(["fine"] * rows))
    with tempfile.TemporaryDirectory() as d, Store(f"sqlite:///{d}/wk.db") as store:
        suite.save(Path(d) / "suite.yaml")
        hub = Hub(store, lease_ttl=None)
        hub.register("m", (Path(d) / "suite.yaml").read_text())
        privacy = Privacy(hub)
        wide = pa.table({f"c{i}": pa.array(["v"] if i % 2 else [1.5]) for i in range(50_000)})
        for name, table in (("suite columns + _client", batch),
                            ("+ 2 unknown string columns", extra),
                            ("1 row of 50,000 unknown columns", wide)):
            scrub = median_ms(lambda t=table: privacy.scrub("m", t), repeat)
            store_ms = median_ms(lambda t=table: to_ipc(t), repeat)
            print(f"scrub {table.num_rows:,} rows, {name}: {scrub:.1f} ms; "
                  f"to_ipc {store_ms:.1f} ms")


def storm(count: int) -> None:
    reference, _ = synthetic_drift_pair(2_000, seed=0)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        wk.init(reference).save(work / "suite.yaml")
        server = Server(work, "--store", f"sqlite:///{work / 'wk.db'}", "--suite",
                        f"m={work / 'suite.yaml'}").start()
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
            statuses: Counter[int] = Counter()
            start = time.perf_counter()
            for i in range(count):
                conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer g{i}"})
                response = conn.getresponse()
                response.read()
                statuses[response.status] += 1
            elapsed = time.perf_counter() - start
            conn.close()
        finally:
            server.stop()
    print(f"{count} wrong bearer tokens from one address in {elapsed:.2f} s: "
          + ", ".join(f"{n}× {s}" for s, n in sorted(statuses.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--storm", type=int, default=200)
    args = parser.parse_args()
    scrub_cost(args.rows, args.repeat)
    storm(args.storm)


if __name__ == "__main__":
    main()
