"""NannyML's DataReconstructionDriftCalculator on the windows of ``bench_multivariate.py``.

Runs in NannyML's own venv (``benchmarks/.venv-nannyml``), so it imports nothing from
watchkeeper. Reads the reference rows and the windows (rows in window order, every window
``--rows`` long, so NannyML's size-based chunks are exactly the windows), fits the
calculator with its defaults (65% of the variance, threshold: reference-chunk mean ± 3
sd) and prints, as the last line, ``NML_RESULT {"alerts": [0/1 per window], ...}``.

Usage::

    python benchmarks/multivariate_nml_worker.py REF.parquet WINDOWS.parquet ROWS COLUMNS...
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")


def main() -> None:
    ref_path, windows_path, rows, *columns = sys.argv[1:]
    import nannyml as nml
    import pandas as pd

    reference = pd.read_parquet(ref_path)
    windows = pd.read_parquet(windows_path)
    started = time.perf_counter()
    calc = nml.DataReconstructionDriftCalculator(column_names=columns, chunk_size=int(rows))
    calc.fit(reference)
    fitted = time.perf_counter()
    result = calc.calculate(windows).filter(period="analysis").to_df()
    done = time.perf_counter()
    alerts = [int(bool(v)) for v in result[("reconstruction_error", "alert")]]
    values = [float(v) for v in result[("reconstruction_error", "value")]]
    upper = result[("reconstruction_error", "upper_threshold")]
    print("NML_RESULT " + json.dumps({
        "alerts": alerts, "values": values, "upper_threshold": float(upper.iloc[0]),
        "fit_s": fitted - started, "calculate_s": done - fitted,
        "reference_chunks": int(-(-len(reference) // int(rows))),
    }))


if __name__ == "__main__":
    main()
