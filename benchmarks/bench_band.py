"""Does the estimated-performance band cover the realised metric on real drifted windows?

For each data set and windowing, a suite is built from the labeled reference and the
analysis rows are checked with their labels joined, so every window has both the label-free
estimate (with its 95% band) and the realised metric. Three bands: "sampling", the sampling
band alone (a suite without ``shift_sd``, as every suite had before it); "init", widened by
``shift_sd`` (the estimator's error measured at init), what a window gets with no earlier
labelled window; "reported", the band each window reports in time order, widened by the
errors of the labelled windows before it (``estimated_band_method``). The estimate itself
is the same in all three, so its error (MAE) is reported once. Also counted:
``estimated_performance`` findings, and how many of them the realised metric confirms
(realised past the same threshold).

Data (both in ``data/``, nothing downloaded):

- ACS employment, Massachusetts: reference 2015, analysis 2016-2018 with the labels joined
  by id; windows by year and of 10,000 consecutive rows.
- Rainfall, Bellevue (Nebraska), NOAA daily weather in time order: a scikit-learn logistic
  regression trained on the first 3,650 rows (about ten years) predicts rain; the next
  3,650 rows are the reference, rows 7,300-11,999 (about 13 years) the analysis, in windows
  of 365 rows (about a year) and 120 rows (about four months, so each window is one
  season). From row 12,000 on the data set's labels are inverted (its authors' injected
  concept drift: the realised ROC-AUC falls to about 0.2), which no label-free estimate can
  see; that part is reported apart.

Run from the repository root: ``.venv/bin/python benchmarks/bench_band.py`` (about two
minutes); the report goes to ``benchmarks/results/band_coverage.md``.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import watchkeeper as wk
from watchkeeper.monitors.estimate import (
    BAND_AT_INIT,
    BAND_HISTORY,
    ESTIMATED,
    MIN_LABELLED_WINDOWS,
    EstimatedPerformance,
)

ROOT = Path(__file__).resolve().parent.parent
ACS = ROOT / "data" / "acs_employment_ma"
RAINFALL = ROOT / "data" / "rainfall" / "rainfall_data.csv"
RESULTS = ROOT / "benchmarks" / "results" / "band_coverage.md"
#: Rainfall rows the model is trained on, then the reference's rows (about ten years each).
RAIN_TRAIN, RAIN_REFERENCE = 3_650, 3_650
#: From this row of the file on, the data set's labels are inverted (an injected concept drift).
RAIN_INVERTED = 12_000
TARGET_COVERAGE = 0.90
#: The bands compared: sampling alone, as set at init, as reported (history of labels).
BANDS = ("sampling", "init", "reported")


@dataclass
class Case:
    """One data set and windowing: the windows' estimates, bands and realised metrics."""

    name: str
    windows: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    estimated: list[dict[str, float]] = field(default_factory=list)
    realised: list[dict[str, float]] = field(default_factory=list)
    #: per kind of band (``BANDS``), per window: metric → band
    bands: dict[str, list[dict[str, tuple[float, float]]]] = field(default_factory=dict)
    findings: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # per BANDS
    methods: list[str] = field(default_factory=list)  # estimated_band_method per window
    shift_sd: dict[str, float] = field(default_factory=dict)


def acs() -> tuple[pa.Table, pa.Table, pa.Table | None, dict[str, str]]:
    reference = pq.read_table(ACS / "employment_MA_reference.pq")
    analysis = pq.read_table(ACS / "employment_MA_analysis.pq")
    labels = pq.read_table(ACS / "employment_MA_analysis_target.pq")
    roles = {"target": "employed", "prediction": "prediction",
             "proba": "predicted_probability", "id": "id"}
    return reference, analysis, labels, roles


def rainfall(inverted: bool = False) -> tuple[pa.Table, pa.Table, pa.Table | None,
                                             dict[str, str]]:
    """The rainfall rows with a logistic regression's score and prediction of rain, trained
    on the first ``RAIN_TRAIN`` rows; (reference, analysis with its labels, None, roles).
    The analysis stops where the labels are inverted, or (``inverted``) starts there."""
    from sklearn.linear_model import LogisticRegression

    table = pacsv.read_csv(RAINFALL)
    names = [n.strip().replace(" ", "_").replace("-", "_") or "day" for n in table.column_names]
    table = table.rename_columns(names)
    features = [n for n in names if n not in ("day", "rain")]
    x = np.column_stack([table.column(n).to_numpy() for n in features])
    y = table.column("rain").to_numpy()
    model = LogisticRegression(max_iter=1_000).fit(x[:RAIN_TRAIN], y[:RAIN_TRAIN])
    score = model.predict_proba(x)[:, 1]
    table = (table.append_column("score", pa.array(score))
             .append_column("prediction", pa.array((score >= 0.5).astype(np.int64))))
    reference = table.slice(RAIN_TRAIN, RAIN_REFERENCE)
    start = RAIN_TRAIN + RAIN_REFERENCE
    analysis = (table.slice(RAIN_INVERTED) if inverted
                else table.slice(start, RAIN_INVERTED - start))
    return reference, analysis, None, {"target": "rain", "prediction": "prediction",
                                       "proba": "score", "id": "day"}


