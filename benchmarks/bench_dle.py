"""Benchmark: watchkeeper's label-free regression estimate vs NannyML's DLE, same windows.

Both tools estimate a regressor's MAE and RMSE (and MAPE where defined) per window of an
analysis set without its labels, having learnt the model's errors on a labeled reference:

* ``watchkeeper`` – ``wk.init(reference, target=…, prediction=…)`` fits the loss model
  (boosted oblivious trees on the binned inputs and the prediction); ``suite.check(analysis,
  window_rows=N)`` reports ``metrics.estimated`` and its 95% ``estimated_band`` per window.
  The labels are in the analysis table only so that the realised metric and the band's
  history (errors of earlier labelled windows, ``estimated_band_method``) exist; the estimate
  itself never reads them. Both bands are scored: ``init`` (what a window gets before any
  label arrives: sampling noise widened by ``shift_sd``) and ``reported``.
* ``nannyml`` – ``nml.DLE(feature_column_names=…, y_pred=…, y_true=…, metrics=…,
  chunk_size=N)``, fit on the reference and estimate on the analysis set without labels,
  in NannyML's own venv (``benchmarks/.venv-nannyml``, shared with ``bench_cbpe.py``) by
  ``dle_worker.py``. Its band is ``lower/upper_confidence_boundary`` (± 3 sampling errors).

Windows are consecutive runs of N analysis rows (NannyML's ``chunk_size``; the analysis sets
are cut to a multiple of N), matched by their first and last row. Truth: the realised metric
of each window from its labels, computed here with numpy. A window counts as *drifted* when
its realised MAE is more than ``DRIFT_SHIFT`` (relative) away from the reference's; the
band coverage is reported on those and on all windows.

Data (nothing downloaded at run time; see ``data/README.md``):

1. NannyML's synthetic car-price data set (``data/car_price/``, copied from the Apache-2.0
   ``nannyml`` package): 60,000 reference rows with ``y_true`` and ``y_pred``, 60,000 analysis
   rows, windows of 6,000 rows (NannyML's documented chunk size).
2. NOAA daily weather at Bellevue, Nebraska, 1949–1999 (``data/rainfall/rainfall_data.csv``),
   in time order: a scikit-learn ``HistGradientBoostingRegressor`` trained on the first
   3,650 days (about 1949–1958) predicts the (standardised) sea-level pressure from the
   other weather columns; the reference is the next 1,825 days (five years), the analysis
   the next 6,461 days (71 windows of 91 days, one season each, up to row 11,936: from row
   12,000 on the source injected an artificial drift). The model's error drifts with the
   season (MAE from about 0.07 in summer to 0.5 in winter). Labels cross zero, so MAPE is
   not estimated there (the loss model's rule).

Also measured: the loss model's fit time on a synthetic 100,000-row reference with 20
inputs (15 numeric, 5 categorical), ``LossModel.fit`` alone and NannyML's ``DLE.fit``
(median of ``--repeat`` runs).

Run from the repository root: ``make bench-dle`` or ``.venv/bin/python
benchmarks/bench_dle.py`` (a few minutes; the first run installs NannyML in its venv).
The report goes to ``benchmarks/results/dle.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import watchkeeper as wk
from bench_cbpe import ensure_nannyml_venv
from bench_drift import REPO, RESULTS_DIR, _cpu_model, _git_describe, write_report
from watchkeeper.baseline.estimators import LossModel
from watchkeeper.monitors.estimate import BAND_AT_INIT

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "dle_worker.py"
CAR = REPO / "data" / "car_price"
RAINFALL = REPO / "data" / "rainfall" / "rainfall_data.csv"
RESULT_PREFIX = "DLE_WORKER_RESULT "  # must match dle_worker.py
NANNYML_ENV = {"NML_DISABLE_USAGE_LOGGING": "1"}

#: Rainfall rows: the model's training days, the reference's, one window, the windows.
RAIN_TRAIN, RAIN_REFERENCE, RAIN_WINDOW, RAIN_WINDOWS = 3_650, 1_825, 91, 71
RAIN_TARGET = "sea_level_pressure"
#: A window is "drifted" when its realised MAE is this far (relative) from the reference's.
DRIFT_SHIFT = 0.05
#: The fit-time data set: rows, numeric and categorical inputs.
FIT_ROWS, FIT_NUMERIC, FIT_CATEGORICAL = 100_000, 15, 5


@dataclass
class Data:
    """A regression task: labeled reference, analysis with labels, how to window it."""

    name: str
    reference: pa.Table
    analysis: pa.Table
    target: str
    prediction: str
    features: list[str]
    window_rows: int
    notes: str = ""


@dataclass
class Tool:
    """One tool's per-window estimates and bands (in window order), and its timings."""

    name: str
    estimated: list[dict[str, float]] = field(default_factory=list)
    bands: list[dict[str, tuple[float, float]]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""


def car_price() -> Data:
    reference = pq.read_table(CAR / "car_price_reference.pq")
    analysis = pq.read_table(CAR / "car_price_analysis.pq")
    targets = pq.read_table(CAR / "car_price_analysis_target.pq")
    if analysis.column("id").to_pylist() != targets.column("id").to_pylist():
        raise SystemExit("car_price_analysis_target.pq is not in the analysis file's order")
    analysis = analysis.append_column("y_true", targets.column("y_true"))
    features = ["car_age", "km_driven", "price_new", "accident_count", "door_count", "fuel",
                "transmission"]
    return Data("NannyML synthetic car price", reference, analysis, "y_true", "y_pred",
                features, 6_000, "60,000 reference rows, 60,000 analysis rows in 10 windows "
                "of 6,000")


def rainfall() -> Data:
    from sklearn.ensemble import HistGradientBoostingRegressor

    table = pacsv.read_csv(RAINFALL)
    names = [n.strip().replace(" ", "_").replace("-", "_") or "day" for n in table.column_names]
    table = table.rename_columns(names)
    features = [n for n in names if n not in ("day", "rain", RAIN_TARGET)]
    x = np.column_stack([table.column(n).to_numpy() for n in features])
    y = table.column(RAIN_TARGET).to_numpy()
    model = HistGradientBoostingRegressor(random_state=0).fit(x[:RAIN_TRAIN], y[:RAIN_TRAIN])
    table = table.drop_columns(["day", "rain"]).append_column(
        "prediction", pa.array(model.predict(x)))
    start = RAIN_TRAIN + RAIN_REFERENCE
    return Data("NOAA weather, Bellevue NE: sea-level pressure",
                table.slice(RAIN_TRAIN, RAIN_REFERENCE),
                table.slice(start, RAIN_WINDOW * RAIN_WINDOWS), RAIN_TARGET, "prediction",
                features, RAIN_WINDOW,
                f"{RAIN_REFERENCE:,} reference days, {RAIN_WINDOWS} windows of "
                f"{RAIN_WINDOW} days")


def realised(data: Data) -> tuple[list[dict[str, float]], dict[str, float]]:
    """The realised metrics per window, and the reference's."""

    def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        e = p - y
        out = {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt(np.square(e).mean()))}
        if (y != 0).all():
            out["mape"] = float(np.mean(np.abs(e / y)))
        return out

    y = data.analysis.column(data.target).to_numpy()
    p = data.analysis.column(data.prediction).to_numpy()
    n = data.window_rows
    windows = [metrics(y[s:s + n], p[s:s + n]) for s in range(0, len(y), n)]
    ref = metrics(data.reference.column(data.target).to_numpy(),
                  data.reference.column(data.prediction).to_numpy())
    return windows, ref


