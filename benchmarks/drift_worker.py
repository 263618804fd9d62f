"""One measured tool of ``bench_drift.py``, run as its own process.

``bench_drift.py`` starts this script once per timed run and measures the whole process (wall
time and peak RSS from outside), so everything a user would pay for — interpreter start-up,
imports, reading the Parquet files, the computation and getting the answer out — is inside the
measurement.

It runs under two interpreters: the project venv (``floor``, ``floor_current``, ``scipy``) and
the Evidently venv (``evidently``, which needs ``pandas<3``), so it imports nothing from
watchkeeper and only the standard library at module level.

On success the last line of stdout is ``RESULT_PREFIX`` followed by a JSON object::

    {"tool": ..., "rows": N, "drifted": [...] | null, "phases": {"import": s, ...}, ...}

Usage::

    python benchmarks/drift_worker.py floor REF CUR
    python benchmarks/drift_worker.py floor_current CUR
    python benchmarks/drift_worker.py scipy REF CUR
    python benchmarks/drift_worker.py evidently REF CUR
    python benchmarks/drift_worker.py wk_profile SUITE CUR   (project venv only)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

RESULT_PREFIX = "DRIFT_WORKER_RESULT "

#: p-value threshold for the scipy loop; "p < 0.05 means drift" is the common recipe.
SCIPY_ALPHA = 0.05

#: Evidently drift methods whose score is a distance: drift when ``score >= threshold``.
#: Every other built-in method scores a p-value: drift when ``score < threshold``.
#: (Mirrors the per-test rules in ``evidently.legacy.calculations.stattests``.)
EVIDENTLY_DISTANCE_METHODS = frozenset(
    {
        "Wasserstein distance (normed)",
        "Jensen-Shannon distance",
        "Hellinger distance",
        "Kullback-Leibler divergence",
        "PSI",
        "Energy-distance",
    }
)

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


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


def _split_columns(frame: Any) -> tuple[list[str], list[str]]:
    """(numeric, categorical) column names, from the dtypes pandas read."""
    from pandas.api.types import is_numeric_dtype

    numeric = [str(c) for c in frame.columns if is_numeric_dtype(frame[c])]
    categorical = [str(c) for c in frame.columns if str(c) not in numeric]
    return numeric, categorical


def run_floor(ref_path: str, cur_path: str) -> dict[str, Any]:
    """Load both frames and nothing else: what any pandas-based check pays at least."""
    phases = _Phases()
    import pandas as pd

    phases.mark("import")
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    phases.mark("load")
    return {"rows": len(cur), "ref_rows": len(ref), "drifted": None, "phases": phases.times}


def run_floor_current(cur_path: str) -> dict[str, Any]:
    """Load the current frame only (``watchkeeper check`` reads current data + a suite)."""
    phases = _Phases()
    import pandas as pd

    phases.mark("import")
    cur = pd.read_parquet(cur_path)
    phases.mark("load")
    return {"rows": len(cur), "drifted": None, "phases": phases.times}


def run_scipy(ref_path: str, cur_path: str) -> dict[str, Any]:
    """KS test per numeric column, chi² on value counts per categorical column, p < 0.05."""
    phases = _Phases()
    import numpy as np
    import pandas as pd
    from scipy.stats import chi2_contingency, ks_2samp

    phases.mark("import")
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    phases.mark("load")
    numeric, categorical = _split_columns(ref)
    p_values: dict[str, float] = {}
    for column in numeric:
        a = ref[column].dropna().to_numpy()
        b = cur[column].dropna().to_numpy()
        p_values[column] = float(ks_2samp(a, b).pvalue)
    for column in categorical:
        pair = [ref[column].value_counts(), cur[column].value_counts()]
        counts = pd.concat(pair, axis=1).fillna(0)  # categories × (reference, current)
        table = np.asarray(counts.to_numpy(dtype=np.float64).T)
        p_values[column] = float(chi2_contingency(table).pvalue)
    drifted = sorted(c for c, p in p_values.items() if p < SCIPY_ALPHA)
    phases.mark("compute")
    return {
        "rows": len(cur),
        "drifted": drifted,
        "scores": {c: p_values[c] for c in sorted(p_values)},
        "phases": phases.times,
    }


def run_evidently(ref_path: str, cur_path: str) -> dict[str, Any]:
    """Evidently 0.7 ``Report([DataDriftPreset()])`` on the pair, default settings."""
    phases = _Phases()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    phases.mark("import")
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    phases.mark("load")
    numeric, categorical = _split_columns(ref)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    phases.mark("compute")
    result = snapshot.dict()
    phases.mark("extract")
    drifted, scores, methods, evidently_count = _evidently_drifted(result)
    payload: dict[str, Any] = {
        "rows": len(cur),
        "drifted": drifted,
        "scores": scores,
        "methods": methods,
        "evidently_drifted_count": evidently_count,
        "phases": phases.times,
    }
    if evidently_count is not None and evidently_count != len(drifted):
        payload["warning"] = (
            f"decoded {len(drifted)} drifted columns but DriftedColumnsCount says "
            f"{evidently_count}: check EVIDENTLY_DISTANCE_METHODS"
        )
    return payload


def _evidently_drifted(
    result: dict[str, Any],
) -> tuple[list[str], dict[str, float], dict[str, str], int | None]:
    """Per-column drift flags from ``snapshot.dict()``.

    With Evidently 0.7's default ``Report(include_tests=False)`` the snapshot holds no boolean
    per column: each ``ValueDrift`` metric carries only ``value`` (the score) and, in
    ``config``, the resolved ``method`` and ``threshold``. Whether the score means drift depends
    on the method: distances drift at ``value >= threshold``, p-values at ``value < threshold``.
    ``DriftedColumnsCount`` carries the total, used as a cross-check.
    """
    drifted: list[str] = []
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    count: int | None = None
    for metric in result["metrics"]:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            count = int(metric["value"]["count"])
        elif kind.endswith(":ValueDrift"):
            column = str(config["column"])
            method = str(config["method"])
            value = float(metric["value"])
            threshold = float(config["threshold"])
            scores[column] = value
            methods[column] = f"{method} (threshold {threshold:g})"
            is_distance = method in EVIDENTLY_DISTANCE_METHODS
            if (value >= threshold) if is_distance else (value < threshold):
                drifted.append(column)
    return sorted(drifted), scores, methods, count


def run_wk_profile(suite_path: str, cur_path: str) -> dict[str, Any]:
    """watchkeeper's profiling alone, in process: cells per second on one core."""
    phases = _Phases()
    import watchkeeper
    from watchkeeper.io.tables import read_table

    phases.mark("import")
    suite = watchkeeper.load(suite_path)
    table = read_table(cur_path)  # as `watchkeeper check` reads it
    phases.mark("load")
    suite.profile(table)
    phases.mark("profile")
    cells = table.num_rows * table.num_columns
    return {"rows": table.num_rows, "drifted": None, "phases": phases.times,
            "cells_per_s": round(cells / phases.times["profile"])}


_TOOLS: dict[str, tuple[int, Callable[..., dict[str, Any]]]] = {
    "wk_profile": (2, run_wk_profile),
    "floor": (2, run_floor),
    "floor_current": (1, run_floor_current),
    "scipy": (2, run_scipy),
    "evidently": (2, run_evidently),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in _TOOLS:
        sys.stderr.write(f"usage: drift_worker.py {{{','.join(_TOOLS)}}} PARQUET...\n")
        return 2
    n_paths, function = _TOOLS[argv[0]]
    paths = argv[1:]
    if len(paths) != n_paths:
        sys.stderr.write(f"{argv[0]} takes {n_paths} parquet path(s), got {len(paths)}\n")
        return 2
    payload = function(*paths)
    payload["tool"] = argv[0]
    payload["in_process_s"] = round(time.perf_counter() - _T0, 4)
    _emit(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
