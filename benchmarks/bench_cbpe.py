"""Benchmark: watchkeeper's label-free performance estimate vs NannyML's CBPE, on real data.

Data: the ACS employment model in ``data/acs_employment_ma`` — a 2015 reference (68,785 rows
with the label ``employed``, the model's ``prediction`` and ``predicted_probability``) and
2016–2018 analysis data (208,892 rows, no label), whose labels are in a separate file joined
by ``id``. The windows are consecutive chunks of ``--window-rows`` rows of the analysis file,
in file order; the last one may be shorter (8,892 rows at the default 10,000, so 21 windows).

Both tools estimate accuracy and ROC-AUC per window without labels:

* ``watchkeeper`` – ``watchkeeper init REF --target employed`` builds a suite (this is where
  the scores are calibrated), then ``watchkeeper check ANALYSIS --suite SUITE --window-rows N
  --labels TARGET --format json``; the estimate is ``metrics.estimated`` of each window, its
  95% band ``metrics.estimated_band``. The labels are only joined to compute the realised
  values: a second ``check`` without ``--labels`` must give the same estimates, and the report
  says whether it did.
* ``nannyml`` – ``nml.CBPE(..., metrics=["roc_auc", "accuracy"], chunk_size=N)``, ``fit`` on
  the reference and ``estimate`` on the analysis file, in NannyML's own venv
  (``benchmarks/.venv-nannyml``, created on first use) by ``cbpe_worker.py``.

Both are scored against the same truth: the realised accuracy and the exact ROC-AUC (midranks,
Mann–Whitney) of each window, computed here with numpy/scipy from the analysis file's
predictions and the joined labels. Windows are matched by their first and last row; a window
that only one tool has is left out of the comparison and listed. watchkeeper's own realised
values (binned ROC-AUC) are compared with the exact ones too.

Each tool runs as a whole, fresh process (start-up, imports and reading the files included),
``--repeat`` times round-robin; wall time and peak RSS (GNU ``/usr/bin/time``, via
``bench_drift.measure``) are medians. The Markdown report goes to stdout and to
``benchmarks/results/cbpe_acs.md`` (``cbpe_acs_<N>.md`` for other window sizes).

Run it from the repository root with the project venv::

    .venv/bin/python benchmarks/bench_cbpe.py                      # 10,000-row windows, 3 runs
    .venv/bin/python benchmarks/bench_cbpe.py --window-rows 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Shared measuring and report helpers (same directory; importing it also checks that
# watchkeeper is importable, i.e. that the project venv runs this script).
from bench_drift import (
    REPO,
    RESULTS_DIR,
    Run,
    _cell,
    _cpu_model,
    _git_describe,
    _loadavg,
    _mem_total,
    _rel,
    _shown,
    _tail,
    _versions_here,
    _versions_in,
    _watchkeeper_cli,
    ensure_venv,
    measure,
    measure_method,
    size_label,
    warm_page_cache,
    write_report,
)

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"  # install log only; the ACS files stay where they are
WORKER = BENCH_DIR / "cbpe_worker.py"
ACS_DIR = REPO / "data" / "acs_employment_ma"
REFERENCE = ACS_DIR / "employment_MA_reference.pq"
ANALYSIS = ACS_DIR / "employment_MA_analysis.pq"
TARGETS = ACS_DIR / "employment_MA_analysis_target.pq"

NANNYML_VENV = BENCH_DIR / ".venv-nannyml"
NANNYML_PYTHON = NANNYML_VENV / "bin" / "python"
#: statsmodels is imported by NannyML but not declared by it.
NANNYML_REQUIREMENTS = ("nannyml>=0.13,<0.14", "statsmodels")
NANNYML_PACKAGES = ("nannyml", "statsmodels", "scikit-learn", "numpy", "pandas", "pyarrow")
#: NannyML sends usage statistics unless this is set.
NANNYML_ENV = {"NML_DISABLE_USAGE_LOGGING": "1"}

ID, LABEL, PREDICTION, SCORE = "id", "employed", "prediction", "predicted_probability"
METRICS = ("accuracy", "roc_auc")
DEFAULT_WINDOW_ROWS = 10_000

#: Targets stated in the report.
TARGET_MAE_RATIO = 1.0  # watchkeeper MAE / NannyML MAE, per metric
TARGET_REALISED_AUC = 0.005  # |watchkeeper realised ROC-AUC − exact ROC-AUC|, per window

RESULT_PREFIX = "CBPE_WORKER_RESULT "  # must match cbpe_worker.py
PROCESS_ORDER = ("wk_init", "wk_check", "wk_check_nolabels", "nannyml")
PROCESS_TITLES = {
    "wk_init": "watchkeeper init (reference → suite, calibrates the scores)",
    "wk_check": "watchkeeper check --labels (estimate + realised)",
    "wk_check_nolabels": "watchkeeper check, no labels (estimate only)",
    "nannyml": "NannyML CBPE (fit on reference + estimate)",
}


# --------------------------------------------------------------------------------------------
# Truth: realised values per window, computed here


@dataclass
class Window:
    """One window of the analysis file: rows ``start``…``end`` (inclusive, 0-based)."""

    start: int
    end: int
    realised: dict[str, float]
    positives: int

    @property
    def rows(self) -> int:
        return self.end - self.start + 1

    @property
    def label(self) -> str:
        return f"{self.start}-{self.end}"


def exact_roc_auc(scores: Any, labels: Any) -> float:
    """ROC-AUC by the Mann–Whitney formula on midranks (ties count one half); NaN if a class
    is missing."""
    import numpy as np
    from scipy.stats import rankdata

    positive = np.asarray(labels) == 1
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def realised_windows(window_rows: int) -> tuple[list[Window], list[str]]:
    """Realised accuracy and exact ROC-AUC per window, plus notes on the data."""
    import numpy as np
    import pandas as pd

    analysis = pd.read_parquet(ANALYSIS, columns=[ID, PREDICTION, SCORE])
    targets = pd.read_parquet(TARGETS, columns=[ID, LABEL])
    notes = []
    if not analysis[ID].is_unique or not targets[ID].is_unique:
        raise SystemExit("ids are not unique in the analysis or the target file")
    labels = analysis[ID].map(targets.set_index(ID)[LABEL])
    if labels.isna().any():
        raise SystemExit(f"{int(labels.isna().sum())} analysis rows have no label")
    y = labels.to_numpy(dtype=np.int64)
    prediction = analysis[PREDICTION].to_numpy(dtype=np.int64)
    score = analysis[SCORE].to_numpy(dtype=np.float64)
    if np.isnan(score).any() or analysis[PREDICTION].isna().any():
        raise SystemExit("the analysis file has missing predictions or scores")
    notes.append(
        f"labels joined by `{ID}`: {len(y):,} of {len(analysis):,} analysis rows, "
        f"{len(targets):,} rows in the target file"
    )
    windows = []
    for start in range(0, len(y), window_rows):
        end = min(start + window_rows, len(y)) - 1
        part = slice(start, end + 1)
        realised = {
            "accuracy": float(np.mean(prediction[part] == y[part])),
            "roc_auc": exact_roc_auc(score[part], y[part]),
        }
        windows.append(Window(start, end, realised, int(y[part].sum())))
    return windows, notes


# --------------------------------------------------------------------------------------------
# Processes


@dataclass
class Process:
    """A measured command, its runs and what was read from each run's output."""

    name: str
    cmd: list[str]
    env: dict[str, str] | None = None
    runs: list[Run] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


