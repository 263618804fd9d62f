"""Benchmark: the CPU a model server's process spends on embedded monitoring, with
``EmbeddedSink`` (profiling and window evaluation in-process) and ``SubprocessSink`` (the same
sink in a child process; the model server only converts rows and writes them to a socket).

Each run logs ``--rows`` rows of ``synthetic_drift_pair`` (15 numeric, 5 categorical features)
through ``Client.log`` over two past one-minute windows, so both windows close during the run,
and closes the client. Measured with ``getrusage``: user + system CPU of this process from the
first ``log`` to the end of ``close`` and, for ``SubprocessSink``, of its child
(``RUSAGE_CHILDREN``: the child has ended once the sink is closed; its start, importing
watchkeeper, is included). Runs alternate between the
sinks; reported: the median over ``--repeat`` runs and the ratio of the host's CPU.

This was an assertion in ``tests/sdk/test_sdk_embedded.py`` (host CPU < 0.7x in-process); timings
are no test's business on shared machines, so it is measured here.

    .venv/bin/python benchmarks/bench_sdk_sinks.py                  # 4,000 rows, 5 runs each
    .venv/bin/python benchmarks/bench_sdk_sinks.py --rows 20000 --repeat 3

The Markdown report goes to stdout and ``benchmarks/results/sdk_sinks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULT = BENCH_DIR / "results" / "sdk_sinks.md"
START = 1_700_000_040.0  # two whole past minutes: both windows close during the run


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run(kind: str, suite: Any, rows: list[dict[str, Any]], names: list[str],
        store: Path) -> tuple[float, float]:
    """(host CPU s, child CPU s) to log ``rows`` through a fresh sink of ``kind``."""
    from watchkeeper.sdk import Client, EmbeddedSink, SubprocessSink

    url = f"sqlite:///{store}"
    sink: Any = (EmbeddedSink(suite, store_url=url, model="m", window="1m")
                 if kind == "embedded" else
                 SubprocessSink(suite, store_url=url, model="m", window="1m"))
    client = Client(sink, feature_names=names, flush_rows=500)
    half = len(rows) // 2
    host0, child0 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    for i, row in enumerate(rows):
        client.log(row, None, ts=START + 60 * (i >= half) + (i % half) * 0.01, latency_ms=5.0)
    client.close(timeout=300)
    host, child = cpu(resource.RUSAGE_SELF) - host0, cpu(resource.RUSAGE_CHILDREN) - child0
    if client.stats["flushed_rows"] != len(rows) or client.stats["dropped"]:
        sys.exit(f"{kind}: rows lost: {client.stats}")
    return host, child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import watchkeeper as wk
    from watchkeeper.io.datasets import synthetic_drift_pair

    reference, current = synthetic_drift_pair(max(args.rows, 4_000), seed=5)
    suite = wk.init(reference, progress=False)
    rows = current.slice(0, args.rows).to_pylist()
    names = list(current.column_names)
    found: dict[str, list[tuple[float, float]]] = {"embedded": [], "subprocess": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for kind in found:
                found[kind].append(run(kind, suite, rows, names, Path(tmp) / f"{kind}{i}.db"))

    def median(kind: str, j: int) -> float:
        return statistics.median(r[j] for r in found[kind])

    lines = [
        "# SDK sinks: the model server's CPU for embedded monitoring",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {args.rows:,} rows over two 1-minute "
        f"windows, median of {args.repeat} runs each (`{' '.join(sys.argv)}`)",
        "",
        "| sink | host CPU s | child CPU s | host per 1k rows ms |",
        "|---|---:|---:|---:|",
    ]
    for kind in found:
        lines.append(f"| {kind} | {median(kind, 0):.3f} | {median(kind, 1):.3f} | "
                     f"{1e6 * median(kind, 0) / args.rows:.2f} |")
    ratio = median("subprocess", 0) / median("embedded", 0)
    lines += ["", f"Host CPU, subprocess / embedded: {ratio:.2f}x (was asserted < 0.70x)."]
    report = "\n".join(lines) + "\n"
    print(report)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(report)


if __name__ == "__main__":
    main()
