"""How much each feature matters to the model: the mutual information of the column with
the prediction on the reference, over the prediction's entropy. Advice ranks an incident's
columns by it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.schema import Kind, Role, Schema
from watchkeeper.io.values import label_codes, numbers_with_nan


def importance(table: pa.Table, schema: Schema) -> dict[str, float]:
    """Each feature's mutual information with the prediction, over the prediction's
    entropy (0: tells nothing about the output, 1: determines it), on the reference."""
    task = schema.task
    if task is None or task.prediction is None or task.prediction not in table.column_names:
        return {}
    pred_spec = schema.columns[task.prediction]
    y = _codes(table.column(task.prediction), pred_spec)
    out = {}
    for spec in schema:
        if spec.role == Role.FEATURE and spec.n_bins and spec.name in table.column_names:
            out[spec.name] = round(_normalised_mi(_codes(table.column(spec.name), spec), y), 6)
    return out


def _codes(column: pa.ChunkedArray, spec: Any) -> np.ndarray:
    if spec.kind == Kind.NUMERIC and spec.edges:
        x = numbers_with_nan(column)
        return np.where(np.isfinite(x), np.searchsorted(np.asarray(spec.edges), x), -1) + 1
    return label_codes(column, spec.categories or [])


def _normalised_mi(x: np.ndarray, y: np.ndarray) -> float:
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1)
    p = joint / joint.sum()
    px, py = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.nansum(p * np.log(p / (px * py)))
        hy = -np.nansum(py * np.log(py))
    return float(mi / hy) if hy > 0 else 0.0
