"""The binning plan: numeric bin edges from reference quantiles, categorical levels.

The plan is part of each column's spec, because every profile of every window must use the
same bins to be comparable and mergeable.
"""

from __future__ import annotations

import numpy as np

from watchkeeper.stats.distance import js_distance

#: Quantile bins per numeric column (plus one tail on each side).
DEFAULT_BINS = 20
#: Integer-valued columns with at most this many distinct values are category codes.
MAX_CODE_LEVELS = 30
#: Categorical levels kept in the plan; rarer ones share an "other" bin.
MAX_CATEGORIES = 100
#: A column with more than MAX_CATEGORIES levels keeps only levels seen this often in the
#: reference: the most frequent of thousands of rare levels are partly so by chance, their
#: share falls back in every later window, and drift would fire on that alone.
MIN_LEVEL_ROWS = 30
#: ... and only as many as keep that fall-back (measured by choosing the levels on half of
#: the reference rows and counting them on the other half) below this Jensen–Shannon
#: distance, well under the drift monitors' minimum effect (0.05).
MAX_SELECTION_DRIFT = 0.02

def plan_numeric(values: np.ndarray, bins: int = DEFAULT_BINS) -> list[float]:
    """Bin edges: reference min, interior quantiles (deduplicated), reference max.

    Quantiles are taken among the observed values, so discrete columns get no empty bins.

    >>> plan_numeric(np.arange(100.0), bins=4)
    [0.0, 24.0, 49.0, 74.0, 99.0]
    """
    if values.size == 0:
        return []
    return edges_from_quantiles(np.quantile(values, quantile_points(bins),
                                            method="inverted_cdf"))


def quantile_points(bins: int) -> np.ndarray:
    """The quantile levels of a plan of ``bins`` bins: 0, 1/bins, ..., 1."""
    return np.linspace(0.0, 1.0, bins + 1)


def edges_from_quantiles(qs: np.ndarray) -> list[float]:
    """Bin edges from the quantiles at :func:`quantile_points` (exact, or a sketch's)."""
    lo, hi = float(qs[0]), float(qs[-1])
    interior = [float(q) for q in np.unique(qs[1:-1]) if lo < q < hi]
    return [lo, *interior, hi]


def plan_categories(counts: dict[str, int], limit: int = MAX_CATEGORIES) -> tuple[list[str], bool]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [k for k, _ in ordered[:limit]], len(ordered) > limit


def selection_drift(chosen_on: dict[str, int], counted_on: dict[str, int], k: int) -> float:
    """How far the k most frequent levels of one sample fall back on another sample of the
    same data: the Jensen–Shannon distance between the level shares where they were chosen
    and the same shares shrunk as they are on the other sample. A few clearly frequent
    levels give ~0; the top of thousands of similar levels gives much more.

    >>> even = {"a": 500, "b": 300, **{f"r{i}": 1 for i in range(200)}}
    >>> odd = {"a": 480, "b": 310, **{f"r{i}": 1 for i in range(200, 400)}}
    >>> round(selection_drift(even, odd, 2), 2), selection_drift(even, odd, 100) > 0.05
    (0.0, True)
    """
    top = sorted(chosen_on, key=lambda c: (-chosen_on[c], c))[:k]
    total_a, total_b = sum(chosen_on.values()), sum(counted_on.values())
    if not top or not total_a or not total_b:
        return 0.0
    shares = np.array([chosen_on[c] for c in top], dtype=float) / total_a
    kept_a, kept_b = shares.sum(), sum(counted_on.get(c, 0) for c in top) / total_b
    shrunk = shares * min(kept_b / kept_a, 1.0)
    return float(js_distance(np.r_[shares, 1 - kept_a], np.r_[shrunk, 1 - shrunk.sum()]))