_WINDOW_LABEL = re.compile(r"rows (\d+)-(\d+)$")


def parse_watchkeeper(stdout: str) -> list[dict[str, Any]]:
    """Per-window estimates from ``watchkeeper check --format json``.

    Contract: ``{"windows": [{"window": "rows 0-9999", "rows": N, "metrics": {"realised":
    {...}, "estimated": {...}, "estimated_band": {name: [lo, hi]}, ...}}]}``. The first and
    last row come from the window's name when it has the ``rows A-B`` form, otherwise from the
    running total of ``rows``; both must agree when both exist.
    """
    report = json.loads(stdout)
    out = []
    offset = 0
    for window in report["windows"]:
        rows = int(window["rows"])
        name = str(window.get("window", ""))
        start, end = offset, offset + rows - 1
        found = _WINDOW_LABEL.search(name)
        if found and (int(found.group(1)), int(found.group(2))) != (start, end):
            raise ValueError(f"window {name!r} does not match its row count {rows} at {offset}")
        offset += rows
        metrics = window.get("metrics", {})
        out.append(
            {
                "name": name,
                "start": start,
                "end": end,
                "estimated": metrics.get("estimated", {}),
                "band": metrics.get("estimated_band", {}),
                "realised": metrics.get("realised", {}),
            }
        )
    return out


