"""Pure numerics: moments, distances between binned distributions, threshold calibration.

Nothing in this package does I/O or keeps global state; every function is vectorised
over NumPy arrays so it can be reused by profiles, monitors, benchmarks and engines.
"""

from watchkeeper.stats.calibration import (
    NullFit,
    chunk_overdispersion,
    count_interval,
    fit_binned_null,
    rate_threshold,
    split_budget,
)
from watchkeeper.stats.distance import js_distance, psi, wasserstein_binned
from watchkeeper.stats.moments import Moments

__all__ = [
    "Moments",
    "NullFit",
    "chunk_overdispersion",
    "count_interval",
    "fit_binned_null",
    "js_distance",
    "psi",
    "rate_threshold",
    "split_budget",
    "wasserstein_binned",
]
