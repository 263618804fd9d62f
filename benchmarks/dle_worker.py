"""NannyML's Direct Loss Estimation (DLE) as one process of ``bench_dle.py``.

``bench_dle.py`` runs this script in NannyML's own venv (``benchmarks/.venv-nannyml``, the
one ``bench_cbpe.py`` creates) on Parquet files it wrote: a labeled reference and an
analysis file without labels. It imports only the standard library at module level.

The estimator is configured as NannyML documents it for a regressor::

    nml.DLE(feature_column_names=FEATURES, y_pred=Y_PRED, y_true=Y_TRUE,
            metrics=METRICS, chunk_size=N)

String columns are turned into categorical codes first (with pandas 3 NannyML's fit fails
on Arrow string columns: ``ArrowStringArray does not support reshape``); the same codes
are used for the reference and the analysis file. NannyML's usage logging must be off
(``NML_DISABLE_USAGE_LOGGING=1``, set by the caller). Only the analysis chunks are reported.

On success the last line of stdout is ``RESULT_PREFIX`` and a JSON object::

    {"nannyml": "<version>", "chunk_size": N, "fit_s": s, "estimate_s": s,
     "chunks": [{"start": 0, "end": N - 1, "estimated": {"mae": ...},
                 "band": {"mae": [lower, upper]}, "sampling_error": {"mae": ...}}, ...]}

Usage::

    python benchmarks/dle_worker.py REF ANALYSIS CHUNK_SIZE Y_TRUE Y_PRED METRIC,... FEATURE,...
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

RESULT_PREFIX = "DLE_WORKER_RESULT "  # must match bench_dle.py


def _number(value: Any) -> float | None:
    """A finite float, or None (NaN does not survive JSON)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def run_dle(ref_path: str, analysis_path: str, chunk_size: int, y_true: str, y_pred: str,
            metrics: list[str], features: list[str]) -> dict[str, Any]:
    import nannyml as nml
    import pandas as pd

    reference = pd.read_parquet(ref_path)
    analysis = pd.read_parquet(analysis_path)
    for name in features:
        if not pd.api.types.is_numeric_dtype(reference[name]):
            levels = pd.Index(sorted(set(reference[name].dropna().astype(str))))
            for frame in (reference, analysis):
                frame[name] = pd.Categorical(frame[name].astype(str), categories=levels).codes
    estimator = nml.DLE(feature_column_names=features, y_pred=y_pred, y_true=y_true,
                        metrics=metrics, chunk_size=chunk_size)
    t0 = time.perf_counter()
    estimator.fit(reference)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = estimator.estimate(analysis)
    estimate_s = time.perf_counter() - t0
    frame = result.to_df()
    frame = frame[frame[("chunk", "period")] == "analysis"]
    chunks = []
    for _, row in frame.iterrows():
        chunks.append({
            "start": int(row[("chunk", "start_index")]),
            "end": int(row[("chunk", "end_index")]),
            "estimated": {m: _number(row[(m, "value")]) for m in metrics},
            "band": {m: [_number(row[(m, "lower_confidence_boundary")]),
                         _number(row[(m, "upper_confidence_boundary")])] for m in metrics},
            "sampling_error": {m: _number(row[(m, "sampling_error")]) for m in metrics},
        })
    return {"nannyml": str(getattr(nml, "__version__", "unknown")), "chunk_size": chunk_size,
            "fit_s": round(fit_s, 3), "estimate_s": round(estimate_s, 3), "chunks": chunks}


def main(argv: list[str]) -> int:
    if len(argv) != 7 or not argv[2].isdigit() or int(argv[2]) < 1:
        sys.stderr.write("usage: dle_worker.py REF ANALYSIS CHUNK_SIZE Y_TRUE Y_PRED "
                         "METRIC,... FEATURE,...\n")
        return 2
    payload = run_dle(argv[0], argv[1], int(argv[2]), argv[3], argv[4], argv[5].split(","),
                      argv[6].split(","))
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