def run_case(name: str, suite: wk.Suite, analysis: pa.Table, labels: pa.Table | None,
             **windowing: Any) -> Case:
    monitor = next(m for m in suite.monitors if isinstance(m, EstimatedPerformance))
    sampling_only = EstimatedPerformance(alpha=monitor.alpha, calibration={
        k: v for k, v in monitor.calibration.items() if k != "shift_sd"}, **monitor.settings)
    sampling_only.bind(suite.schema)
    case = Case(name, shift_sd=dict(monitor.calibration.get("shift_sd", {})))
    case.findings = {k: [] for k in BANDS}
    case.bands = {k: [] for k in BANDS}
    for w in suite.check(analysis, labels=labels, **windowing).windows:
        estimate = w.metrics.get("estimated", {})
        realised = w.metrics.get("realised", {})
        if not estimate:
            continue
        case.windows.append(w.label)
        case.rows.append(w.rows)
        case.estimated.append(estimate)
        case.realised.append(realised)
        case.methods.append(w.metrics["estimated_band_method"])
        reported = w.metrics["estimated_band"]
        case.bands["reported"].append({k: tuple(v) for k, v in reported.items()})
        case.bands["init"].append({k: tuple(v) for k, v in w.metrics.get(
            "estimated_band_init", reported).items()})
        case.bands["sampling"].append(sampling_only.measure(w.profile)["estimated_band"])
        for when, found in (("sampling", sampling_only.evaluate(w.profile, suite.reference)),
                            ("init", monitor.evaluate(w.profile, suite.reference)),
                            ("reported", [f for f in w.findings
                                          if f.monitor == EstimatedPerformance.type])):
            for f in found:
                past = realised.get(f.metric, np.nan) < f.threshold  # all higher-is-better
                case.findings[when].append((f"{w.label} {f.metric} {f.severity.value}", past))
    return case


def covers(band: tuple[float, float], value: float) -> bool:
    return band[0] <= value <= band[1]


def summary(case: Case) -> list[str]:
    history = sum(m != BAND_AT_INIT for m in case.methods)
    lines = [f"### {case.name}", "",
             f"{len(case.windows)} windows of {min(case.rows):,}–{max(case.rows):,} rows; "
             f"{history} of them with a band widened by earlier labelled windows. shift_sd "
             "(the estimator's error sd fitted at init): " + ", ".join(
                 f"{k} {v:.4f}" for k, v in case.shift_sd.items()) + ".", "",
             "| metric | MAE | max \\|error\\| | "
             + " | ".join(f"coverage {k}" for k in BANDS) + " | "
             + " | ".join(f"mean width {k}" for k in BANDS) + " | target ≥ 90% |",
             "|---|---:|---:|" + "---:|" * (2 * len(BANDS)) + "---|"]
    for k in ESTIMATED:
        rows = [i for i, (e, r) in enumerate(zip(case.estimated, case.realised, strict=True))
                if np.isfinite(e.get(k, np.nan)) and np.isfinite(r.get(k, np.nan))]
        if not rows:
            continue
        err = np.array([case.estimated[i][k] - case.realised[i][k] for i in rows])
        cover = {b: np.mean([covers(case.bands[b][i][k], case.realised[i][k]) for i in rows])
                 for b in BANDS}
        width = {b: np.mean([case.bands[b][i][k][1] - case.bands[b][i][k][0] for i in rows])
                 for b in BANDS}
        lines.append(f"| {k} | {np.abs(err).mean():.5f} | {np.abs(err).max():.4f} | "
                     + " | ".join(f"{cover[b]:.0%} ({round(cover[b] * len(rows))}/{len(rows)})"
                                  for b in BANDS) + " | "
                     + " | ".join(f"{width[b]:.4f}" for b in BANDS) + " | "
                     + ("**met**" if cover["reported"] >= TARGET_COVERAGE else "not met")
                     + " |")
    for when in BANDS:
        found = case.findings[when]
        confirmed = sum(ok for _, ok in found)
        lines.append(f"\n- `estimated_performance` findings, {when} band: {len(found)}, of "
                     f"which the realised metric is past the same threshold in {confirmed}"
                     + (": " + "; ".join(f"{d}{'' if ok else ' (false)'}" for d, ok in found)
                        if found and len(found) <= 12 else "."))
    lines.append("")
    return lines


