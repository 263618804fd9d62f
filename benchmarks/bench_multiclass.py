"""Multiclass estimation without labels: watchkeeper vs NannyML's multiclass CBPE.

Both tools fit on the same labeled reference and estimate the same windows of an analysis
file without its labels; both are scored against the realised metrics of each window,
computed here with scikit-learn from the held-back labels (accuracy, macro precision,
recall and F1, macro one-vs-rest ROC-AUC). Reported per scenario and metric: mean absolute
error (MAE) and worst error of each tool's estimate, and how often each tool's band holds
the realised value (watchkeeper's 95% band; NannyML's confidence band, ±3 sampling errors).

Scenarios:

- ``nml_synthetic``: NannyML's synthetic credit-card multiclass data set (3 classes,
  60,000 reference and 60,000 analysis rows, shipped inside the nannyml package; exported
  by ``multiclass_worker.py export`` from NannyML's venv into ``benchmarks/data``), in
  6,000-row windows (NannyML's documented chunk).
- ``acs_marital``: a real task on the ACS Massachusetts rows in ``data/acs_employment_ma``
  (public domain): marital status ``MAR`` as three classes (married; widowed, divorced or
  separated; never married), predicted from the other census columns (not ``RELP``,
  relationship, which all but names it) by a scikit-learn histogram gradient boosting
  model trained on the first half of the 2015 reference; the second half is the monitored
  reference; the 2016–2018 analysis rows in 10,000-row windows in file order.
- ``acs_marital_age_shift``: the same model and reference; ten 10,000-row windows of
  analysis rows drawn with weights that grow with age (window i tilted by i/10), a
  covariate shift that moves the class mix and the accuracy.

Run ``make bench-multiclass`` (or ``.venv/bin/python benchmarks/bench_multiclass.py``);
NannyML runs in ``benchmarks/.venv-nannyml`` (made on first use, or a symlink to a
prebuilt one). Writes ``benchmarks/results/multiclass.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_drift import (  # noqa: E402
    REPO,
    RESULTS_DIR,
    _cpu_model,
    _git_describe,
    _loadavg,
    ensure_venv,
)

DATA_DIR = BENCH_DIR / "data"
WORKER = BENCH_DIR / "multiclass_worker.py"
NANNYML_VENV = BENCH_DIR / ".venv-nannyml"
NANNYML_REQUIREMENTS = ("nannyml>=0.13,<0.14", "statsmodels")
NANNYML_ENV = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
RESULT_PREFIX = "MULTICLASS_WORKER_RESULT "  # must match multiclass_worker.py
METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc")
ACS_DIR = REPO / "data" / "acs_employment_ma"
MARITAL = {"1": "married", "2": "formerly_married", "3": "formerly_married",
           "4": "formerly_married", "5": "never_married"}
ACS_FEATURES = ("AGEP", "SCHL", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY", "DEAR",
                "DEYE", "DREM", "SEX", "RAC1P")


@dataclass
class Scenario:
    name: str
    reference: Path
    analysis: Path
    chunk: int
    target: str
    prediction: str
    probas: dict[str, str]  # class → score column
    about: str
    id: str = "id"
    extra: dict[str, Any] = field(default_factory=dict)


def _log(message: str) -> None:
    print(f"[bench_multiclass] {message}", file=sys.stderr, flush=True)


def _worker(python: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([str(python), str(WORKER), *args], capture_output=True, text=True,
                          env=NANNYML_ENV, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"multiclass_worker {args[0]} failed: {done.stderr[-2000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(RESULT_PREFIX))
    return json.loads(line.removeprefix(RESULT_PREFIX))


# --------------------------------------------------------------------------------------
# Data


def synthetic(python: Path) -> Scenario:
    ref, ana = DATA_DIR / "nml_mc_reference.parquet", DATA_DIR / "nml_mc_analysis.parquet"
    if not (ref.exists() and ana.exists()):
        _log("exporting NannyML's synthetic multiclass data set ...")
        _worker(python, "export", str(DATA_DIR))
    classes = ("highstreet_card", "prepaid_card", "upmarket_card")
    return Scenario("nml_synthetic", ref, ana, 6_000, "y_true", "y_pred",
                    {c: f"y_pred_proba_{c}" for c in classes},
                    "NannyML's synthetic multiclass data (3 credit-card products), "
                    "60,000 + 60,000 rows, 6,000-row windows")


def acs() -> tuple[Scenario, Scenario]:
    """The ACS marital-status task: model trained here (scikit-learn, fixed seed)."""
    ref_out, ana_out = DATA_DIR / "acs_mar_reference.parquet", DATA_DIR / "acs_mar_analysis.parquet"
    shift_out = DATA_DIR / "acs_mar_age_shift.parquet"
    classes = ("formerly_married", "married", "never_married")
    if not (ref_out.exists() and ana_out.exists() and shift_out.exists()):
        from sklearn.ensemble import HistGradientBoostingClassifier

        _log("training the ACS marital-status model (scikit-learn) ...")
        ref = pd.read_parquet(ACS_DIR / "employment_MA_reference.pq")
        ana = pd.read_parquet(ACS_DIR / "employment_MA_analysis.pq")

        def frame(d: pd.DataFrame) -> pd.DataFrame:
            x = d[list(ACS_FEATURES)].copy()
            for c in ACS_FEATURES:
                if c != "AGEP":
                    x[c] = x[c].astype(str).astype(float)
            return x

        y_ref = ref["MAR"].astype(str).map(MARITAL)
        half = len(ref) // 2
        model = HistGradientBoostingClassifier(max_iter=200, random_state=0,
                                               categorical_features=[
                                                   c != "AGEP" for c in ACS_FEATURES])
        model.fit(frame(ref.iloc[:half]), y_ref.iloc[:half])
        assert tuple(model.classes_) == classes

        def scored(d: pd.DataFrame) -> pd.DataFrame:
            p = model.predict_proba(frame(d))
            out = d[["id", *ACS_FEATURES]].copy()
            for c in ACS_FEATURES:
                if c != "AGEP":
                    out[c] = out[c].astype(str)
            out["marital"] = d["MAR"].astype(str).map(MARITAL).to_numpy()
            for i, c in enumerate(classes):
                out[f"proba_{c}"] = np.round(p[:, i], 6)
            out["predicted"] = np.asarray(classes)[p.argmax(axis=1)]
            return out.reset_index(drop=True)

        scored(ref.iloc[half:]).to_parquet(ref_out, index=False)
        analysis = scored(ana.iloc[:len(ana) // 10_000 * 10_000])
        analysis.to_parquet(ana_out, index=False)
        rng = np.random.default_rng(15)
        age = analysis["AGEP"].to_numpy()
        parts = []
        for i in range(10):
            w = np.exp(i / 10 * (age - age.mean()) / 12)
            parts.append(analysis.iloc[rng.choice(len(analysis), 10_000, p=w / w.sum())])
        shifted = pd.concat(parts, ignore_index=True)
        shifted["id"] = np.arange(len(shifted))
        shifted.to_parquet(shift_out, index=False)
    probas = {c: f"proba_{c}" for c in classes}
    return (Scenario("acs_marital", ref_out, ana_out, 10_000, "marital", "predicted", probas,
                     "ACS Massachusetts: marital status (3 classes) from census columns; "
                     "reference 2015 (second half, 34,393 rows), analysis 2016–2018 "
                     "(200,000 rows), 10,000-row windows"),
            Scenario("acs_marital_age_shift", ref_out, shift_out, 10_000, "marital",
                     "predicted", probas,
                     "ACS marital status, ten 10,000-row windows drawn from the analysis "
                     "rows with weights exp(i/10 · (age − mean)/12), i = 0…9"))


# --------------------------------------------------------------------------------------
# The tools and the truth


def truth(s: Scenario) -> list[dict[str, float]]:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    data = pd.read_parquet(s.analysis)
    classes = list(s.probas)
    out = []
    for start in range(0, len(data), s.chunk):
        w = data.iloc[start:start + s.chunk]
        y, pred = w[s.target].astype(str), w[s.prediction].astype(str)
        scores = w[[s.probas[c] for c in classes]].to_numpy()
        out.append({
            "start": start, "end": start + len(w) - 1,
            "accuracy": accuracy_score(y, pred),
            "precision": precision_score(y, pred, average="macro", zero_division=0),
            "recall": recall_score(y, pred, average="macro", zero_division=0),
            "f1": f1_score(y, pred, average="macro", zero_division=0),
            "roc_auc": roc_auc_score(y, scores / scores.sum(axis=1, keepdims=True),
                                     multi_class="ovr", average="macro", labels=classes),
        })
    return out


def watchkeeper(s: Scenario) -> dict[str, Any]:
    import watchkeeper as wk

    t0 = time.perf_counter()
    reference = pd.read_parquet(s.reference)
    analysis = pd.read_parquet(s.analysis).drop(columns=[s.target])
    suite = wk.init(reference, target=s.target, prediction=s.prediction,
                    proba=list(s.probas.values()), id=s.id, progress=False)
    t1 = time.perf_counter()
    result = suite.check(analysis, window_rows=s.chunk, progress=False)
    t2 = time.perf_counter()
    monitor = next(m for m in suite.monitors if m.type == "estimated_performance")
    # the same windows with their labels: each band widened by earlier windows' errors
    labelled = suite.check(pd.read_parquet(s.analysis), window_rows=s.chunk, progress=False)
    history, at = [], 0
    for w in labelled.windows:
        history.append({"start": at, "end": at + w.rows - 1,
                        "estimated": {k: w.metrics["estimated"].get(k) for k in METRICS},
                        "band": {k: list(w.metrics["estimated_band"].get(k, (None, None)))
                                 for k in METRICS}})
        at += w.rows
    chunks, at = [], 0
    for w in result.windows:
        m = w.metrics
        chunks.append({"start": at, "end": at + w.rows - 1,
                       "estimated": {k: m["estimated"].get(k) for k in METRICS},
                       "band": {k: list(m["estimated_band"].get(k, (None, None)))
                                for k in METRICS},
                       "alerts": sorted({f.metric for f in w.findings
                                         if f.monitor == "estimated_performance"})})
        at += w.rows
    return {"chunks": chunks, "init_s": t1 - t0, "check_s": t2 - t1,
            "history": {"chunks": history},
            "method": suite.schema.task.class_calibration.describe(),
            "shift_sd": monitor.calibration.get("shift_sd", {})}


def nannyml(python: Path, s: Scenario) -> dict[str, Any]:
    spec = {"y_pred_proba": s.probas, "y_pred": s.prediction, "y_true": s.target}
    return _worker(python, "cbpe", str(s.reference), str(s.analysis), str(s.chunk),
                   json.dumps(spec))


# --------------------------------------------------------------------------------------
# Report


def score(real: list[dict[str, float]], tool: dict[str, Any]) -> dict[str, dict[str, float]]:
    by_start = {c["start"]: c for c in tool["chunks"]}
    out: dict[str, dict[str, float]] = {}
    for k in METRICS:
        errors, inside, widths = [], [], []
        for r in real:
            c = by_start.get(r["start"])
            if c is None or c["end"] != r["end"] or c["estimated"].get(k) is None:
                continue
            errors.append(abs(c["estimated"][k] - r[k]))
            lo, hi = c["band"].get(k) or (None, None)
            if lo is not None and hi is not None:
                inside.append(lo <= r[k] <= hi)
                widths.append(hi - lo)
        out[k] = {"windows": len(errors),
                  "mae": float(np.mean(errors)) if errors else float("nan"),
                  "max": float(np.max(errors)) if errors else float("nan"),
                  "coverage": float(np.mean(inside)) if inside else float("nan"),
                  "width": float(np.mean(widths)) if widths else float("nan")}
    return out


def report(runs: list[tuple[Scenario, list[dict[str, float]], dict[str, Any],
                            dict[str, Any] | None, str]], seconds: float) -> str:
    lines = [
        "# Multiclass estimation without labels: watchkeeper vs NannyML multiclass CBPE",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {seconds / 60:.1f} min "
        f"in all, on {_cpu_model()} (load average {_loadavg()}: **the machine was shared "
        f"with other jobs**, times are indicative only); watchkeeper {_git_describe()}.",
        "",
        "Rerun: `make bench-multiclass` (or `.venv/bin/python benchmarks/bench_multiclass.py`).",
        "",
        "Both tools fit on the same labeled reference and estimate the same windows of the "
        "analysis rows without their labels; both are scored against the realised metrics "
        "of each window, computed by the script with scikit-learn from the held-back labels "
        "(accuracy; macro precision, recall, F1; macro one-vs-rest ROC-AUC). `wk` = "
        "watchkeeper `metrics.estimated` and its 95% `estimated_band` (set at init: "
        "sampling + shift_sd; no labels of earlier windows used); `nml` = NannyML CBPE "
        "(`problem_type='classification_multiclass'`) `value` and its confidence band "
        "(NannyML's default: ±3 sampling errors). Coverage = share of windows whose "
        "realised value lies in the tool's band; width = mean band width. \"History band\": "
        "watchkeeper checking the same windows with their labels, where from the third "
        "window on each band is widened by the errors of earlier labelled windows (what a "
        "deployment with late labels reports); its estimates are the same.",
        "",
    ]
    for s, real, wk_run, nml_run, note in runs:
        lines += [f"## {s.name}", "", s.about + ".", ""]
        if note:
            lines += [note, ""]
        wk_score = score(real, wk_run)
        nml_score = score(real, nml_run) if nml_run else None
        lines += [f"{len(real)} windows. watchkeeper: {wk_run['method']}; shift_sd "
                  + ", ".join(f"{k} {v:.4f}" for k, v in wk_run["shift_sd"].items())
                  + f"; init {wk_run['init_s']:.1f} s, check {wk_run['check_s']:.1f} s"
                  + (f". NannyML {nml_run['nannyml']}: fit {nml_run['phases']['fit']:.1f} s, "
                     f"estimate {nml_run['phases']['estimate']:.1f} s" if nml_run else "")
                  + ".", ""]
        later = score(real, wk_run["history"])
        lines += ["| metric | MAE wk | MAE nml | max err wk | max err nml | coverage wk "
                  "(95%) | coverage nml (±3σ) | width wk | width nml | coverage wk, "
                  "history band |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k in METRICS:
            a = wk_score[k]
            b = nml_score[k] if nml_score else {x: float("nan") for x in a}
            lines.append(f"| {k} | {a['mae']:.4f} | {b['mae']:.4f} | {a['max']:.4f} | "
                         f"{b['max']:.4f} | {a['coverage']:.0%} | {b['coverage']:.0%} | "
                         f"{a['width']:.4f} | {b['width']:.4f} | {later[k]['coverage']:.0%} |")
        lines += ["", "<details><summary>per window: realised, wk, nml (accuracy, macro F1)"
                  "</summary>", "",
                  "| rows | acc realised | acc wk | acc nml | F1 realised | F1 wk | F1 nml | "
                  "wk alerts |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        nml_by = {c["start"]: c for c in nml_run["chunks"]} if nml_run else {}
        wk_by = {c["start"]: c for c in wk_run["chunks"]}
        for r in real:
            a, b = wk_by.get(r["start"], {}), nml_by.get(r["start"], {})

            def v(c: dict[str, Any], k: str) -> str:
                x = (c.get("estimated") or {}).get(k)
                return f"{x:.4f}" if x is not None else "–"

            lines.append(f"| {r['start']}-{r['end']} | {r['accuracy']:.4f} | "
                         f"{v(a, 'accuracy')} | {v(b, 'accuracy')} | {r['f1']:.4f} | "
                         f"{v(a, 'f1')} | {v(b, 'f1')} | {', '.join(a.get('alerts', []))} |")
        lines += ["", "</details>", ""]
    lines += [
        "## Notes",
        "",
        "- Micro precision, recall and F1 are reported by watchkeeper too; with a prediction "
        "on every row they equal accuracy, so they are not listed separately.",
        "- NannyML's band is ±3 sampling errors around its estimate (sampling only); "
        "watchkeeper's is a 95% band that adds the estimator's own error measured on "
        "shifted reference chunks (shift_sd). Neither band sees a change in P(label | "
        "inputs) (concept drift); watchkeeper widens its band from earlier windows' errors "
        "once labels arrive (the last column of each table).",
        "- Data: `benchmarks/data/` (not committed): NannyML's synthetic set exported from "
        "the nannyml package (Apache-2.0); the ACS files are built from "
        "`data/acs_employment_ma` (public domain) by this script.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    t0 = time.perf_counter()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    python, why = ensure_venv(NANNYML_VENV, NANNYML_REQUIREMENTS, "import nannyml",
                              env=NANNYML_ENV)
    if python is None:
        _log(f"NannyML unavailable: {why}")
        return 1
    scenarios = [synthetic(python), *acs()]
    only = set(sys.argv[1:])
    runs = []
    for s in scenarios:
        if only and s.name not in only:
            continue
        _log(f"{s.name}: truth, watchkeeper, NannyML ...")
        real = truth(s)
        wk_run = watchkeeper(s)
        note = ""
        try:
            nml_run: dict[str, Any] | None = nannyml(python, s)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            nml_run, note = None, f"NannyML failed: {exc}"
        runs.append((s, real, wk_run, nml_run, note))
    text = report(runs, time.perf_counter() - t0)
    out = RESULTS_DIR / "multiclass.md"
    out.write_text(text)
    print(text)
    _log(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
