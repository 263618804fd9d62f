"""Benchmark: multivariate drift on a correlation break that no single column shows.

On two real data sets in ``data/`` (UCI Adult; US Census ACS employment, Massachusetts),
each shuffled with a fixed seed and split in halves: ``init`` sees the reference half, and
windows of ``--rows`` rows (default 5,000) are drawn from the other half:

* **clean** windows (``--clean``, default 200): rows as they are. Every alert is false.
* **broken** windows (``--broken`` per column, default 20): one feature's values permuted
  within the window. Each column keeps exactly its own distribution (so every one-column
  monitor sees nothing new), but its relation to every other column is gone.

Both tools judge the same windows: watchkeeper (``suite.check(..., window_rows=ROWS)``;
counted: windows where ``multivariate_drift`` alerts, and where any one-column
``feature_drift`` alerts) and NannyML's ``DataReconstructionDriftCalculator`` with its
defaults (PCA keeping 65% of the variance, alert beyond the reference chunks' mean ± 3 sd;
chunks of ``--rows`` rows, so its chunks are the windows), run in its own venv
(``benchmarks/.venv-nannyml``; ``/work/peers/nannyml`` when it exists) through
``multivariate_nml_worker.py``. Results go to stdout and
``benchmarks/results/multivariate.md``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_multivariate.py               # ~10 min, both data sets
    .venv/bin/python benchmarks/bench_multivariate.py --clean 50 --broken 5 --data adult
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "multivariate.md"
WORKER = BENCH_DIR / "multivariate_nml_worker.py"
PEER = Path("/work/peers/nannyml")
SEED = 0

ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num",
                 "marital_status", "occupation", "relationship", "race", "sex",
                 "capital_gain", "capital_loss", "hours_per_week", "native_country", "income"]
#: Columns permuted within broken windows: those with a relation to others worth breaking.
BREAKS = {
    "adult": ["age", "education", "marital_status", "occupation", "relationship", "sex",
              "hours_per_week"],
    "acs": ["AGEP", "SCHL", "MAR", "RELP", "SEX", "DIS", "MIL"],
}


def load(name: str) -> pd.DataFrame:
    """The data set's feature columns, shuffled (seeded)."""
    if name == "adult":
        parts = [pd.read_csv(REPO / "data/adult/adult.data", names=ADULT_COLUMNS,
                             skipinitialspace=True, na_values="?"),
                 pd.read_csv(REPO / "data/adult/adult.test", names=ADULT_COLUMNS,
                             skipinitialspace=True, na_values="?", skiprows=1)]
        frame = pd.concat(parts, ignore_index=True).drop(columns=["income"])
        for c in frame.columns:
            if frame[c].dtype == object:
                frame[c] = frame[c].astype(str).where(frame[c].notna(), None)
    elif name == "acs":
        frame = pd.read_parquet(REPO / "data/acs_employment_ma/employment_MA_reference.pq")
        frame = frame.drop(columns=["id", "employed", "year", "prediction",
                                    "predicted_probability"])
        for c in frame.columns:
            if isinstance(frame[c].dtype, pd.CategoricalDtype):
                frame[c] = frame[c].astype(str)
    else:
        raise SystemExit(f"unknown data set {name!r}")
    return frame.sample(frac=1.0, random_state=SEED).reset_index(drop=True)


def windows(pool: pd.DataFrame, rows: int, clean: int, broken: int, columns: list[str],
            rng: np.random.Generator) -> tuple[pd.DataFrame, list[str]]:
    """All windows, one after the other, and each window's kind ("clean" or the column
    permuted in it)."""
    kinds = ["clean"] * clean + [c for c in columns for _ in range(broken)]
    parts = []
    for kind in kinds:
        w = pool.iloc[rng.choice(len(pool), rows, replace=False)].reset_index(drop=True)
        if kind != "clean":
            w[kind] = w[kind].to_numpy()[rng.permutation(rows)]
        parts.append(w)
    return pd.concat(parts, ignore_index=True), kinds