def run_watchkeeper(data: Data) -> tuple[Tool, Tool, dict[str, Any]]:
    """(init band, reported band, the monitor's calibration)."""
    t0 = time.perf_counter()
    suite = wk.init(data.reference.select([*data.features, data.target, data.prediction]),
                    target=data.target, prediction=data.prediction, progress=False)
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = suite.check(data.analysis, window_rows=data.window_rows)
    check_s = time.perf_counter() - t0
    at_init, reported = Tool("watchkeeper (init band)"), Tool("watchkeeper (reported band)")
    for w in result.windows:
        m = w.metrics
        at_init.estimated.append(dict(m.get("estimated", {})))
        reported.estimated.append(dict(m.get("estimated", {})))
        band = m.get("estimated_band", {})
        reported.bands.append({k: tuple(v) for k, v in band.items()})
        at_init.bands.append({k: tuple(v) for k, v in m.get("estimated_band_init",
                                                                band).items()})
    at_init.seconds = reported.seconds = {"init (whole suite)": init_s, "check": check_s}
    monitor = next(m for m in suite.monitors if m.type == "estimated_performance")
    calibration = dict(monitor.calibration)
    calibration["history_windows"] = sum(
        w.metrics.get("estimated_band_method", BAND_AT_INIT) != BAND_AT_INIT
        for w in result.windows)
    return at_init, reported, calibration


