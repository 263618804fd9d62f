"""QuantileSketch: quantiles within the rank error it states, merged in any order."""

from __future__ import annotations

import numpy as np
import pytest

from watchkeeper.stats.quantiles import QuantileSketch


def _within(values: np.ndarray, sketch: QuantileSketch, qs: np.ndarray) -> None:
    """Each estimate's true rank range [#< x, #<= x] comes within the bound of q·n."""
    ordered = np.sort(values)
    n, slack = values.size, sketch.rank_error() * values.size + 1
    for q, x in zip(qs, sketch.quantiles(qs), strict=True):
        below = np.searchsorted(ordered, x, side="left")
        upto = np.searchsorted(ordered, x, side="right")
        assert below - slack <= q * n <= upto + slack, (q, x, below, upto, slack)


@pytest.mark.parametrize("kind", ["normal", "sorted", "reversed", "discrete", "heavy"])
def test_quantiles_within_the_stated_rank_error(kind: str) -> None:
    rng = np.random.default_rng(1)
    values = {
        "normal": rng.normal(size=300_000),
        "sorted": np.sort(rng.normal(size=300_000)),
        "reversed": np.sort(rng.normal(size=300_000))[::-1].copy(),
        "discrete": rng.integers(0, 7, size=300_000).astype(float),
        "heavy": rng.pareto(1.1, size=300_000),
    }[kind]
    sketch = QuantileSketch(k=512)
    for chunk in np.array_split(values, 37):
        sketch.add(chunk)
    assert sketch.count == values.size
    assert 0 < sketch.rank_error() < 0.05  # log2(300000/512) + 2 levels / 512
    qs = np.linspace(0, 1, 41)
    _within(values, sketch, qs)
    assert sketch.quantiles([0, 1]).tolist() == [values.min(), values.max()]


def test_merged_sketches_keep_the_bound_and_small_ones_are_exact() -> None:
    rng = np.random.default_rng(2)
    parts = [rng.normal(loc=i, size=20_000) for i in range(8)]
    sketches = []
    for part in parts:
        s = QuantileSketch(k=256)
        s.add(part)
        sketches.append(s)
    merged = sketches[0]
    for s in reversed(sketches[1:]):
        merged.merge(s)
    values = np.concatenate(parts)
    assert merged.count == values.size
    _within(values, merged, np.linspace(0, 1, 21))

    small = QuantileSketch(k=256)
    few = rng.normal(size=200)
    small.add(few)
    qs = np.linspace(0, 1, 11)
    assert small.rank_error() == 0.0
    assert small.quantiles(qs).tolist() == np.quantile(few, qs, method="inverted_cdf").tolist()


def test_empty_sketch_and_bad_merge() -> None:
    assert np.isnan(QuantileSketch().quantiles([0.5])).all()
    with pytest.raises(ValueError, match="cannot merge"):
        QuantileSketch(k=8).merge(QuantileSketch(k=16))
