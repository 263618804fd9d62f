"""Synthetic data sets with known drift, for tests, benchmarks and demos.

Nothing here downloads anything: every frame is generated from a seed.

>>> from watchkeeper.io.datasets import synthetic_drift_pair
>>> ref, cur = synthetic_drift_pair(1_000, seed=0)
>>> ref.num_rows, ref.num_columns
(1000, 20)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Columns whose distribution differs between reference and current in
#: :func:`synthetic_drift_pair`, with the change applied.
DRIFTED_COLUMNS: dict[str, str] = {
    "num_00": "mean + 0.5 sd (normal)",
    "num_01": "sd x 1.5 (normal)",
    "num_02": "lognormal mu + 0.2",
    "cat_00": "category probabilities half reversed",
}

_N_NUMERIC = 15
_N_CATEGORICAL = 5
_LEVELS = 10


def _numeric(rng: np.random.Generator, j: int, n: int, drifted: bool) -> np.ndarray:
    """Column ``num_{j}``: a fixed family per column, drifted as DRIFTED_COLUMNS says."""
    if j == 0:
        return rng.normal(10.0 + (0.5 * 2.0 if drifted else 0.0), 2.0, n)
    if j == 1:
        return rng.normal(0.0, 1.5 if drifted else 1.0, n)
    if j == 2:
        return rng.lognormal(1.0 + (0.2 if drifted else 0.0), 1.0, n)
    family = j % 4
    if family == 0:
        return rng.normal(j, 1.0 + j / 10, n)
    if family == 1:
        return rng.uniform(-j, j, n)
    if family == 2:
        return rng.exponential(1.0 + j / 5, n)
    return rng.gamma(2.0, 1.0 + j / 7, n)


def _category_probabilities(j: int, drifted: bool) -> np.ndarray:
    weights = 1.0 / np.arange(1, _LEVELS + 1) ** (0.8 + j / 10)  # Zipf-like, never uniform
    p = weights / weights.sum()
    if drifted:
        p = 0.5 * p + 0.5 * p[::-1]
    return p


def _frame(n: int, rng: np.random.Generator, drift: bool) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for j in range(_N_NUMERIC):
        name = f"num_{j:02d}"
        columns[name] = pa.array(_numeric(rng, j, n, drift and name in DRIFTED_COLUMNS))
    levels = np.array([f"level_{k}" for k in range(_LEVELS)], dtype=object)
    for j in range(_N_CATEGORICAL):
        name = f"cat_{j:02d}"
        p = _category_probabilities(j, drift and name in DRIFTED_COLUMNS)
        codes = rng.choice(_LEVELS, size=n, p=p)
        columns[name] = pa.array(levels[codes], type=pa.string())
    return pa.table(columns)


def synthetic_drift_pair(
    n_rows: int, *, seed: int = 0, drift: bool = True
) -> tuple[pa.Table, pa.Table]:
    """A (reference, current) pair of 20 columns: 15 numeric, 5 categorical with 10 levels.

    With ``drift=True`` exactly the columns in :data:`DRIFTED_COLUMNS` change; every other
    column keeps its distribution. Reference and current are independent draws.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows: must be a positive integer, got {n_rows!r}")
    rng = np.random.default_rng(seed)
    reference = _frame(n_rows, rng, drift=False)
    current = _frame(n_rows, rng, drift=drift)
    return reference, current
