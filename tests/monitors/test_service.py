"""Service monitors: latency quantiles within 1%, SLO, error rate, throughput."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import watchkeeper as wk
from watchkeeper.profiles.core import merge, profile
from watchkeeper.profiles.service import latency_buckets, latency_quantile


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.01, max_value=1e6, allow_nan=False), min_size=1,
             max_size=300),
    st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_latency_quantiles_are_within_one_percent(values: list[float], q: float) -> None:
    v = np.asarray(values)
    estimate = latency_quantile(latency_buckets(v), q)
    exact = np.quantile(v, q, method="inverted_cdf")
    assert abs(estimate - exact) <= 0.01 * exact + 1e-12


def rows(n: int, latency: float, error_share: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "x": rng.normal(size=n),
        "_latency_ms": rng.lognormal(np.log(latency), 0.3, n),
        "_error": rng.random(n) < error_share,
    })


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(rows(20_000, 20.0, 0.0, 0))


def test_slo_is_generated_from_reference_latency(suite: wk.Suite) -> None:
    latency = next(m for m in suite.monitors if m.type == "latency")
    p99 = np.quantile(rows(20_000, 20.0, 0.0, 0).column("_latency_ms").to_numpy(), 0.99)
    assert latency.settings["slo_ms"] == pytest.approx(1.5 * p99, rel=0.02)
    assert "_latency_ms" not in {f.column for f in suite.check(rows(500, 20, 0, 1)).findings}


def test_latency_regression_and_errors_alert(suite: wk.Suite) -> None:
    assert suite.check(rows(5_000, 20.0, 0.0, 2)).alerts() == []
    slow = suite.check(rows(5_000, 60.0, 0.0, 3))
    latency = [f for f in slow.alerts() if f.monitor == "latency"]
    assert len(latency) == 1 and latency[0].metric == "latency_p99"
    assert slow.windows[0].metrics["latency_ms"]["p50"] == pytest.approx(60.0, rel=0.05)
    failing = suite.check(rows(5_000, 20.0, 0.05, 4))
    assert [f.monitor for f in failing.alerts()] == ["error_rate"]


def test_merged_latency_histograms_give_the_union_quantiles(suite: wk.Suite) -> None:
    a, b = rows(3_000, 10.0, 0, 5), rows(2_000, 50.0, 0, 6)
    merged = merge(suite.profile(a), suite.profile(b)).joint["latency"]
    union = suite.profile(pa.concat_tables([a, b])).joint["latency"]
    assert np.array_equal(merged, union)


def test_throughput_drop_is_found_in_a_sequence_of_windows(suite: wk.Suite) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    windows = []
    for i, n in enumerate([600, 620, 590, 610, 605, 100, 600]):
        p = suite.profile(rows(n, 20.0, 0.0, 10 + i))
        p.start, p.end = t0 + timedelta(minutes=i), t0 + timedelta(minutes=i + 1)
        windows.append(p)
    throughput = next(m for m in suite.monitors if m.type == "throughput")
    found = throughput.evaluate_sequence(windows)
    assert [bool(f) for f in found] == [False] * 5 + [True, False]
    assert "drop" in found[5][0].message


def test_service_only_rows_are_not_rows_with_every_feature_missing() -> None:
    """The ASGI middleware logs latency and errors with no features. Mixed into a model's
    stream, those rows feed latency and error rate, not missing-rate or schema alerts."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"a": rng.normal(size=2_000), "k": rng.choice(["x", "y"], 2_000)})
    suite = wk.init(reference)
    served = pd.DataFrame({"a": rng.normal(size=500), "k": rng.choice(["x", "y"], 500),
                           "_latency_ms": rng.uniform(1, 5, 500), "_error": False})
    timed = pd.DataFrame({"_latency_ms": rng.uniform(1, 5, 300), "_error": [True] * 30 + [
        False] * 270})
    batch = pa.Table.from_pandas(pd.concat([served, timed], ignore_index=True))
    p = profile(batch, suite.schema)
    assert p.rows == 500 and p.columns["a"].count == 500 and p.columns["a"].missing == 0
    assert p.joint["latency"].sum() == 800 and p.joint["service"].tolist() == [800, 30]
    assert [f.monitor for f in suite.check(batch).findings if f.family == "quality"] == []
    # a row that has a feature is a model row, however sparse
    sparse = pa.table({"a": [None, 1.0], "k": [None, None], "_latency_ms": [1.0, 2.0]})
    assert profile(sparse, suite.schema).rows == 1
    assert profile(sparse.drop(["_latency_ms"]), suite.schema).rows == 2
    # renamed columns are not service rows: the schema monitor must still see them
    renamed = pa.table({"A": [1.0, 2.0], "K": ["x", None], "_ts": [1.0, 2.0]})
    assert profile(renamed, suite.schema).rows == 2
    assert {f.monitor for f in suite.check(renamed).findings} >= {"missing_column", "new_column"}