def parse_worker(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    raise ValueError("no result line in the worker's output")


def run_once(process: Process, timeout_s: float) -> None:
    """One timed run; on failure sets ``process.error`` and keeps no figures."""
    try:
        run = measure(process.cmd, env=process.env, timeout_s=timeout_s)
    except OSError as error:
        process.error = f"could not start: {error}"
        return
    if run.timed_out:
        process.error = f"timed out after {timeout_s:g} s"
        return
    try:
        if run.returncode != 0 and not process.name.startswith("wk_check"):
            raise ValueError(f"exit {run.returncode}")
        if process.name == "nannyml":
            result: Any = parse_worker(run.stdout)
        elif process.name == "wk_init":
            result = None
        else:
            result = parse_watchkeeper(run.stdout)
            if run.returncode != 0:
                note = f"exited {run.returncode} (output parsed as JSON)"
                if note not in process.notes:
                    process.notes.append(note)
    except (ValueError, KeyError, TypeError) as error:
        process.error = f"{error}: {_tail(run.stderr or run.stdout)}"
        return
    process.runs.append(run)
    process.results.append(result)


def ensure_nannyml_venv() -> tuple[Path | None, str]:
    """NannyML's venv python, creating the venv on first use; (None, why) on failure."""
    return ensure_venv(NANNYML_VENV, NANNYML_REQUIREMENTS, "import nannyml, statsmodels",
                       env={**os.environ, **NANNYML_ENV}, timeout=3600)


def build_processes(suite: Path, window_rows: int, nannyml_python: Path | None) -> list[Process]:
    cli = _watchkeeper_cli()
    ref, analysis, targets = _rel(REFERENCE), _rel(ANALYSIS), _rel(TARGETS)
    init = [cli, "init", ref, "--target", LABEL, "-o", str(suite), "--force"]
    check = [cli, "check", analysis, "--suite", str(suite), "--window-rows", str(window_rows)]
    processes = [
        Process("wk_init", init),
        Process("wk_check", [*check, "--labels", targets, "--format", "json"]),
        Process("wk_check_nolabels", [*check, "--format", "json"]),
    ]
    if nannyml_python is not None:
        cmd = [str(nannyml_python), _rel(WORKER), ref, analysis, str(window_rows)]
        processes.append(Process("nannyml", cmd, env={**os.environ, **NANNYML_ENV}))
    return processes


# --------------------------------------------------------------------------------------------
# Comparison


@dataclass
class Estimates:
    """One tool's per-window estimates and bands, keyed by (start, end)."""

    value: dict[tuple[int, int], dict[str, float | None]]
    band: dict[tuple[int, int], dict[str, list[float | None] | None]]
    realised: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)


def watchkeeper_estimates(result: list[dict[str, Any]]) -> Estimates:
    est = Estimates({}, {})
    for window in result:
        key = (window["start"], window["end"])
        est.value[key] = {m: window["estimated"].get(m) for m in METRICS}
        est.band[key] = {m: window["band"].get(m) for m in METRICS}
        est.realised[key] = window["realised"]
    return est


def nannyml_estimates(result: dict[str, Any]) -> Estimates:
    est = Estimates({}, {})
    for chunk in result["chunks"]:
        key = (int(chunk["start"]), int(chunk["end"]))
        est.value[key] = {m: chunk["estimated"].get(m) for m in METRICS}
        est.band[key] = {m: chunk["band"].get(m) for m in METRICS}
    return est


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def covers(band: Any, value: float) -> bool | None:
    if not band or len(band) != 2 or _num(band[0]) is None or _num(band[1]) is None:
        return None
    return float(band[0]) <= value <= float(band[1])


def error_stats(
    windows: Sequence[Window], est: Estimates, metric: str
) -> dict[str, float | int] | None:
    """MAE, mean signed error (bias) and max |error| of ``est`` over ``windows``."""
    errors = []
    for window in windows:
        value = _num(est.value.get((window.start, window.end), {}).get(metric))
        truth = window.realised[metric]
        if value is not None and math.isfinite(truth):
            errors.append(value - truth)
    if not errors:
        return None
    return {
        "n": len(errors),
        "mae": statistics.fmean(abs(e) for e in errors),
        "bias": statistics.fmean(errors),
        "max": max(abs(e) for e in errors),
        "over": sum(e > 0 for e in errors),
    }


