"""What declarative rules cost when a batch is profiled (issue #16).

Profiles 1M synthetic loan rows (amount, limit, grade) with a suite of no rules and with
the same suite plus 3 rules, best of 5 each, in one process, alternating; and times one
rule's tally alone. Writes the Markdown table to stdout and ``benchmarks/results/rules.md``.
Run from the repository root::

    .venv/bin/python benchmarks/bench_rules.py             # 1M rows
    .venv/bin/python benchmarks/bench_rules.py --rows 100000
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from watchkeeper.baseline.expressions import Rule

RULES = {"within_limit": "amount <= limit",
         "positive_and_graded": "amount > 0 and not isnull(grade)",
         "ratio_or_grade_c": "amount / limit < 1.5 or grade == 'c'"}
OUT = Path(__file__).resolve().parent / "results" / "rules.md"


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    limit = rng.uniform(1_000, 5_000, args.rows)
    amount = limit * rng.uniform(0.2, 1.05, args.rows)
    table = pa.table({"amount": amount, "limit": limit,
                      "grade": rng.choice(["a", "b", "c"], args.rows)})
    reference = table.slice(0, 20_000)
    plain = wk.init(reference, progress=False)
    ruled = wk.init(reference, progress=False, rules=RULES)
    plain_s = ruled_s = float("inf")
    for _ in range(args.repeat):  # alternating, so load on the machine hits both alike
        plain_s = min(plain_s, best(lambda: plain.profile(table), 1))
        ruled_s = min(ruled_s, best(lambda: ruled.profile(table), 1))
    one = Rule.parse("within_limit", RULES["within_limit"])
    tally_s = best(lambda: one.tally(table), args.repeat)
    lines = [
        f"# Declarative rules: cost in profiling ({args.rows:,} rows)", "",
        f"`{Path(__file__).name} --rows {args.rows}` on {platform.machine()}, Python "
        f"{platform.python_version()}, pyarrow {pa.__version__}; best of {args.repeat}.", "",
        "| what | seconds | per million rows |", "|---|---:|---:|",
        f"| profile, no rules | {plain_s:.3f} | {plain_s / args.rows * 1e6:.3f} |",
        f"| profile, 3 rules | {ruled_s:.3f} | {ruled_s / args.rows * 1e6:.3f} |",
        f"| one rule's tally alone (`amount <= limit`) | {tally_s:.4f} | "
        f"{tally_s / args.rows * 1e6:.4f} |", "",
        "The rules: " + "; ".join(f"`{e}`" for e in RULES.values()) + ". The machine is "
        "shared with other jobs: differences under about 10% are noise.", ""]
    text = "\n".join(lines)
    print(text)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
