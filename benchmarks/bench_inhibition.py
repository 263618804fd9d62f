"""Alert inhibition at scale: how long one window's findings take to go through the rules.

A batch of one row with 50,000 unknown columns used to make 50,003 findings, and
inhibition compared every finding with every other (quadratic: about 2 hours at 50,000).
This measures, for N findings of one window (drift on N distinct columns, every 7th column
also missing, so a seventh of them are inhibited):

- ``Rules.inhibited``: the inhibition step alone;
- ``AlertManager.process``: the whole per-window step a server runs (lifecycle,
  inhibition, grouping, notification decisions);
- the wide row itself: ``Suite.check`` of one row with N unknown columns, its number of
  ``new_column`` findings and the time of its incidents.

Run it against any checkout (``PYTHONPATH=<checkout>/src``) to compare versions; sizes
that would take longer than ``--budget`` seconds, by a quadratic extrapolation from the
last size measured, are skipped and reported as such. Prints a Markdown table.

    .venv/bin/python benchmarks/bench_inhibition.py
    .venv/bin/python benchmarks/bench_inhibition.py --sizes 1000,2000,4000,50000 --budget 60
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from watchkeeper.alerts import AlertManager, Rules
from watchkeeper.alerts.labels import finding_labels
from watchkeeper.monitors.base import Finding, Severity


def findings(n: int) -> list[Finding]:
    """N drift findings on distinct columns, and a missing column for every 7th of them."""
    drift = [Finding("feature_drift", "drift", f"c{i}", 0.3, 0.1, Severity.WARNING,
                     f"c{i} drifted") for i in range(n)]
    missing = [Finding("missing_column", "quality", f"c{i}", 1.0, 0.0, Severity.CRITICAL,
                       f"c{i} missing") for i in range(0, n, 7)]
    return drift + missing


def timed(step: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = step()
    return time.perf_counter() - start, out


def measure(sizes: list[int], budget: float) -> list[str]:
    rows = ["| findings | `Rules.inhibited` | inhibited | `AlertManager.process` |",
            "|---:|---:|---:|---:|"]
    last: tuple[int, float] | None = None
    for n in sizes:
        found = findings(n)
        if last is not None and last[1] * (len(found) / last[0]) ** 2 > budget:
            guess = last[1] * (len(found) / last[0]) ** 2
            rows.append(f"| {len(found):,} | skipped (≈ {guess:,.0f} s extrapolated) | | |")
            continue
        labels = [finding_labels("bench", f) for f in found]
        seconds, inhibited = timed(lambda labels=labels: Rules().inhibited(labels))
        manager = AlertManager("bench")
        whole, _ = timed(lambda found=found, manager=manager: manager.process(
            "w1", datetime(2026, 1, 1, tzinfo=UTC), found))
        rows.append(f"| {len(found):,} | {seconds:.3f} s | {len(inhibited):,} "  # type: ignore[arg-type]
                    f"| {whole:.3f} s |")
        last = (len(found), seconds)
    return rows


def wide_row(columns: int) -> list[str]:
    suite = wk.init(pa.table({"x": np.arange(200.0)}))
    row = pa.table({"x": [1.0], **{f"extra_{i}": [i] for i in range(columns)}})
    seconds, result = timed(lambda: suite.check(row))
    new = [f for f in result.findings if f.monitor == "new_column"]  # type: ignore[attr-defined]
    incidents = getattr(result, "incidents", None)
    extra = ""
    if incidents is not None:
        took, found = timed(incidents)
        extra = f"; incidents {took:.3f} s ({len(found)} incident(s))"  # type: ignore[arg-type]
    return [f"One row with {columns:,} unknown columns: {len(new):,} `new_column` finding(s), "
            f"check {seconds:.2f} s{extra}."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,4000,50000",
                        help="Numbers of drift findings per window, comma-separated.")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="Skip a size expected to take longer than this (seconds).")
    parser.add_argument("--wide", type=int, default=50_000,
                        help="Unknown columns of the wide row (0: skip it).")
    args = parser.parse_args()
    lines = measure([int(s) for s in args.sizes.split(",")], args.budget)
    if args.wide:
        lines += ["", *wide_row(args.wide)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
