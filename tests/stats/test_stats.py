"""stats: moments, distances between binned distributions, threshold calibration."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from watchkeeper.stats import (
    Moments,
    NullFit,
    chunk_overdispersion,
    count_interval,
    fit_binned_null,
    js_distance,
    psi,
    rate_threshold,
    split_budget,
    wasserstein_binned,
)
from watchkeeper.stats.calibration import _js_divergence_draws

# ---------------------------------------------------------------- moments

finite_arrays = hnp.arrays(
    np.float64,
    st.integers(0, 60),
    elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=200, deadline=None)
@given(a=finite_arrays, b=finite_arrays)
def test_moments_merge_matches_numpy(a, b):
    m = Moments.of(a).merge(Moments.of(b))
    both = np.concatenate([a, b])
    assert m.n == both.size
    if both.size == 0:
        assert m == Moments()
        return
    scale = max(1.0, float(np.abs(both).max()))
    assert m.mean == pytest.approx(both.mean(), rel=1e-9, abs=1e-12 * scale)
    expected_m2 = float(np.square(both - both.mean()).sum())
    assert m.m2 == pytest.approx(expected_m2, rel=1e-8, abs=1e-9 * scale * scale)
    if both.size > 1:
        assert m.variance == pytest.approx(np.var(both, ddof=1), rel=1e-8, abs=1e-9 * scale**2)
        assert m.std == pytest.approx(np.std(both, ddof=1), rel=1e-6, abs=1e-6 * scale)


def test_moments_of_few_values():
    assert Moments.of(np.zeros(0)) == Moments()
    one = Moments.of(np.array([4.0]))
    assert (one.n, one.mean, one.m2) == (1, 4.0, 0.0)
    assert math.isnan(one.variance) and math.isnan(one.std)
    assert Moments().merge(one) == one and one.merge(Moments()) == one


def test_moments_merge_is_stable_far_from_zero():
    rng = np.random.default_rng(0)
    chunks = [1e9 + rng.normal(size=1000) for _ in range(20)]
    m = Moments()
    for chunk in chunks:
        m = m.merge(Moments.of(chunk))
    assert m.variance == pytest.approx(np.var(np.concatenate(chunks), ddof=1), rel=1e-6)


# ---------------------------------------------------------------- distances


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_js_distance_is_a_bounded_symmetric_distance(data):
    k = data.draw(st.integers(1, 12))
    vec = hnp.arrays(np.int64, k, elements=st.integers(0, 1000))
    p, q = data.draw(vec), data.draw(vec)
    if p.sum() == 0 or q.sum() == 0:
        return
    d = float(js_distance(p, q))
    assert 0.0 <= d <= 1.0
    assert d == pytest.approx(float(js_distance(q, p)), abs=1e-12)
    assert float(js_distance(p, p)) == pytest.approx(0.0, abs=1e-7)
    # scipy's Jensen–Shannon distance in base 2 is the reference implementation
    assert d == pytest.approx(float(jensenshannon(p, q, base=2)), abs=1e-7)


def test_js_distance_zero_for_proportional_counts():
    p = np.array([1, 2, 3, 0, 4])
    for factor in (1, 2, 7, 1000):
        assert float(js_distance(p, p * factor)) == pytest.approx(0.0, abs=1e-7)


def test_js_distance_one_for_disjoint_support():
    assert float(js_distance(np.array([5, 3, 0, 0]), np.array([0, 0, 1, 9]))) == 1.0


def test_js_distance_known_value():
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4):
    # KL(p‖m) = log2(4/3), KL(q‖m) = ½ log2(2/3) + ½ log2(2)
    kl_pm = math.log2(4 / 3)
    kl_qm = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    expected = math.sqrt(0.5 * kl_pm + 0.5 * kl_qm)
    assert float(js_distance(np.array([10, 0]), np.array([10, 10]))) == pytest.approx(expected)


def test_js_distance_broadcasts_over_leading_axes():
    rng = np.random.default_rng(1)
    p = rng.integers(0, 50, size=(3, 4, 6))
    q = rng.integers(1, 50, size=(4, 6))
    out = js_distance(p, q)
    assert out.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert out[i, j] == pytest.approx(float(js_distance(p[i, j], q[j])), abs=1e-12)


def test_psi_known_value_and_properties():
    r, c = np.array([60, 40]), np.array([40, 60])
    # with the half-count smoothing
    rs, cs = (r + 0.5) / (r + 0.5).sum(), (c + 0.5) / (c + 0.5).sum()
    expected = float(((cs - rs) * np.log(cs / rs)).sum())
    assert float(psi(r, c)) == pytest.approx(expected)
    assert float(psi(r, c)) == pytest.approx(float(psi(c, r)))  # PSI is symmetric
    assert float(psi(r, r * 3)) == pytest.approx(0.0, abs=1e-3)
    assert float(psi(r, c)) > 0
    # empty bins do not make it infinite
    assert math.isfinite(float(psi(np.array([100, 0]), np.array([0, 100]))))
    # bigger shifts score higher
    assert float(psi(r, np.array([20, 80]))) > float(psi(r, c))


def test_psi_broadcasts():
    ref = np.array([10, 20, 30])
    windows = np.array([[10, 20, 30], [30, 20, 10], [1, 1, 100]])
    out = psi(ref, windows)
    assert out.shape == (3,)
    assert out.tolist() == pytest.approx([float(psi(ref, w)) for w in windows])


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    k=st.integers(2, 10),
)
def test_wasserstein_binned_matches_scipy(data, k):
    vec = hnp.arrays(np.int64, k, elements=st.integers(0, 100))
    r, c = data.draw(vec), data.draw(vec)
    if r.sum() == 0 or c.sum() == 0:
        return
    centres = np.cumsum(data.draw(hnp.arrays(np.float64, k, elements=st.floats(0.1, 10.0))))
    scale = data.draw(st.floats(0.5, 5.0))
    expected = sps.wasserstein_distance(centres, centres, r, c) / scale
    got = float(wasserstein_binned(r, c, np.diff(centres), scale))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_wasserstein_binned_shift_in_sd_units_and_broadcasting():
    widths = np.ones(4)  # centres 0, 1, 2, 3, 4
    ref = np.array([0, 10, 0, 0, 0])
    shifted = np.array([[0, 0, 0, 10, 0], [0, 10, 0, 0, 0]])
    out = wasserstein_binned(ref, shifted, widths, 2.0)
    assert out.tolist() == pytest.approx([1.0, 0.0])
    # a zero scale does not divide by zero
    assert math.isfinite(float(wasserstein_binned(ref, shifted[0], widths, 0.0)))


# ---------------------------------------------------------------- null fit

UNIFORM_20 = np.full(20, 0.05)
SKEWED_4 = np.array([0.85, 0.10, 0.04, 0.01])


@cache
def _empirical_distances(which: str, n_ref: int, n: int) -> np.ndarray:
    p = UNIFORM_20 if which == "uniform" else SKEWED_4
    draws = _js_divergence_draws(p, n_ref, n, 100_000, np.random.default_rng(12345))
    return np.sqrt(draws)


@pytest.mark.parametrize("which", ["uniform", "skewed"])
@pytest.mark.parametrize(("n_ref", "n"), [(10_000, 1_000), (5_000, 5_000)])
@pytest.mark.parametrize("alpha", [0.01, 0.001])
def test_fitted_threshold_matches_simulated_quantile(which, n_ref, n, alpha):
    p = UNIFORM_20 if which == "uniform" else SKEWED_4
    fit = fit_binned_null(p, n_ref, n, rng=np.random.default_rng(0))
    empirical = float(np.quantile(_empirical_distances(which, n_ref, n), 1.0 - alpha))
    threshold = fit.threshold(alpha)
    assert fit.rows == n
    assert threshold == pytest.approx(empirical, rel=0.10)
    # and the fit's tail really holds about α of the simulated mass
    exceed = float(np.mean(_empirical_distances(which, n_ref, n) > threshold))
    assert exceed <= 2 * alpha


def test_threshold_shrinks_with_window_size_and_grows_with_overdispersion():
    rng = np.random.default_rng(5)
    small = fit_binned_null(UNIFORM_20, 50_000, 100, rng=rng).threshold(0.01)
    large = fit_binned_null(UNIFORM_20, 50_000, 10_000, rng=rng).threshold(0.01)
    assert small > large > 0
    fit = fit_binned_null(UNIFORM_20, 50_000, 10_000, rng=rng)
    assert fit.threshold(0.01, overdispersion=2.0) == pytest.approx(
        fit.threshold(0.01) * math.sqrt(2.0)
    )
    assert fit.threshold(0.001) > fit.threshold(0.01)
    assert fit.threshold(0.01, overdispersion=1e9) == 1.0  # a distance never exceeds 1


def test_null_fit_of_a_single_bin_is_zero():
    fit = fit_binned_null(np.array([1.0]), 1000, 100, rng=np.random.default_rng(0))
    assert fit.threshold(0.01) == 0.0
    assert NullFit(10, 0.0, 0.0).threshold(0.01) == 0.0


def test_null_fit_normalises_proportions():
    a = fit_binned_null(np.array([2.0, 2.0]), 1000, 100, rng=np.random.default_rng(3))
    b = fit_binned_null(np.array([0.5, 0.5]), 1000, 100, rng=np.random.default_rng(3))
    assert a == b


def test_chunk_overdispersion():
    rng = np.random.default_rng(8)
    p = np.array([0.5, 0.3, 0.2])
    iid = rng.multinomial(1000, p, size=20)
    assert 1.0 <= chunk_overdispersion(iid, p, rng=rng) < 1.5
    # chunks that alternate between two regimes vary far more than sampling explains
    cycle = np.array(
        [rng.multinomial(1000, [0.7, 0.2, 0.1] if i % 2 else [0.3, 0.4, 0.3]) for i in range(20)]
    )
    assert chunk_overdispersion(cycle, p, rng=rng) > 5.0
    assert chunk_overdispersion(iid[:4], p, rng=rng) == 1.0  # too few chunks to tell


# ---------------------------------------------------------------- rates and counts


@pytest.mark.parametrize(
    ("rate", "n_ref", "n"),
    [
        (0.0, 10_000, 1_000),
        (0.001, 10_000, 1_000),
        (0.01, 5_000, 500),
        (0.05, 2_000, 2_000),
        (0.2, 1_000, 100),
        (0.5, 500, 50),
        (0.0005, 100_000, 30),
    ],
)
def test_rate_threshold_is_conservative(rate, n_ref, n):
    alpha = 0.01
    windows = 20_000
    rng = np.random.default_rng(int(rate * 1e6) + n)
    # the reference is a sample too: its count varies, and so does the threshold
    k_ref = rng.binomial(n_ref, rate, windows)
    k = rng.binomial(n, rate, windows)
    thresholds = {int(kr): rate_threshold(int(kr), n_ref, n, alpha) for kr in np.unique(k_ref)}
    limit = np.array([thresholds[int(kr)] for kr in k_ref])
    exceed = float(np.mean(k / n > limit))
    assert exceed <= alpha
    # exactly, given the reference count it was calibrated on
    expected_ref = round(rate * n_ref)
    t = rate_threshold(expected_ref, n_ref, n, alpha)
    assert float(sps.binom.sf(math.floor(t * n + 1e-9), n, rate)) <= alpha


def test_rate_threshold_edges():
    assert rate_threshold(5, 100, 0, 0.01) == 1.0  # empty window
    assert rate_threshold(0, 0, 100, 0.01) == 1.0  # no reference: anything is plausible
    assert rate_threshold(100, 100, 100, 0.01) == 1.0
    t = rate_threshold(0, 10_000, 1_000, 0.01)
    assert 0.0 <= t < 0.01
    # a larger α, a larger window or a larger reference tighten the bound
    assert rate_threshold(50, 1_000, 500, 0.05) < rate_threshold(50, 1_000, 500, 0.001)
    assert rate_threshold(50, 1_000, 5_000, 0.01) < rate_threshold(50, 1_000, 500, 0.01)
    assert rate_threshold(500, 10_000, 500, 0.01) < rate_threshold(50, 1_000, 500, 0.01)


@pytest.mark.parametrize("expected", [5.0, 50.0, 1000.0, 100_000.0])
@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_count_interval_poisson_coverage(expected, alpha):
    lo, hi = count_interval(expected, 1.0, alpha)
    assert lo <= expected <= hi
    dist = sps.poisson(expected)
    exact = float(dist.cdf(hi) - dist.cdf(lo - 1))
    assert 1 - alpha <= exact <= 1 - alpha / 5  # discrete: covers at least 1 − α, not much more
    draws = np.random.default_rng(int(expected)).poisson(expected, 20_000)
    simulated = float(np.mean((draws >= lo) & (draws <= hi)))
    assert simulated == pytest.approx(exact, abs=4 * math.sqrt(alpha * (1 - alpha) / 20_000))


@pytest.mark.parametrize(("expected", "dispersion"), [(1000.0, 3.0), (50.0, 2.0)])
def test_count_interval_overdispersed_coverage(expected, dispersion):
    alpha = 0.01
    lo, hi = count_interval(expected, dispersion, alpha)
    poisson_lo, poisson_hi = count_interval(expected, 1.0, alpha)
    assert lo < poisson_lo and hi > poisson_hi  # wider than Poisson
    rng = np.random.default_rng(2)
    draws = sps.nbinom(expected / (dispersion - 1), 1 / dispersion).rvs(20_000, random_state=rng)
    assert draws.mean() == pytest.approx(expected, rel=0.02)
    assert draws.var() / draws.mean() == pytest.approx(dispersion, rel=0.1)
    covered = float(np.mean((draws >= lo) & (draws <= hi)))
    assert covered >= 1 - alpha - 4 * math.sqrt(alpha * (1 - alpha) / 20_000)


def test_count_interval_of_nothing():
    assert count_interval(0.0, 1.0, 0.01) == (0.0, 0.0)


# ---------------------------------------------------------------- budget


def test_split_budget():
    assert split_budget(0.01, 4) == pytest.approx(0.0025)
    assert split_budget(0.01, 1) == 0.01
    assert split_budget(0.01, 0) == 0.01  # no monitors: nothing to split
    assert split_budget(0.05, 1000) == pytest.approx(5e-5)


@pytest.mark.parametrize("budget", [0.0, 1.0, -0.01, 1.5, float("nan"), float("inf")])
def test_split_budget_outside_the_open_unit_interval(budget):
    with pytest.raises(ValueError, match="alert budget"):
        split_budget(budget, 3)
