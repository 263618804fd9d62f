"""NannyML's multiclass CBPE (and its synthetic data set) for ``bench_multiclass.py``.

Runs in NannyML's own venv (``benchmarks/.venv-nannyml``); imports only the standard
library at module level. Two commands::

    python benchmarks/multiclass_worker.py export OUTDIR
    python benchmarks/multiclass_worker.py cbpe REF ANALYSIS CHUNK_SIZE SPEC_JSON

``export`` writes ``nml.load_synthetic_multiclass_classification_dataset()`` (shipped inside
the nannyml package) as ``OUTDIR/nml_mc_reference.parquet`` and
``OUTDIR/nml_mc_analysis.parquet`` (the analysis rows with their ``y_true`` merged by id).

``cbpe`` runs the estimator as NannyML documents it for a multiclass classifier::

    nml.CBPE(y_pred_proba={class: column, ...}, y_pred=..., y_true=...,
             problem_type="classification_multiclass",
             metrics=["roc_auc", "f1", "precision", "recall", "accuracy"], chunk_size=N)

``fit`` gets the labeled reference; ``estimate`` the analysis file without its label column.
The last line of stdout is ``RESULT_PREFIX`` and a JSON object: per analysis chunk its
start and end row, the estimated value, the confidence band and the sampling error of
each metric, and the phases' times.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

RESULT_PREFIX = "MULTICLASS_WORKER_RESULT "  # must match bench_multiclass.py
METRICS = ("roc_auc", "f1", "precision", "recall", "accuracy")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def export(outdir: str) -> dict[str, Any]:
    import nannyml as nml

    reference, analysis, targets = nml.load_synthetic_multiclass_classification_dataset()
    analysis = analysis.merge(targets, on="id", how="left", validate="one_to_one")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    reference.to_parquet(out / "nml_mc_reference.parquet", index=False)
    analysis.to_parquet(out / "nml_mc_analysis.parquet", index=False)
    return {"reference_rows": len(reference), "analysis_rows": len(analysis),
            "nannyml": str(getattr(nml, "__version__", "unknown"))}


def cbpe(ref_path: str, analysis_path: str, chunk_size: int, spec: dict[str, Any]
         ) -> dict[str, Any]:
    t0 = time.perf_counter()
    times: dict[str, float] = {}
    import nannyml as nml
    import pandas as pd

    reference = pd.read_parquet(ref_path)
    analysis = pd.read_parquet(analysis_path).drop(columns=[spec["y_true"]], errors="ignore")
    times["load"] = round(time.perf_counter() - t0, 3)
    estimator = nml.CBPE(
        y_pred_proba=spec["y_pred_proba"], y_pred=spec["y_pred"], y_true=spec["y_true"],
        problem_type="classification_multiclass", metrics=list(METRICS),
        chunk_size=chunk_size,
    )
    t1 = time.perf_counter()
    estimator.fit(reference)
    times["fit"] = round(time.perf_counter() - t1, 3)
    t1 = time.perf_counter()
    result = estimator.estimate(analysis)
    times["estimate"] = round(time.perf_counter() - t1, 3)
    frame = result.to_df()
    frame = frame[frame[("chunk", "period")] == "analysis"]
    chunks = []
    for _, row in frame.iterrows():
        chunks.append({
            "start": int(row[("chunk", "start_index")]),
            "end": int(row[("chunk", "end_index")]),
            "estimated": {m: _number(row[(m, "value")]) for m in METRICS},
            "band": {m: [_number(row[(m, "lower_confidence_boundary")]),
                         _number(row[(m, "upper_confidence_boundary")])] for m in METRICS},
            "sampling_error": {m: _number(row[(m, "sampling_error")]) for m in METRICS},
        })
    return {"nannyml": str(getattr(nml, "__version__", "unknown")), "chunk_size": chunk_size,
            "chunks": chunks, "phases": times,
            "seconds": round(time.perf_counter() - t0, 3)}


def main(argv: list[str]) -> int:
    if argv[:1] == ["export"] and len(argv) == 2:
        payload = export(argv[1])
    elif argv[:1] == ["cbpe"] and len(argv) == 5 and argv[3].isdigit():
        payload = cbpe(argv[1], argv[2], int(argv[3]), json.loads(argv[4]))
    else:
        sys.stderr.write(__doc__ or "")
        return 2
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
