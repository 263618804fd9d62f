"""What the label model adds to confidence-based estimation, on the ACS windows.

One suite is built from the 2015 reference (as ``watchkeeper init --target employed``);
the 2016–2018 analysis file is checked in windows of N consecutive rows with its labels.
For each window two label-free estimates of accuracy and ROC-AUC are compared with the
realised values:

- **label model**: watchkeeper's estimate (``metrics.estimated``), the sum of each row's
  P(positive) from the label model;
- **standard CBPE**: the same window's counts (score bin × predicted class) times the
  suite's calibration table, P(positive | score bin, predicted class) from the reference,
  which is what watchkeeper estimated before the label model (and what CBPE assumes).

    .venv/bin/python benchmarks/cbpe_label_model.py                  # N = 5k, 10k, 20k, 50k
    .venv/bin/python benchmarks/cbpe_label_model.py --window-rows 10000

It writes benchmarks/results/cbpe_label_model.md. Realised ROC-AUC here is watchkeeper's
binned one (within 0.0001 of the exact value on these data; bench_cbpe.py uses the exact).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import watchkeeper as wk
from watchkeeper.monitors.estimate import EstimatedPerformance
from watchkeeper.profiles.task import PERFORMANCE
from watchkeeper.stats.metrics import expected_binary

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "acs_employment_ma"
OUT = ROOT / "benchmarks" / "results" / "cbpe_label_model.md"
METRICS = ("accuracy", "roc_auc")


def errors(suite: wk.Suite, window_rows: int) -> dict[str, dict[str, list[float]]]:
    """Per window, estimate − realised for each metric and each estimator."""
    monitor = next(m for m in suite.monitors if isinstance(m, EstimatedPerformance))
    table = np.asarray(monitor.calibration["calibration"], dtype=float)
    result = suite.check(pq.read_table(DATA / "employment_MA_analysis.pq"),
                         window_rows=window_rows,
                         labels=pq.read_table(DATA / "employment_MA_analysis_target.pq"),
                         progress=False)
    out: dict[str, dict[str, list[float]]] = {"label model": {m: [] for m in METRICS},
                                              "standard CBPE": {m: [] for m in METRICS}}
    for w in result.windows:
        counts = w.profile.joint[PERFORMANCE].sum(axis=2)[:, :2]
        standard = expected_binary(counts, table, positive=1)
        for m in METRICS:
            realised = w.metrics["realised"][m]
            out["label model"][m].append(w.metrics["estimated"][m] - realised)
            out["standard CBPE"][m].append(standard[m] - realised)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-rows", type=int, nargs="*", default=[5_000, 10_000, 20_000,
                                                                        50_000])
    args = parser.parse_args(argv)
    started = time.time()
    suite = wk.init(DATA / "employment_MA_reference.pq", target="employed", progress=False)
    init_s = time.time() - started
    model = suite.schema.task.label_model
    trees = model.trees.trees if model is not None else 0
    rows = ["| window rows | windows | estimator | accuracy MAE | accuracy bias | "
            "ROC-AUC MAE | ROC-AUC bias | MAE label model / standard (acc, AUC) |",
            "|---:|---:|---|---:|---:|---:|---:|---|"]
    for n in args.window_rows:
        found = errors(suite, n)
        mae = {k: {m: float(np.mean(np.abs(v[m]))) for m in METRICS} for k, v in found.items()}
        for name, per_metric in found.items():
            ratio = (" / ".join(f"{mae['label model'][m] / mae['standard CBPE'][m]:.2f}"
                                for m in METRICS) if name == "label model" else "")
            rows.append(
                f"| {n:,} | {len(per_metric['accuracy'])} | {name} | "
                f"{mae[name]['accuracy']:.5f} | {np.mean(per_metric['accuracy']):+.5f} | "
                f"{mae[name]['roc_auc']:.5f} | {np.mean(per_metric['roc_auc']):+.5f} | {ratio} |")
        print(f"[cbpe_label_model] {n:,}-row windows done", file=sys.stderr)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    lines = [
        "# Label model vs standard CBPE (watchkeeper, ACS employment MA)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.python_version()}"
        f", repository {commit or '?'}; suite built in {init_s:.1f} s; label model: {trees} "
        "boosted trees. Windows are consecutive rows of the 2016–2018 analysis file; errors are "
        "estimate − realised. *Standard CBPE* is the same window's counts times the suite's "
        "calibration table (reference P(positive | score bin, predicted class)).",
        "",
        *rows,
        "",
        "Rerun: `.venv/bin/python benchmarks/cbpe_label_model.py`",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