def run_nannyml(data: Data, metrics: list[str], python: Path, workdir: Path) -> Tool:
    tool = Tool("NannyML DLE")
    ref, analysis = workdir / "reference.pq", workdir / "analysis.pq"
    pq.write_table(data.reference, ref)
    pq.write_table(data.analysis.drop_columns([data.target]), analysis)
    t0 = time.perf_counter()
    done = subprocess.run([str(python), str(WORKER), str(ref), str(analysis),
                           str(data.window_rows), data.target, data.prediction,
                           ",".join(metrics), ",".join(data.features)],
                          capture_output=True, text=True, env={**os.environ, **NANNYML_ENV})
    tool.seconds["process"] = time.perf_counter() - t0
    lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tool.error = f"exit {done.returncode}: {done.stderr[-800:]}"
        return tool
    payload = json.loads(lines[-1][len(RESULT_PREFIX):])
    tool.seconds.update(fit=payload["fit_s"], estimate=payload["estimate_s"])
    tool.seconds["version"] = payload["nannyml"]
    n = data.window_rows
    by_start = {c["start"]: c for c in payload["chunks"]}
    for s in range(0, data.analysis.num_rows, n):
        c = by_start.get(s)
        if c is None or c["end"] != min(s + n, data.analysis.num_rows) - 1:
            tool.estimated.append({})
            tool.bands.append({})
            continue
        tool.estimated.append({k: v for k, v in c["estimated"].items() if v is not None})
        tool.bands.append({k: (v[0], v[1]) for k, v in c["band"].items()
                           if None not in v})
    return tool


def score(tool: Tool, truth: list[dict[str, float]], drifted: list[bool], metric: str
          ) -> dict[str, Any]:
    errors, cover, cover_drift, widths = [], [], [], []
    for est, band, real, moved in zip(tool.estimated, tool.bands, truth, drifted, strict=True):
        if metric not in est or metric not in real:
            continue
        errors.append(est[metric] - real[metric])
        if metric in band:
            inside = band[metric][0] <= real[metric] <= band[metric][1]
            cover.append(inside)
            widths.append(band[metric][1] - band[metric][0])
            if moved:
                cover_drift.append(inside)
    e = np.abs(errors)
    return {"windows": len(errors), "mae": float(e.mean()) if e.size else float("nan"),
            "max": float(e.max()) if e.size else float("nan"),
            "bias": float(np.mean(errors)) if errors else float("nan"),
            "cover": (sum(cover), len(cover)), "cover_drift": (sum(cover_drift),
                                                              len(cover_drift)),
            "width": float(np.mean(widths)) if widths else float("nan")}