def nannyml_python() -> Path | None:
    for venv in (BENCH_DIR / ".venv-nannyml", PEER):
        python = venv / "bin" / "python"
        if python.exists():
            return python
    return None


def run_nannyml(reference: pd.DataFrame, analysis: pd.DataFrame,
                rows: int) -> dict[str, object] | None:
    python = nannyml_python()
    if python is None:
        print("NannyML: no venv (benchmarks/.venv-nannyml or /work/peers/nannyml); skipped")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        ref_path, cur_path = Path(tmp) / "ref.parquet", Path(tmp) / "cur.parquet"
        reference.to_parquet(ref_path)
        analysis.to_parquet(cur_path)
        env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
        done = subprocess.run([str(python), str(WORKER), str(ref_path), str(cur_path),
                               str(rows), *reference.columns], capture_output=True,
                              text=True, env=env, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("NML_RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"NannyML failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return None
    return json.loads(lines[-1].removeprefix("NML_RESULT "))


def run_watchkeeper(reference: pd.DataFrame, analysis: pd.DataFrame,
                    rows: int) -> dict[str, object]:
    import watchkeeper as wk

    started = time.perf_counter()
    suite = wk.init(pa.Table.from_pandas(reference, preserve_index=False), progress=False,
                    multivariate=True)
    fitted = time.perf_counter()
    result = suite.check(pa.Table.from_pandas(analysis, preserve_index=False),
                         window_rows=rows, progress=False)
    done = time.perf_counter()
    init_s, check_s = fitted - started, done - fitted
    # The cost of asking for it: profiling the windows' rows with and without the model.
    table = pa.Table.from_pandas(analysis, preserve_index=False)
    joint, suite.schema.multivariate = suite.schema.multivariate, None
    started = time.perf_counter()
    suite.profile(table)
    without = time.perf_counter() - started
    suite.schema.multivariate = joint
    started = time.perf_counter()
    suite.profile(table)
    with_mv = time.perf_counter() - started
    mv = [m for m in suite.monitors if m.type == "multivariate_drift"]
    out: dict[str, list[int]] = {"mv": [], "univariate": [], "any": []}
    for w in result.windows:
        alerting = [f for f in w.findings if f.severity.rank >= 1]
        out["mv"].append(int(any(f.monitor == "multivariate_drift" for f in alerting)))
        out["univariate"].append(int(any(f.monitor == "feature_drift" for f in alerting)))
        out["any"].append(int(bool(alerting)))
    return {**out, "alpha": mv[0].alpha if mv else float("nan"),
            "init_s": init_s, "check_s": check_s, "profile_s": without,
            "profile_mv_s": with_mv, "pairs": len(joint.pairs) if joint else 0,
            "top_pairs": [next((str(f.evidence.get("top_pair")) for f in w.findings
                                if f.monitor == "multivariate_drift"), "")
                          for w in result.windows]}


def rate(flags: list[int], kinds: list[str], kind: str) -> tuple[int, int]:
    picked = [f for f, k in zip(flags, kinds, strict=True) if k == kind]
    return sum(picked), len(picked)


def report(name: str, n_ref: int, rows: int, kinds: list[str], wk_out: dict[str, object],
           nml: dict[str, object] | None) -> str:
    lines = [f"### {name}: reference {n_ref:,} rows, windows of {rows:,} rows", ""]
    alpha = float(wk_out["alpha"])  # type: ignore[arg-type]
    clean_n = kinds.count("clean")
    lines += [
        "| windows | watchkeeper multivariate_drift | NannyML reconstruction drift | "
        "NannyML, threshold = max over clean windows (oracle) | "
        "watchkeeper one-column feature_drift | top pair named by watchkeeper |",
        "|---|---|---|---|---|---|",
    ]
    oracle = None
    if nml is not None:  # the least threshold with no false alert here, known afterwards
        values = nml["values"]  # type: ignore[index]
        oracle = max(v for v, k in zip(values, kinds, strict=True) if k == "clean")
    for kind in dict.fromkeys(kinds):
        wk_hits, n = rate(wk_out["mv"], kinds, kind)  # type: ignore[arg-type]
        uni, _ = rate(wk_out["univariate"], kinds, kind)  # type: ignore[arg-type]
        nml_cell = oracle_cell = "n/a"
        if nml is not None and oracle is not None:
            hits, _ = rate(nml["alerts"], kinds, kind)  # type: ignore[arg-type]
            nml_cell = f"{hits}/{n}"
            above = [int(v > oracle) for v in nml["values"]]  # type: ignore[union-attr]
            oracle_cell = f"{rate(above, kinds, kind)[0]}/{n}"
        pairs = [p for p, k in zip(wk_out["top_pairs"], kinds, strict=True)  # type: ignore
                 if k == kind and p]
        common = max(set(pairs), key=pairs.count) if pairs else ""
        label = f"clean ({n})" if kind == "clean" else f"`{kind}` permuted ({n})"
        lines.append(f"| {label} | {wk_hits}/{n} | {nml_cell} | {oracle_cell} | {uni}/{n} "
                     f"| {common} |")
    any_clean, _ = rate(wk_out["any"], kinds, "clean")  # type: ignore[arg-type]
    lines += [
        "",
        f"- watchkeeper `multivariate_drift` α = {alpha:.2g} per window (its share of the "
        f"suite's 0.01 budget): expected false alerts on {clean_n} clean windows "
        f"{alpha * clean_n:.2f}. Whole suite (every monitor, same windows): alerts in "
        f"{any_clean} of {clean_n} clean windows (budget: {0.01 * clean_n:.1f}).",
        f"- watchkeeper: init {wk_out['init_s']:.1f} s, check of all "
        f"{len(kinds)} windows {wk_out['check_s']:.1f} s. Profiling all "
        f"{len(kinds)} windows' rows: {wk_out['profile_s']:.1f} s without the multivariate "
        f"model, {wk_out['profile_mv_s']:.1f} s with it "
        f"({wk_out['profile_mv_s'] / max(wk_out['profile_s'], 1e-9):.1f}x; "  # type: ignore
        f"{wk_out['pairs']} column pairs tracked).",
    ]
    if nml is not None:
        lines.append(f"- NannyML: {nml['reference_chunks']} reference chunks set its "
                     f"threshold (upper {nml['upper_threshold']:.3f}; the oracle column "
                     f"uses {oracle:.3f}, the largest value over the clean windows, a "
                     "threshold no user could know beforehand); fit "
                     f"{nml['fit_s']:.1f} s, calculate {nml['calculate_s']:.1f} s.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--clean", type=int, default=200)
    parser.add_argument("--broken", type=int, default=20)
    parser.add_argument("--data", default="adult,acs")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sections = []
    for name in args.data.split(","):
        frame = load(name)
        half = len(frame) // 2
        reference, pool = frame.iloc[:half].reset_index(drop=True), \
            frame.iloc[half:].reset_index(drop=True)
        rng = np.random.default_rng([SEED, len(name)])
        analysis, kinds = windows(pool, args.rows, args.clean, args.broken, BREAKS[name], rng)
        print(f"{name}: {len(kinds)} windows ...", file=sys.stderr)
        wk_out = run_watchkeeper(reference, analysis, args.rows)
        nml = run_nannyml(reference, analysis, args.rows)
        sections.append(report(name, len(reference), args.rows, kinds, wk_out, nml))
        print(sections[-1])
    command = "make bench-multivariate  # .venv/bin/python benchmarks/bench_multivariate.py"
    if sys.argv[1:]:
        command = "python benchmarks/bench_multivariate.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Multivariate drift: a broken correlation no single column shows",
        "",
        f"Rerun: `{command}`. Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; timings taken on a shared, loaded machine.",
        "",
        "Each data set is shuffled (seed 0) and halved: `init` and NannyML's `fit` see the "
        "first half; windows are drawn from the second. In a broken window one column's "
        "values are permuted among its rows: its marginal is exactly unchanged, its "
        "relation to the other columns is gone. Cells: windows with an alert / windows.",
        "",
        *sections,
    ])
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