def _f(value: Any, digits: int = 4) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:+.{digits}f}"


def _band(band: Any) -> str:
    if not band or len(band) != 2:
        return "—"
    return f"[{_f(band[0])}, {_f(band[1])}]"


def _yes(flag: bool | None) -> str:
    return "—" if flag is None else ("yes" if flag else "**no**")


# --------------------------------------------------------------------------------------------
# Report




def machine_info(nannyml_python: Path | None, load_at_start: str) -> list[str]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    lines = [
        f"- CPUs: nproc {affinity or os.cpu_count()} ({_cpu_model()})",
        f"- memory: {_mem_total()}",
        f"- load average (1, 5, 15 min) at start: {load_at_start}; at end: {_loadavg()}",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- project venv: {_versions_here()}",
    ]
    if nannyml_python is not None:
        lines.append(f"- NannyML venv: {_versions_in(nannyml_python, NANNYML_PACKAGES)}")
    lines.append(f"- repository: {_git_describe()}")
    lines.append(f"- measured with {measure_method()}; wall time around the process")
    return lines


def _same_across_runs(process: Process) -> bool:
    """Whether every run gave the same windows and values (timings aside)."""

    def values(result: Any) -> Any:
        return result["chunks"] if isinstance(result, dict) else result

    first = values(process.results[0])
    return all(values(result) == first for result in process.results[1:])


