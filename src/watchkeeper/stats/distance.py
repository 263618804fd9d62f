"""Distances between two binned distributions given as counts.

Every function takes count arrays of shape ``(..., k)`` and broadcasts over the leading
axes, so a calibration run can score thousands of resampled windows in one call.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(axis=-1, keepdims=True)
    return counts / np.where(total > 0, total, 1.0)


def js_distance(p_counts: np.ndarray, q_counts: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2, so in [0, 1]) between two count vectors.

    >>> float(js_distance(np.array([10, 0]), np.array([0, 10])))
    1.0
    >>> float(js_distance(np.array([5, 5]), np.array([50, 50])))
    0.0
    """
    p = _proportions(p_counts)
    q = _proportions(q_counts)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.where(p > 0, p * np.log2(p / np.where(m > 0, m, 1.0)), 0.0).sum(axis=-1)
        kl_qm = np.where(q > 0, q * np.log2(q / np.where(m > 0, m, 1.0)), 0.0).sum(axis=-1)
    divergence = np.clip(0.5 * (kl_pm + kl_qm), 0.0, 1.0)
    return np.sqrt(divergence)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> np.ndarray:
    """Population stability index, with empty bins smoothed by half a count.

    >>> round(float(psi(np.array([50, 50]), np.array([50, 50]))), 6)
    0.0
    """
    r = np.asarray(reference_counts, dtype=float) + 0.5
    c = np.asarray(current_counts, dtype=float) + 0.5
    r = r / r.sum(axis=-1, keepdims=True)
    c = c / c.sum(axis=-1, keepdims=True)
    return ((c - r) * np.log(c / r)).sum(axis=-1)


def wasserstein_binned(
    reference_counts: np.ndarray, current_counts: np.ndarray, widths: np.ndarray, scale: float
) -> np.ndarray:
    """Earth mover's distance between two histograms on the same bins, divided by ``scale``.

    ``widths`` holds the distance between consecutive bin centres (length k − 1); with
    ``scale`` the reference standard deviation the result reads "shift in sd units".

    >>> float(wasserstein_binned(np.array([1, 0]), np.array([0, 1]), np.array([2.0]), 2.0))
    1.0
    """
    cdf_r = np.cumsum(_proportions(reference_counts), axis=-1)[..., :-1]
    cdf_c = np.cumsum(_proportions(current_counts), axis=-1)[..., :-1]
    return (np.abs(cdf_r - cdf_c) * widths).sum(axis=-1) / max(scale, _EPS)
