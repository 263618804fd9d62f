"""Drift on a code with 4,000 levels: alerts in clean windows and on a real shift.

Each shape draws a reference and six clean windows from one distribution over 4,000 levels,
and one window where the 10 most frequent levels are three times as likely. A good plan
gives no alert in clean windows and one on the shifted window (when the shift is larger
than the drift monitors' minimum effect). Writes ``benchmarks/results/many_levels.md``.

    .venv/bin/python benchmarks/many_levels.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

import watchkeeper as wk

LEVELS = 4_000
SHAPES = {  # name: (level weights, reference rows, window rows)
    "30 frequent levels hold 15%, 3,970 rare ones 85%":
        (np.r_[np.full(30, 0.005), np.full(3_970, 0.85 / 3_970)], 20_000, 10_000),
    "all levels alike": (np.full(LEVELS, 1 / LEVELS), 120_000, 50_000),
    "Zipf, exponent 0.35": (1 / np.arange(1, LEVELS + 1) ** 0.35, 10_000, 30_000),
    "Zipf, exponent 0.5": (1 / np.arange(1, LEVELS + 1) ** 0.5, 30_000, 30_000),
    "Zipf, exponent 0.8": (1 / np.arange(1, LEVELS + 1) ** 0.8, 30_000, 30_000),
}


def sample(weights: np.ndarray, rows: int, seed: int, boost: float = 1.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    w = weights.copy()
    w[:10] *= boost
    codes = rng.choice(LEVELS, size=rows, p=w / w.sum())
    return pa.table({"code": [f"C{c:04d}" for c in codes], "x": rng.normal(size=rows)})


def main() -> None:
    lines = ["| shape | reference rows | window rows | levels monitored | clean windows "
             "alerting | shift detected |", "|---|---|---|---|---|---|"]
    for name, (weights, n_ref, n_win) in SHAPES.items():
        suite = wk.init(sample(weights, n_ref, 1), progress=False)
        code = suite.schema["code"]
        clean = pa.concat_tables([sample(weights, n_win, s) for s in range(10, 16)])
        alerting = {f.window for f in suite.check(clean, window_rows=n_win).alerts()
                    if f.column == "code"}
        shifted = suite.check(sample(weights, n_win, 5, boost=3.0), window_rows=n_win)
        found = any(f.column == "code" for f in shifted.alerts())
        lines.append(f"| {name} | {n_ref:,} | {n_win:,} | {len(code.categories or [])} | "
                     f"{len(alerting)} of 6 | {'yes' if found else 'no'} |")
        print(lines[-1], flush=True)
    out = Path(__file__).parent / "results" / "many_levels.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# A code with 4,000 levels\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
