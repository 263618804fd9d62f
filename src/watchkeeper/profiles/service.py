"""Service signals of a model server: latency, errors and request timestamps.

Events may carry reserved columns next to the model's inputs and outputs (the SDK and
the server fill them in): ``_ts`` (event time), ``_latency_ms``, ``_client`` (caller id)
and ``_error`` (the prediction call failed). Latency goes into a log-bucket histogram that
merges exactly and answers any quantile within 1% relative error.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from watchkeeper.io.values import numbers_with_nan
from watchkeeper.wire import ERROR, LATENCY, RESERVED

#: Log buckets: bucket i holds [LOW·γ^i, LOW·γ^(i+1)); its geometric midpoint is within
#: √γ − 1 ≈ 1% of any value in it. Range 1 µs … 10⁷ ms; values outside land in the ends.
GAMMA = 1.02
LOW_MS = 1e-3
BUCKETS = math.ceil(math.log(1e7 / LOW_MS) / math.log(GAMMA))
LATENCY_TALLY = "latency"
SERVICE_TALLY = "service"  # [rows, rows with an error flag set]


def latency_buckets(latency_ms: np.ndarray) -> np.ndarray:
    """Histogram of finite latencies on the log buckets.

    >>> h = latency_buckets(np.array([1.0, 1.0, 100.0]))
    >>> int(h.sum()), round(latency_quantile(h, 0.5), 3)  # within 1% of 1.0
    (3, 0.993)
    """
    v = latency_ms[np.isfinite(latency_ms)]
    idx = np.floor(np.log(np.maximum(v, LOW_MS) / LOW_MS) / math.log(GAMMA)).astype(np.int64)
    return np.bincount(np.clip(idx, 0, BUCKETS - 1), minlength=BUCKETS).astype(np.int64)


def latency_quantile(histogram: np.ndarray, q: float) -> float:
    """The q-quantile of a latency histogram (NaN when empty)."""
    total = histogram.sum()
    if total <= 0:
        return float("nan")
    i = int(np.searchsorted(np.cumsum(histogram), q * total, side="left"))
    return float(LOW_MS * GAMMA ** (i + 0.5))


def _truthy(column: pa.ChunkedArray) -> np.ndarray:
    values = column.to_pylist()
    return np.array([bool(v) and str(v).lower() not in ("0", "false", "no", "none", "")
                     for v in values], dtype=bool)


def service_tallies(table: pa.Table) -> dict[str, np.ndarray]:
    """Latency histogram and error count of a batch (empty when it has neither column)."""
    out: dict[str, np.ndarray] = {}
    names = set(table.column_names)
    if LATENCY in names:
        out[LATENCY_TALLY] = latency_buckets(numbers_with_nan(table.column(LATENCY)))
    if ERROR in names:
        out[SERVICE_TALLY] = np.array([table.num_rows, int(_truthy(table.column(ERROR)).sum())],
                                      dtype=np.int64)
    return out


def service_only(table: pa.Table) -> np.ndarray | None:
    """Rows that carry nothing but service columns (``_latency_ms``, ``_error``…), as the
    ASGI middleware logs them; None when there are none. They count for latency and errors
    only: not as rows (with every feature missing), nor as a client's inputs."""
    if not any(name in RESERVED for name in table.column_names):
        return None
    others = [table.column(name) for name in table.column_names if name not in RESERVED]
    if not others:
        return np.ones(table.num_rows, dtype=bool) if table.num_rows else None
    if any(column.null_count == 0 for column in others):
        return None  # the usual case, answered without looking at a value
    empty = np.ones(table.num_rows, dtype=bool)
    for column in others:
        empty &= np.asarray(column.is_null(nan_is_null=True).to_numpy(zero_copy_only=False),
                            dtype=bool)
    return empty if empty.any() else None
