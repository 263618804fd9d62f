"""Thresholds from the reference itself: the (1 − α) quantile of a statistic under "no change".

Large windows make every p-value tiny, so fixed cut-offs either flood or miss. Here a
threshold depends on the window size actually seen, on the reference's own sampling noise
and on its natural variation over time, and α comes from a suite-wide alert budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from watchkeeper.stats.distance import js_distance

#: Resampled windows per calibration point: enough to estimate the mean and variance of
#: the statistic within a few percent, which is all the moment-matched tail needs.
DEFAULT_DRAWS = 1000
#: The moment-matched tail can underestimate exceedance for small windows (measured: up to
#: 1.7x at α = 1e-4 and 100–300 rows, tests/stats/test_stats.py). Thresholds are therefore taken
#: at α / TAIL_MARGIN so the realised false-alert rate stays at or below α.
TAIL_MARGIN = 2.0


def split_budget(budget: float, n_monitors: int) -> float:
    """Per-monitor α so that the whole suite raises at most ``budget`` false alerts per window.

    A Bonferroni split: conservative when monitors are correlated, never anti-conservative.

    >>> split_budget(0.01, 4)
    0.0025
    """
    if not 0.0 < budget < 1.0:
        raise ValueError(f"alert budget must be in (0, 1), got {budget!r}")
    return budget / max(n_monitors, 1)


@dataclass(frozen=True)
class NullFit:
    """Scaled chi-square fit ``JSD ≈ scale · χ²(df)`` of the JS divergence under no change.

    The fit matches the mean and variance of resampled divergences, the usual
    Satterthwaite approximation; its upper tail gives thresholds for any α without
    needing 1/α resamples.
    """

    rows: int
    scale: float
    df: float

    def threshold(self, alpha: float, overdispersion: float = 1.0) -> float:
        """JS *distance* exceeded with probability ``alpha`` under no change."""
        if self.scale <= 0.0 or self.df <= 0.0:
            return 0.0
        q = float(special.chdtri(self.df, alpha / TAIL_MARGIN))
        return float(np.sqrt(min(1.0, self.scale * overdispersion * q)))


def _js_divergence_draws(
    p_null: np.ndarray, n_ref: int, n: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    reference = rng.multinomial(n_ref, p_null, size=draws)
    window = rng.multinomial(n, p_null, size=draws)
    return np.square(js_distance(reference, window))


def fit_binned_null(
    p_null: np.ndarray,
    n_ref: int,
    n: int,
    *,
    draws: int = DEFAULT_DRAWS,
    rng: np.random.Generator,
) -> NullFit:
    """Fit the null distribution of JS divergence between a reference of ``n_ref`` rows and
    a window of ``n`` rows, both drawn from the bin proportions ``p_null``.

    Drawing the reference too (not only the window) accounts for the reference's own
    sampling noise, which dominates when windows are larger than the reference.

    >>> fit = fit_binned_null(np.full(10, 0.1), 10_000, 1_000, rng=np.random.default_rng(0))
    >>> 0.03 < fit.threshold(0.01) < 0.08
    True
    """
    p = np.asarray(p_null, dtype=float)
    p = p / p.sum()
    samples = _js_divergence_draws(p, n_ref, n, draws, rng)
    mean = float(samples.mean())
    var = float(samples.var(ddof=1))
    if mean <= 0.0 or var <= 0.0:
        return NullFit(n, 0.0, 0.0)
    return NullFit(n, var / (2.0 * mean), 2.0 * mean * mean / var)


def chunk_overdispersion(
    chunk_counts: np.ndarray,
    p_null: np.ndarray,
    *,
    draws: int = 300,
    rng: np.random.Generator,
) -> float:
    """How much more consecutive reference chunks differ from the rest than sampling explains.

    ``chunk_counts`` has one row of bin counts per chunk of the reference, in time order.
    Returns the ratio of the mean observed JS divergence (chunk vs rest of the reference)
    to its mean under independent sampling, floored at 1. A reference with weekly cycles
    gives a ratio above 1, which widens thresholds so natural variation does not alert.
    """
    counts = np.asarray(chunk_counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] < 5:
        return 1.0
    total = counts.sum(axis=0)
    rest = total - counts
    observed = float(np.square(js_distance(counts, rest)).mean())
    m = round(float(counts.sum(axis=1).mean()))
    n_ref = int(total.sum())
    p = np.asarray(p_null, dtype=float)
    expected = float(_js_divergence_draws(p / p.sum(), n_ref - m, m, draws, rng).mean())
    if expected <= 0.0:
        return 1.0
    return max(1.0, observed / expected)


def difference_threshold(unit_sd: float, n: int, n_ref: int, alpha: float) -> float:
    """One-sided threshold on (reference metric − window metric) under no change.

    ``unit_sd`` is the metric's standard deviation on one row (its sd on m rows times √m),
    measured by resampling the reference; the difference of a window of ``n`` rows and the
    reference of ``n_ref`` rows is then about normal with variance unit_sd²(1/n + 1/n_ref).

    >>> round(difference_threshold(0.5, 1000, 10_000, 0.01), 4)
    0.0427
    """
    if n <= 0 or n_ref <= 0 or unit_sd <= 0:
        return 0.0
    z = float(special.ndtri(1.0 - alpha / TAIL_MARGIN))
    return z * unit_sd * float(np.sqrt(1.0 / n + 1.0 / n_ref))


def _smallest(k_lo: int, k_hi: int, ok: Callable[[int], bool]) -> int:
    """Smallest integer k in [k_lo, k_hi] with ok(k) true, for a monotone predicate."""
    while k_lo < k_hi:
        mid = (k_lo + k_hi) // 2
        if ok(mid):
            k_hi = mid
        else:
            k_lo = mid + 1
    return k_lo


def binomial_upper(n: int, p: float, q: float) -> int:
    """Smallest k with P(X > k) ≤ q for X ~ Binomial(n, p) (scipy's ``binom.isf``).

    >>> binomial_upper(1000, 0.0123, 0.005)
    22
    """
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    # P(X > k) = I_p(k + 1, n − k), the regularised incomplete beta function.
    return _smallest(0, n, lambda k: k >= n or special.betainc(k + 1, n - k, p) <= q)


def rate_threshold(k_ref: int, n_ref: int, n: int, alpha: float) -> float:
    """Largest share of ``n`` window rows that is still plausible under no change.

    The reference showed ``k_ref`` events in ``n_ref`` rows. Half of α covers the
    reference's uncertainty (Clopper–Pearson upper bound of its rate), half the window's
    binomial sampling, so the result is exact-conservative even for rare events.

    >>> round(rate_threshold(10, 10_000, 1_000, 0.01), 4)
    0.007
    """
    if n <= 0:
        return 1.0
    half = alpha / 2.0
    if n_ref <= 0 or k_ref >= n_ref:
        p_up = 1.0
    else:
        p_up = float(special.betaincinv(k_ref + 1, n_ref - k_ref, 1.0 - half))
    return min(1.0, binomial_upper(n, p_up, half) / n)


def count_interval(expected: float, dispersion: float, alpha: float) -> tuple[float, float]:
    """Two-sided interval for a window's row count with mean ``expected``.

    ``dispersion`` is the variance-to-mean ratio seen in the reference's own windows:
    1 gives a Poisson interval, more gives a negative binomial of that dispersion.

    >>> count_interval(1000.0, 1.0, 0.01)
    (919, 1082)
    """
    if expected <= 0:
        return 0, 0
    half = alpha / 2.0
    if dispersion <= 1.0 + 1e-9:
        def cdf(k: int) -> float:
            return float(special.pdtr(k, expected))
    else:
        # Negative binomial with mean μ and variance φμ: r = μ / (φ − 1), p = 1 / φ.
        r, p = expected / (dispersion - 1.0), 1.0 / dispersion

        def cdf(k: int) -> float:
            return float(special.betainc(r, k + 1, p))
    hi_bound = int(expected * dispersion * 10 + 100)
    lo = _smallest(0, hi_bound, lambda k: cdf(k) >= half)
    hi = _smallest(0, hi_bound, lambda k: 1.0 - cdf(k) <= half)
    return lo, hi
