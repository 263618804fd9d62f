"""NannyML's CBPE as one measured process of ``bench_cbpe.py``.

``bench_cbpe.py`` starts this script in NannyML's own venv (``benchmarks/.venv-nannyml``) once
per timed run and measures the whole process from outside, so interpreter start-up, imports,
reading both Parquet files, ``fit`` on the reference and ``estimate`` on the analysis data are
all inside the measurement. It imports only the standard library at module level.

The estimator is configured as NannyML documents it for a binary classifier::

    nml.CBPE(y_pred_proba="predicted_probability", y_pred="prediction", y_true="employed",
             problem_type="classification_binary", metrics=["roc_auc", "accuracy"],
             chunk_size=N)

``fit`` gets the labeled reference; ``estimate`` gets the analysis file as it is (it has no
label column). Only the chunks of the analysis period are reported.

On success the last line of stdout is ``RESULT_PREFIX`` followed by a JSON object::

    {"tool": "nannyml", "nannyml": "<version>", "chunk_size": N,
     "needs_calibration": true, "calibrator": "IsotonicCalibrator",
     "chunks": [{"key": "[0:9999]", "start": 0, "end": 9999, "rows": 10000,
                 "estimated": {"roc_auc": ..., "accuracy": ...},
                 "band": {"roc_auc": [lower, upper], ...},
                 "sampling_error": {"roc_auc": ..., ...}}, ...],
     "phases": {"import": s, "load": s, "fit": s, "estimate": s, "extract": s}}

Usage::

    python benchmarks/cbpe_worker.py REF ANALYSIS CHUNK_SIZE
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

RESULT_PREFIX = "CBPE_WORKER_RESULT "  # must match bench_cbpe.py

#: Column names in data/acs_employment_ma.
Y_PRED_PROBA = "predicted_probability"
Y_PRED = "prediction"
Y_TRUE = "employed"
METRICS = ("roc_auc", "accuracy")

_T0 = time.perf_counter()


class _Phases:
    """Cumulative in-process timings, reported next to the outside measurement."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._last = _T0

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(now - self._last, 4)
        self._last = now


def _number(value: Any) -> float | None:
    """A finite float, or None (NaN does not survive JSON)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def run_cbpe(ref_path: str, analysis_path: str, chunk_size: int) -> dict[str, Any]:
    phases = _Phases()
    import nannyml as nml
    import pandas as pd

    phases.mark("import")
    reference = pd.read_parquet(ref_path)
    analysis = pd.read_parquet(analysis_path)
    phases.mark("load")
    estimator = nml.CBPE(
        y_pred_proba=Y_PRED_PROBA,
        y_pred=Y_PRED,
        y_true=Y_TRUE,
        problem_type="classification_binary",
        metrics=list(METRICS),
        chunk_size=chunk_size,
    )
    estimator.fit(reference)
    phases.mark("fit")
    result = estimator.estimate(analysis)
    phases.mark("estimate")
    # to_df(): one row per chunk, reference chunks first; columns are a MultiIndex such as
    # ("chunk", "start_index"), ("accuracy", "value"), ("accuracy", "lower_confidence_boundary").
    frame = result.to_df()
    frame = frame[frame[("chunk", "period")] == "analysis"]
    chunks = []
    for _, row in frame.iterrows():
        start, end = int(row[("chunk", "start_index")]), int(row[("chunk", "end_index")])
        chunks.append(
            {
                "key": str(row[("chunk", "key")]),
                "start": start,
                "end": end,
                "rows": end - start + 1,
                "estimated": {m: _number(row[(m, "value")]) for m in METRICS},
                "band": {
                    m: [
                        _number(row[(m, "lower_confidence_boundary")]),
                        _number(row[(m, "upper_confidence_boundary")]),
                    ]
                    for m in METRICS
                },
                "sampling_error": {m: _number(row[(m, "sampling_error")]) for m in METRICS},
            }
        )
    phases.mark("extract")
    return {
        "rows": len(analysis),
        "ref_rows": len(reference),
        "nannyml": str(getattr(nml, "__version__", "unknown")),
        "chunk_size": chunk_size,
        # whether fit() calibrated the scores (NannyML's cross-validated ECE check) and how
        "needs_calibration": bool(getattr(estimator, "needs_calibration", False)),
        "calibrator": type(getattr(estimator, "calibrator", None)).__name__,
        "chunks": chunks,
        "phases": phases.times,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[2].isdigit() or int(argv[2]) < 1:
        sys.stderr.write("usage: cbpe_worker.py REF ANALYSIS CHUNK_SIZE\n")
        return 2
    payload = run_cbpe(argv[0], argv[1], int(argv[2]))
    payload["tool"] = "nannyml"
    payload["in_process_s"] = round(time.perf_counter() - _T0, 4)
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