def render(
    *,
    window_rows: int,
    repeat: int,
    truth: list[Window],
    data_notes: list[str],
    processes: dict[str, Process],
    skipped: list[str],
    machine: list[str],
    command: str,
    scratch: str,
    started: dt.datetime,
    elapsed_s: float,
    suite: Path | None = None,
) -> str:
    wk_proc, nml_proc = processes.get("wk_check"), processes.get("nannyml")
    nolabel_proc = processes.get("wk_check_nolabels")
    wk = watchkeeper_estimates(wk_proc.results[0]) if wk_proc and wk_proc.results else None
    nml = nannyml_estimates(nml_proc.results[0]) if nml_proc and nml_proc.results else None
    nolabel = (
        watchkeeper_estimates(nolabel_proc.results[0])
        if nolabel_proc and nolabel_proc.results
        else None
    )

    truth_keys = [(w.start, w.end) for w in truth]
    available = [est for est in (wk, nml) if est is not None]
    common = [w for w in truth if all((w.start, w.end) in est.value for est in available)]
    lines = [
        f"# Estimated performance without labels: watchkeeper vs NannyML CBPE "
        f"({window_rows:,}-row windows, ACS employment MA)",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, {elapsed_s / 60:.1f} min in all. Reference "
        f"`{_rel(REFERENCE)}` (2015, labeled); analysis `{_rel(ANALYSIS)}` (2016–2018) in "
        f"consecutive {window_rows:,}-row windows in file order ({len(truth)} windows, the last "
        f"{truth[-1].rows:,} rows). Both tools estimate without labels; both are scored against "
        "the same truth: the realised accuracy and the **exact** ROC-AUC (midranks, "
        "Mann–Whitney) of each window, computed by this script from the analysis predictions "
        f"and the labels in `{_rel(TARGETS)}` joined by `{ID}`.",
        "",
    ]
    lines += ["## Windows", ""]
    lines += _window_notes(truth_keys, wk, nml, common)
    lines += [""]
    lines += [
        "| window (rows) | n | acc realised | acc wk | acc nml | AUC realised (exact) "
        "| AUC wk | AUC nml |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in truth:
        key = (w.start, w.end)
        wk_v = wk.value.get(key, {}) if wk else {}
        nml_v = nml.value.get(key, {}) if nml else {}
        lines.append(
            f"| {w.label} | {w.rows:,} | {_f(w.realised['accuracy'])} "
            f"| {_f(wk_v.get('accuracy'))} | {_f(nml_v.get('accuracy'))} "
            f"| {_f(w.realised['roc_auc'])} | {_f(wk_v.get('roc_auc'))} "
            f"| {_f(nml_v.get('roc_auc'))} |"
        )
    lines += ["", "## Calibration on the reference", ""]
    lines += _calibration_notes(suite, nml_proc.results[0] if nml_proc and nml_proc.results
                                else None)
    lines += ["", "## Estimation error (estimate − realised), over the windows both tools have", ""]
    lines += [
        "| metric | tool | windows | MAE | mean error (bias) | max \\|error\\| | over-estimates "
        "| MAE wk / MAE nml | target ≤ 1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    ratios: dict[str, float | None] = {}
    for metric in METRICS:
        stats = {
            name: error_stats(common, est, metric) if est else None
            for name, est in (("watchkeeper", wk), ("nannyml", nml))
        }
        ratio = None
        if stats["watchkeeper"] and stats["nannyml"] and stats["nannyml"]["mae"] > 0:
            ratio = stats["watchkeeper"]["mae"] / stats["nannyml"]["mae"]
        ratios[metric] = ratio
        for name, stat in stats.items():
            if stat is None:
                lines.append(f"| {metric} | {name} | — | not measured | | | | | |")
                continue
            ratio_cell = verdict_cell = ""
            if name == "watchkeeper":
                ratio_cell = "—" if ratio is None else f"{ratio:.2f}"
                if ratio is not None:
                    verdict_cell = "**met**" if ratio <= TARGET_MAE_RATIO else "**missed**"
            lines.append(
                f"| {metric} | {name} | {stat['n']} | {stat['mae']:.5f} | {stat['bias']:+.5f} "
                f"| {stat['max']:.4f} | {stat['over']}/{stat['n']} | {ratio_cell} "
                f"| {verdict_cell} |"
            )
    lines += [""]
    if wk and nml:
        lines += _between_tools(common, wk, nml)
    lines += ["", "## Bands and watchkeeper's own realised values", ""]
    lines += _band_section(truth, common, wk, nml)
    lines += ["", "## Label-free check", ""]
    lines += _label_free(wk, nolabel, processes)
    lines += ["", "## Time and memory (whole processes)", ""]
    lines += _timing(processes, repeat)
    lines += ["", "## Data", ""]
    lines += [f"- {note}" for note in data_notes]
    failed = [p for p in processes.values() if p.error]
    if skipped or failed:
        lines += ["", "## Not measured / failures", ""]
        lines += [f"- {note}" for note in skipped]
        for p in failed:
            when = "a later run" if p.runs else "every run"
            lines.append(f"- {p.name} ({when}): {_cell(p.error or '')}")
    lines += ["", "## Commands (from the repository root; `$TMP` is a temporary directory)", ""]
    for name in PROCESS_ORDER:
        if name in processes:
            shown = _shown(processes[name].cmd).replace(scratch, "$TMP")
            lines.append(f"- {name}: `{shown}`")
    lines += ["", "## Machine", ""]
    lines += machine
    lines += ["", "## Rerun", "", "```sh", command, "```", ""]
    return "\n".join(lines)


def _calibration_notes(suite: Path | None, nml_result: dict[str, Any] | None) -> list[str]:
    """What each tool decided about the reference's scores: calibrate them or not, and how."""
    lines = []
    calibration: dict[str, Any] = {}
    if suite is not None and suite.exists():
        import yaml

        monitors = yaml.safe_load(suite.read_text()).get("monitors", [])
        found = [m for m in monitors if m.get("type") == "estimated_performance"]
        calibration = found[0].get("calibration", {}) if found else {}
    if calibration.get("method"):
        test = calibration.get("calibration_test") or {}
        tested = (f"; calibration test of the scores as they are: χ² {test.get('statistic')} "
                  f"on {test.get('df')} df, p = {test.get('p_value')} (α {test.get('alpha')})"
                  if test else "")
        parts = calibration["method"].split(";")
        lines.append(f"- watchkeeper: {parts[0]}{tested}.")
        lines += [f"- watchkeeper: {p.strip()}." for p in parts[1:2] if "label model" in p]
    else:
        lines.append("- watchkeeper: no calibration found in the suite.")
    if nml_result is not None and "needs_calibration" in nml_result:
        lines.append(
            f"- NannyML: `needs_calibration` = {nml_result['needs_calibration']} (its "
            f"cross-validated ECE check); calibrator {nml_result.get('calibrator')} "
            f"({'applied to every row' if nml_result['needs_calibration'] else 'not applied'})."
        )
    else:
        lines.append("- NannyML: calibration decision not reported.")
    return lines


def _window_notes(
    truth_keys: list[tuple[int, int]],
    wk: Estimates | None,
    nml: Estimates | None,
    common: list[Window],
) -> list[str]:
    lines = []
    for name, est in (("watchkeeper", wk), ("NannyML", nml)):
        if est is None:
            lines.append(f"- {name}: no estimates (see failures below).")
            continue
        keys = list(est.value)
        if keys == truth_keys:
            lines.append(
                f"- {name}: {len(keys)} windows, exactly the same rows as the truth windows "
                f"(first and last row of every window checked; last window "
                f"{keys[-1][0]}-{keys[-1][1]} kept, not merged or dropped)."
            )
        else:
            extra = sorted(set(keys) - set(truth_keys))
            missing = sorted(set(truth_keys) - set(keys))
            lines.append(
                f"- {name}: {len(keys)} windows; not among the truth windows: "
                f"{[f'{a}-{b}' for a, b in extra] or 'none'}; truth windows it lacks: "
                f"{[f'{a}-{b}' for a, b in missing] or 'none'}."
            )
    lines.append(
        f"- Compared on the {len(common)} windows that both tools have "
        f"(of {len(truth_keys)}). `wk` = watchkeeper `metrics.estimated`, `nml` = NannyML "
        "`to_df()[(metric, 'value')]`."
    )
    return lines


def _between_tools(common: list[Window], wk: Estimates, nml: Estimates) -> list[str]:
    lines = []
    for metric in METRICS:
        diffs = []
        for w in common:
            a = _num(wk.value[(w.start, w.end)].get(metric))
            b = _num(nml.value[(w.start, w.end)].get(metric))
            if a is not None and b is not None:
                diffs.append(a - b)
        if diffs:
            higher = sum(d > 0 for d in diffs)
            lines.append(
                f"- {metric}: watchkeeper − NannyML estimate, mean {statistics.fmean(diffs):+.4f}, "
                f"mean |·| {statistics.fmean(abs(d) for d in diffs):.4f}, "
                f"range [{min(diffs):+.4f}, {max(diffs):+.4f}]; watchkeeper higher in "
                f"{higher}/{len(diffs)} windows."
            )
    return lines


def _band_section(
    truth: list[Window], common: list[Window], wk: Estimates | None, nml: Estimates | None
) -> list[str]:
    lines = [
        "watchkeeper's band is `metrics.estimated_band`: a 95% sampling band (2.5–97.5 % "
        "quantiles of the metric if each score bin's labels were drawn from its calibrated "
        "probability) widened by the estimator's own error under shift (`shift_sd`, see "
        "`band_coverage.md`). NannyML's is its `lower/upper_confidence_boundary`, the "
        "estimate ± 3 × `sampling_error` (NannyML's default). `wk realised` is "
        "watchkeeper's own realised value from the joined labels; its ROC-AUC comes from "
        "score bins, so it is compared with the exact value.",
        "",
        "| window | acc band wk | covers | AUC band wk | covers | acc ±3σ nml covers "
        "| AUC ±3σ nml covers | wk labeled | wk realised acc − exact | wk realised AUC − exact |",
        "|---|---|---|---|---|---|---|---:|---:|---:|",
    ]
    cover_counts: dict[tuple[str, str], list[bool]] = {}
    widths: dict[tuple[str, str], list[float]] = {}
    auc_diffs: list[float] = []
    acc_diffs: list[float] = []
    for w in truth:
        key = (w.start, w.end)
        wk_band = wk.band.get(key, {}) if wk else {}
        nml_band = nml.band.get(key, {}) if nml else {}
        cells = []
        for tool, bands in (("wk", wk_band), ("nml", nml_band)):
            for metric in METRICS:
                band = (bands or {}).get(metric)
                flag = covers(band, w.realised[metric])
                if flag is not None and w in common:
                    cover_counts.setdefault((tool, metric), []).append(flag)
                    widths.setdefault((tool, metric), []).append(float(band[1]) - float(band[0]))
                cells.append(flag)
        realised = wk.realised.get(key, {}) if wk else {}
        acc_diff = auc_diff = None
        if _num(realised.get("accuracy")) is not None:
            acc_diff = float(realised["accuracy"]) - w.realised["accuracy"]
            acc_diffs.append(acc_diff)
        if _num(realised.get("roc_auc")) is not None:
            auc_diff = float(realised["roc_auc"]) - w.realised["roc_auc"]
            auc_diffs.append(auc_diff)
        labeled = _num(realised.get("labeled"))
        lines.append(
            f"| {w.label} | {_band(wk_band.get('accuracy'))} | {_yes(cells[0])} "
            f"| {_band(wk_band.get('roc_auc'))} | {_yes(cells[1])} | {_yes(cells[2])} "
            f"| {_yes(cells[3])} | {'—' if labeled is None else f'{labeled:,.0f}'} "
            f"| {_signed(acc_diff)} | {_signed(auc_diff)} |"
        )
    lines.append("")
    for (tool, metric), flags in sorted(cover_counts.items(), key=lambda kv: kv[0][0] != "wk"):
        what = "95% band" if tool == "wk" else "±3σ band"
        name = "watchkeeper" if tool == "wk" else "NannyML"
        lines.append(
            f"- {name} {what} covers the realised {metric} in {sum(flags)}/{len(flags)} windows "
            f"(mean width {statistics.fmean(widths[(tool, metric)]):.4f})."
        )
    if auc_diffs:
        worst = max(abs(d) for d in auc_diffs)
        within = sum(abs(d) <= TARGET_REALISED_AUC for d in auc_diffs)
        verdict = "**met**" if worst <= TARGET_REALISED_AUC else "**missed**"
        lines.append(
            f"- watchkeeper's realised ROC-AUC vs exact: max |difference| {worst:.4f}, mean "
            f"{statistics.fmean(auc_diffs):+.4f}; within {TARGET_REALISED_AUC} in "
            f"{within}/{len(auc_diffs)} windows — target {verdict}."
        )
    if acc_diffs:
        lines.append(
            f"- watchkeeper's realised accuracy vs exact: max |difference| "
            f"{max(abs(d) for d in acc_diffs):.2g}."
        )
    return lines


def _label_free(
    wk: Estimates | None, nolabel: Estimates | None, processes: dict[str, Process]
) -> list[str]:
    if wk is None or nolabel is None:
        return ["- not checked: a watchkeeper check run failed."]
    with_labels = processes["wk_check"].results[0]
    without = processes["wk_check_nolabels"].results[0]
    same_windows = [(w["start"], w["end"]) for w in with_labels] == [
        (w["start"], w["end"]) for w in without
    ]
    same_estimate = same_windows and all(
        a["estimated"] == b["estimated"] for a, b in zip(with_labels, without, strict=True)
    )
    same_band = same_windows and all(
        a["band"] == b["band"] for a, b in zip(with_labels, without, strict=True)
    )
    labeled = [_num(w["realised"].get("labeled")) or 0 for w in without]
    lines = [
        f"- `watchkeeper check` without `--labels`: {len(without)} windows, labeled rows "
        f"{sum(labeled):,.0f}; `metrics.estimated` (every metric, not just these two) "
        f"{'identical' if same_estimate else '**differs**'} to the run with labels in every "
        f"window; `metrics.estimated_band` {'identical' if same_band else '**differs**'}.",
    ]
    for name in ("wk_check", "wk_check_nolabels", "nannyml"):
        process = processes.get(name)
        if process and len(process.results) > 1:
            same = _same_across_runs(process)
            lines.append(
                f"- {name}: estimates {'identical' if same else '**differ**'} across "
                f"{len(process.results)} runs (first run shown)."
            )
    return lines


def _timing(processes: dict[str, Process], repeat: int) -> list[str]:
    lines = [
        f"Each process is fresh and run {repeat} time(s), round-robin; median wall and peak RSS.",
        "",
        "| process | wall s (median) | runs s | peak RSS MB | notes |",
        "|---|---:|---|---:|---|",
    ]
    medians: dict[str, tuple[float, float]] = {}
    for name in PROCESS_ORDER:
        process = processes.get(name)
        if process is None:
            continue
        if not process.runs:
            lines.append(f"| {PROCESS_TITLES[name]} | not measured | | | see failures |")
            continue
        wall = statistics.median(r.wall_s for r in process.runs)
        rss = statistics.median(r.peak_rss_mb for r in process.runs)
        medians[name] = (wall, rss)
        runs = ", ".join(f"{r.wall_s:.2f}" for r in process.runs)
        notes = list(process.notes)
        if name == "nannyml" and process.results:
            phases = process.results[0].get("phases", {})
            notes.append("phases " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
        lines.append(
            f"| {PROCESS_TITLES[name]} | {wall:.2f} | {runs} | {rss:.0f} "
            f"| {_cell('; '.join(notes))} |"
        )
    lines.append("")
    if "wk_init" in medians and "wk_check_nolabels" in medians and "nannyml" in medians:
        wk_total = medians["wk_init"][0] + medians["wk_check_nolabels"][0]
        wk_rss = max(medians["wk_init"][1], medians["wk_check_nolabels"][1])
        nml_wall, nml_rss = medians["nannyml"]
        lines.append(
            f"- Like for like (fit + estimate, no labels): watchkeeper init + check "
            f"{wk_total:.2f} s, peak RSS {wk_rss:.0f} MB (the larger of the two processes) vs "
            f"NannyML {nml_wall:.2f} s, {nml_rss:.0f} MB: NannyML takes "
            f"{nml_wall / wk_total:.1f}× the time and {nml_rss / wk_rss:.1f}× the memory."
        )
        lines.append(
            f"- Estimating a new batch with an existing suite (`check` only): "
            f"{medians['wk_check_nolabels'][0]:.2f} s. `check` also runs watchkeeper's other "
            "monitors (drift, data quality, fairness, …) in the same process; NannyML runs "
            "CBPE only."
        )
    return lines


# --------------------------------------------------------------------------------------------
# Main


def _log(message: str) -> None:
    print(f"[bench_cbpe] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="watchkeeper's label-free performance estimate vs NannyML's CBPE on the "
        "ACS employment data.",
    )
    parser.add_argument(
        "--window-rows",
        type=int,
        default=DEFAULT_WINDOW_ROWS,
        help=f"rows per window / NannyML chunk_size (default {DEFAULT_WINDOW_ROWS})",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per process (default 3)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds allowed per run (default 1800)"
    )
    args = parser.parse_args(argv)
    if args.window_rows < 2 or args.repeat < 1:
        parser.error("--window-rows must be ≥ 2 and --repeat ≥ 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    t_start = time.perf_counter()
    load_at_start = _loadavg()
    python = os.path.abspath(sys.executable)
    command = _shown(
        [
            python,
            _rel(__file__),
            "--window-rows",
            str(args.window_rows),
            "--repeat",
            str(args.repeat),
        ]
    )
    missing = [p for p in (REFERENCE, ANALYSIS, TARGETS) if not p.exists()]
    if missing:
        sys.exit(f"missing data: {', '.join(_rel(p) for p in missing)}")
    warm_page_cache([REFERENCE, ANALYSIS, TARGETS])
    truth, data_notes = realised_windows(args.window_rows)
    _log(f"{len(truth)} windows of {args.window_rows:,} rows; realised values computed")

    skipped = []
    nannyml_python, why = ensure_nannyml_venv()
    if nannyml_python is None:
        skipped.append(f"nannyml skipped: {why}")
        _log(skipped[-1])

    with tempfile.TemporaryDirectory(prefix="bench_cbpe_") as scratch:
        suite = Path(scratch) / "acs.yaml"
        processes = {p.name: p for p in build_processes(suite, args.window_rows, nannyml_python)}
        for index in range(args.repeat):
            for name in PROCESS_ORDER:
                process = processes.get(name)
                if process is None or process.error:  # a process that failed is not retried
                    continue
                if name.startswith("wk_check") and not suite.exists():
                    process.error = "no suite (`watchkeeper init` failed)"
                    continue
                _log(f"{name} run {index + 1}/{args.repeat}: {_shown(process.cmd)}")
                run_once(process, args.timeout)
                if process.error:
                    _log(f"  {name} failed: {process.error}")
                else:
                    run = process.runs[-1]
                    _log(f"  {run.wall_s:.2f} s, peak RSS {run.peak_rss_mb:.0f} MB")

        report = render(
            window_rows=args.window_rows,
            repeat=args.repeat,
            truth=truth,
            data_notes=data_notes,
            processes=processes,
            skipped=skipped,
            machine=machine_info(nannyml_python, load_at_start),
            command=command,
            scratch=scratch,
            started=started,
            elapsed_s=time.perf_counter() - t_start,
            suite=suite,
        )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.window_rows == DEFAULT_WINDOW_ROWS else f"_{size_label(args.window_rows)}"
    out = RESULTS_DIR / f"cbpe_acs{suffix}.md"
    write_report(out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
