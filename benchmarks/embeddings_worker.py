"""Evidently's embedding drift methods on the windows of bench_embeddings.py; runs in
Evidently's own venv (``benchmarks/.venv-evidently``).

Usage: python embeddings_worker.py VECTORS.npz OUT.json

``VECTORS.npz`` holds ``reference`` (rows × dims) and ``window_<i>`` arrays. Each method
is Evidently 0.7's own ``DriftMethod`` object, called as ``EmbeddingsDriftMetric`` calls it
(``method(current, reference)`` on DataFrames of the embedding's columns), with its
default settings; ``model`` is also run with ``bootstrap=True``, the default
``EmbeddingsDriftMetric`` picks for references under 1,000 rows.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
from evidently.legacy.metrics.data_drift.embedding_drift_methods import (
    distance,
    mmd,
    model,
    ratio,
)


def main() -> None:
    source, out = sys.argv[1], sys.argv[2]
    data = np.load(source)
    reference = data["reference"]
    columns = [f"e{i}" for i in range(reference.shape[1])]
    methods = {"model": model(), "model_bootstrap": model(bootstrap=True), "mmd": mmd(),
               "ratio": ratio(), "distance": distance()}
    names = sorted((k for k in data.files if k.startswith("window_")),
                   key=lambda k: int(k.split("_")[1]))
    results: dict[str, dict[str, list]] = {m: {"drift": [], "score": [], "seconds": []}
                                           for m in methods}
    for name in names:
        window = data[name]
        for label, method in methods.items():
            ref = pd.DataFrame(reference, columns=columns)
            cur = pd.DataFrame(window, columns=columns)
            start = time.perf_counter()
            score, drifted, _ = method(cur, ref)
            results[label]["seconds"].append(time.perf_counter() - start)
            results[label]["drift"].append(bool(drifted))
            results[label]["score"].append(float(score))
    with open(out, "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main()