def windows_table(case: Case, metric: str) -> list[str]:
    lines = [f"<details><summary>{case.name}: {metric} per window</summary>", "",
             "| window | rows | estimated | realised | "
             + " | ".join(f"band {b}" for b in BANDS) + " |",
             "|---|---:|---:|---:|" + "---|" * len(BANDS)]
    mark = {True: "", False: " **miss**"}
    for i, (w, n, e, r) in enumerate(zip(case.windows, case.rows, case.estimated,
                                          case.realised, strict=True)):
        if metric not in e or not np.isfinite(r.get(metric, np.nan)):
            continue
        cells = []
        for b in BANDS:
            lo, hi = case.bands[b][i][metric]
            cells.append(f"[{lo:.4f}, {hi:.4f}]{mark[covers((lo, hi), r[metric])]}")
        lines.append(f"| {w} | {n:,} | {e[metric]:.4f} | {r[metric]:.4f} | "
                     + " | ".join(cells) + " |")
    return [*lines, "", "</details>", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.time()
    cases: list[Case] = []
    init_seconds = {}
    for data_name, load, windowings in (
        ("ACS employment MA", acs, [("by year", {"window_by": "year"}),
                                    ("10,000-row windows", {"window_rows": 10_000})]),
        ("Rainfall (NOAA, Bellevue NE)", rainfall,
         [("365-row windows (about a year)", {"window_rows": 365}),
          ("120-row windows (about four months)", {"window_rows": 120})]),
        ("Rainfall after its label inversion (out of scope)", lambda: rainfall(inverted=True),
         [("365-row windows", {"window_rows": 365})]),
    ):
        reference, analysis, labels, roles = load()
        t0 = time.time()
        suite = wk.init(reference, **roles, progress=False)
        init_seconds[data_name] = time.time() - t0
        for label, windowing in windowings:
            cases.append(run_case(f"{data_name}, {label}", suite, analysis, labels,
                                  **windowing))
            print(f"{cases[-1].name}: {len(cases[-1].windows)} windows", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    lines = ["# Estimated-performance band: coverage of the realised metric on real windows",
             "", f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{time.time() - started:.0f} s in all, repository {commit}, Python "
             f"{platform.python_version()}. `wk.init` took "
             + ", ".join(f"{v:.1f} s ({k})" for k, v in init_seconds.items()) + ".", "",
             "A band *covers* a window when the realised metric (labels joined) lies inside "
             "it. **sampling**: the 95% sampling band alone (what every suite had before "
             "`shift_sd`). **init**: the sampling band widened by the estimator's own error "
             "under shift, measured at init out of fold on shifted reference chunks (what a "
             "window gets with no earlier labelled window). **reported**: the band each "
             "window reports, checked in time order with the labels joined: once "
             f"{MIN_LABELLED_WINDOWS} earlier windows are labelled, widened by the errors "
             f"of the (up to {BAND_HISTORY}) labelled windows before it "
             "(their mean and their sd beyond sampling noise; `estimated_band_method`). The "
             "estimate is the same in all three, so its error (MAE, estimate − realised) "
             "is shown once. Findings are counted with the suite's thresholds; a finding is "
             "*false* when the realised metric is not past its threshold.", ""]
    for case in cases:
        lines += summary(case)
    lines += ["## Per window", ""]
    for case in cases:
        for metric in ("accuracy", "recall", "roc_auc"):
            lines += windows_table(case, metric)
    lines += ["## Data", "",
              "- ACS: `data/acs_employment_ma/` (see `data/README.md`); labels from "
              "`employment_MA_analysis_target.pq` joined by `id`.",
              f"- Rainfall: `data/rainfall/rainfall_data.csv` (see `data/README.md`); "
              f"scikit-learn `LogisticRegression(max_iter=1000)` on rows 0–{RAIN_TRAIN - 1}, "
              f"reference rows {RAIN_TRAIN}–{RAIN_TRAIN + RAIN_REFERENCE - 1}, analysis "
              f"rows {RAIN_TRAIN + RAIN_REFERENCE}–{RAIN_INVERTED - 1}, windows of consecutive "
              f"rows; from row {RAIN_INVERTED} on the labels are inverted (the realised "
              "ROC-AUC falls to about 0.2), reported apart.", "",
              "## Rerun", "", "```sh", ".venv/bin/python benchmarks/bench_band.py", "```", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines[: 8]))
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