def synthetic_fit_table(rows: int, seed: int = 0) -> pa.Table:
    """A regressor's labeled reference with 15 numeric and 5 categorical inputs whose error
    depends on some of them."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    x = rng.normal(size=(rows, FIT_NUMERIC))
    for j in range(FIT_NUMERIC):
        columns[f"x{j}"] = x[:, j]
    levels = np.array([f"level_{k}" for k in range(10)])
    cats = rng.integers(0, 10, size=(rows, FIT_CATEGORICAL))
    for j in range(FIT_CATEGORICAL):
        columns[f"c{j}"] = levels[cats[:, j]]
    truth = x[:, :5].sum(axis=1) + 0.5 * cats[:, 0]
    noise = rng.normal(size=rows) * (0.5 + np.abs(x[:, 0]) + 0.2 * (cats[:, 1] > 5))
    columns["target"] = truth + noise
    columns["prediction"] = truth
    return pa.table(columns)


def fit_times(repeat: int, python: Path | None, workdir: Path) -> dict[str, Any]:
    table = synthetic_fit_table(FIT_ROWS)
    # the bins and task of a suite (from part of the rows: only the loss model is timed)
    schema = wk.init(table.slice(0, 20_000), target="target", prediction="prediction",
                     progress=False).schema
    task = schema.task
    inputs = {c.name: (c.edges if c.edges else tuple(c.categories or ()))
              for c in schema if c.role == "feature" and c.n_bins}
    assert task is not None and len(inputs) == FIT_NUMERIC + FIT_CATEGORICAL, inputs
    ours = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        model = LossModel.fit(table, task, inputs)
        ours.append(time.perf_counter() - t0)
    assert model is not None
    out: dict[str, Any] = {"watchkeeper": statistics.median(ours),
                           "trees": [t.trees for t in model.trees]}
    if python is not None:
        ref, analysis = workdir / "fit_reference.pq", workdir / "fit_analysis.pq"
        pq.write_table(table, ref)
        pq.write_table(table.slice(0, 1_000).drop_columns(["target"]), analysis)
        features = [n for n in table.column_names if n not in ("target", "prediction")]
        theirs = []
        for _ in range(repeat):
            done = subprocess.run([str(python), str(WORKER), str(ref), str(analysis), "1000",
                                   "target", "prediction", "mae,rmse", ",".join(features)],
                                  capture_output=True, text=True,
                                  env={**os.environ, **NANNYML_ENV})
            lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
            if lines:
                theirs.append(json.loads(lines[-1][len(RESULT_PREFIX):])["fit_s"])
        if theirs:
            out["nannyml"] = statistics.median(theirs)
    return out


def _f(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.4g}"


def _share(pair: tuple[int, int]) -> str:
    k, n = pair
    return f"{k / n:.0%} ({k}/{n})" if n else "– (0 windows)"


def report(results: list[tuple[Data, list[Tool], list[dict[str, float]], dict[str, float],
                               list[bool], dict[str, Any]]],
           fit: dict[str, Any], started: float) -> str:
    lines = ["# Regression performance without labels: watchkeeper vs NannyML DLE", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"({time.time() - started:.0f} s in all) on {_cpu_model()}, Python "
             f"{platform.python_version()}, repository {_git_describe()}. "
             "Produced by `benchmarks/bench_dle.py` (`make bench-dle`).", "",
             "Each tool estimates the metric per window without the window's labels; the "
             "*error* of an estimate is estimate − realised. **MAE** below is the mean "
             "absolute error of the estimated metric over the windows (lower is better). "
             "A band *covers* a window when the realised metric lies inside it; *drifted* "
             f"windows are those whose realised MAE is more than {DRIFT_SHIFT:.0%} away from "
             "the reference's. watchkeeper's bands are 95% bands: **init** is what a window "
             "gets before any label (sampling noise widened by the loss model's own error "
             "under shift, `shift_sd`, measured out of fold at init); **reported** is the band "
             "the window reports when the labels of earlier windows are in (widened by their "
             "errors). NannyML's band is its confidence boundary (± 3 sampling errors).", ""]
    for data, tools, truth, ref, drifted, calibration in results:
        metrics = [k for k in ("mae", "rmse", "mape") if k in truth[0]]
        lines += [f"## {data.name}", "", f"{data.notes}; {sum(drifted)} of {len(drifted)} "
                  f"windows drifted. Reference realised: "
                  + ", ".join(f"{k} {_f(v)}" for k, v in ref.items()) + ". watchkeeper's "
                  "`shift_sd` (relative): " + ", ".join(
                      f"{k} {v:.3f}" for k, v in calibration.get("shift_sd", {}).items())
                  + f"; {calibration.get('history_windows', 0)} windows with a band from "
                  "history.", ""]
        head = ("| metric | tool | MAE of the estimate | max \\|error\\| | mean error | "
                "band coverage, drifted windows | band coverage, all windows | "
                "mean band width |")
        lines += [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
        for k in metrics:
            for tool in tools:
                if tool.error:
                    continue
                s = score(tool, truth, drifted, k)
                if not s["windows"]:
                    lines.append(f"| {k} | {tool.name} | not estimated | | | | | |")
                    continue
                lines.append(f"| {k} | {tool.name} | {_f(s['mae'])} | {_f(s['max'])} | "
                             f"{_f(s['bias'])} | {_share(s['cover_drift'])} | "
                             f"{_share(s['cover'])} | {_f(s['width'])} |")
        lines.append("")
        for tool in tools:
            if tool.error:
                lines.append(f"- {tool.name} failed: `{tool.error}`")
        timing = {t.name.split(" (")[0]: t.seconds for t in tools if t.seconds}
        lines.append("- Time: " + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v:.1f} s" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in secs.items())
            for name, secs in timing.items()) + ".")
        lines += ["", "<details><summary>per window (MAE)</summary>", "",
                  "| window | realised | " + " | ".join(t.name for t in tools
                                                          if not t.error) + " |",
                  "|---|---:|" + "---|" * sum(not t.error for t in tools)]
        for i, real in enumerate(truth):
            cells = []
            for t in tools:
                if t.error:
                    continue
                est, band = t.estimated[i].get("mae"), t.bands[i].get("mae")
                cells.append("–" if est is None else f"{est:.4g}" + (
                    f" [{band[0]:.4g}, {band[1]:.4g}]" if band else ""))
            lines.append(f"| {i * data.window_rows}–{(i + 1) * data.window_rows - 1}"
                         f"{' (drifted)' if drifted[i] else ''} | {real['mae']:.4g} | "
                         + " | ".join(cells) + " |")
        lines += ["", "</details>", ""]
    lines += ["## Fit time of the loss model", "",
              f"Synthetic regression reference of {FIT_ROWS:,} rows with {FIT_NUMERIC} numeric "
              f"and {FIT_CATEGORICAL} categorical inputs (10 levels each); median of the runs.",
              "", f"- watchkeeper `LossModel.fit` (binned inputs, boosted trees for the "
              f"absolute and squared errors; {fit['trees']} trees): "
              f"**{fit['watchkeeper']:.2f} s**"]
    if "nannyml" in fit:
        lines.append(f"- NannyML `DLE.fit` (LightGBM per metric): {fit['nannyml']:.2f} s")
    lines += ["", "## Data", "",
              "- Car price: `data/car_price/` (NannyML's `load_synthetic_car_price_dataset()`, "
              "Apache-2.0, see `data/README.md`).",
              f"- Weather: `data/rainfall/rainfall_data.csv` (NOAA, see `data/README.md`); "
              f"scikit-learn `HistGradientBoostingRegressor(random_state=0)` predicts "
              f"`{RAIN_TARGET}` from the other weather columns (not `rain`), trained on rows "
              f"0–{RAIN_TRAIN - 1}; reference rows {RAIN_TRAIN}–{RAIN_TRAIN + RAIN_REFERENCE - 1}"
              f"; analysis rows {RAIN_TRAIN + RAIN_REFERENCE}–"
              f"{RAIN_TRAIN + RAIN_REFERENCE + RAIN_WINDOW * RAIN_WINDOWS - 1}.", "",
              "## Rerun", "", "```sh", "make bench-dle   # or: .venv/bin/python "
              "benchmarks/bench_dle.py", "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "dle.md")
    parser.add_argument("--repeat", type=int, default=3, help="fit-time runs (median)")
    parser.add_argument("--no-nannyml", action="store_true", help="watchkeeper alone")
    args = parser.parse_args()
    started = time.time()
    python, why = (None, "--no-nannyml") if args.no_nannyml else ensure_nannyml_venv()
    if python is None:
        print(f"NannyML not run: {why}", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for load in (car_price, rainfall):
            data = load()
            truth, ref = realised(data)
            drifted = [abs(t["mae"] - ref["mae"]) > DRIFT_SHIFT * ref["mae"] for t in truth]
            at_init, reported, calibration = run_watchkeeper(data)
            tools = [at_init, reported]
            if python is not None:
                metrics = [k for k in ("mae", "rmse", "mape") if k in ref]
                tools.append(run_nannyml(data, metrics, python, workdir))
            results.append((data, tools, truth, ref, drifted, calibration))
            print(f"{data.name}: done", flush=True)
        fit = fit_times(args.repeat, python, workdir)
    write_report(args.out, report(results, fit, started))


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH_DIR))
    main()
