"""The isolation-forest component of the OOD score, and the OOD score histogram (issue #6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.baseline.ood import OOD_LEVELS, OOD_SCORE_EDGES, OOD_TALLY
from watchkeeper.profiles.core import merge, profile
from watchkeeper.stats.isolation import IsolationForest, average_depth


def correlated(n: int, rng: np.random.Generator) -> pd.DataFrame:
    a = rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": a + 0.05 * rng.normal(size=n), "c": rng.normal(size=n)})


def broken(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Rows inside every column's range and near the centre, but with b = -a: a
    combination the reference never shows."""
    a = rng.uniform(1.0, 2.0, n) * rng.choice([-1.0, 1.0], n)
    return pd.DataFrame({"a": a, "b": -a, "c": rng.normal(size=n)})


def auc(negative: np.ndarray, positive: np.ndarray) -> float:
    ranks = pd.Series(np.concatenate([negative, positive])).rank().to_numpy()
    return float((ranks[len(negative):].sum() - len(positive) * (len(positive) + 1) / 2)
                 / (len(negative) * len(positive)))


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(correlated(20_000, np.random.default_rng(0)))


def test_average_depth_matches_its_definition() -> None:
    assert average_depth(1) == 0 and average_depth(2) == 1
    harmonic = sum(1 / i for i in range(1, 255))  # H(n - 1) for n = 255 + 1
    assert average_depth(256) == pytest.approx(2 * harmonic - 2 * 255 / 256, abs=0.01)


def test_the_forest_ranks_broken_combinations_above_normal_rows() -> None:
    rng = np.random.default_rng(1)
    ref = correlated(20_000, rng)
    forest = IsolationForest.fit([ref[c].to_numpy() for c in ref], seed=0)
    normal = forest.score([c.to_numpy() for _, c in correlated(2_000, rng).items()])
    odd = forest.score([c.to_numpy() for _, c in broken(2_000, rng).items()])
    assert auc(normal, odd) > 0.95
    assert np.all((normal > 0) & (normal <= 1))


def test_the_forest_round_trips_and_rejects_bad_input() -> None:
    rng = np.random.default_rng(2)
    ref = [rng.normal(size=1_000) for _ in range(3)]
    forest = IsolationForest.fit(ref, trees=5, depth=6, seed=3)
    back = IsolationForest.from_dict(forest.to_dict())
    rows = [rng.normal(size=500) for _ in range(3)]
    np.testing.assert_array_equal(back.path_length(rows), forest.path_length(rows))
    with pytest.raises(ValueError, match="at least one column"):
        IsolationForest.fit([])
    with pytest.raises(ValueError, match="depth"):
        IsolationForest.fit(ref, depth=9)
    with pytest.raises(ValueError, match="complete reference rows"):
        IsolationForest.fit([np.array([1.0, np.nan])])
    bad = forest.to_dict() | {"depths_u16_over_256": "AAAA"}
    with pytest.raises(ValueError, match="leaf depths"):
        IsolationForest.from_dict(bad)


def test_a_burst_only_the_forest_can_see_is_detected(suite: wk.Suite) -> None:
    rng = np.random.default_rng(4)
    clean = correlated(4_000, rng)
    assert [f for f in suite.check(clean).alerts() if f.monitor == "ood_share"] == []
    burst = pd.concat([clean.iloc[:3_800], broken(200, rng)], ignore_index=True)
    model = suite.schema.security
    assert model is not None and model.forest is not None
    # inside the range and within the robust distance threshold: only the forest flags them
    odd = broken(200, rng)
    distance = model.distance([odd[c].to_numpy() for c in model.numeric])
    assert (distance <= model.threshold).all()
    assert all((odd[c] >= lo).all() and (odd[c] <= hi).all()
               for c, lo, hi in zip(model.numeric, model.low, model.high, strict=True))
    found = [f for f in suite.check(burst).alerts() if f.monitor == "ood_share"]
    assert len(found) == 1 and found[0].value > 0.025  # of the 5% burst


def test_the_score_histogram_agrees_with_the_ood_count_and_merges(suite: wk.Suite) -> None:
    rng = np.random.default_rng(5)
    parts = [correlated(3_000, rng), broken(150, rng), correlated(2_000, rng)]
    profiles = [profile(pa.Table.from_pandas(p), suite.schema) for p in parts]
    whole = profile(pa.Table.from_pandas(pd.concat(parts, ignore_index=True)), suite.schema)
    merged = merge(*profiles)
    np.testing.assert_array_equal(merged.joint[OOD_LEVELS], whole.joint[OOD_LEVELS])
    counts, (rows, ood) = whole.joint[OOD_LEVELS], whole.joint[OOD_TALLY]
    assert len(counts) == len(OOD_SCORE_EDGES) + 1 and counts.sum() == rows == 5_150
    above_one = OOD_SCORE_EDGES.index(1.0) + 1
    assert counts[above_one:].sum() == ood > 100
    measured = suite.check(pd.concat(parts, ignore_index=True)).windows[0].metrics["security"]
    assert measured["ood_score_histogram"]["counts"] == counts.tolist()
    assert measured["ood_rows"] == ood and next(iter(measured["top_offenders"])) in {"a", "b"}


def test_the_forest_survives_the_suite_file(suite: wk.Suite, tmp_path) -> None:
    path = tmp_path / "suite.yaml"
    suite.save(path)
    again = wk.load(path)
    table = pa.Table.from_pandas(broken(300, np.random.default_rng(6)))
    first = suite.schema.security.score(table)
    second = again.schema.security.score(table)
    np.testing.assert_array_equal(second.score, first.score)  # borderline rows decide alike
    np.testing.assert_array_equal(second.ood, first.ood)
    assert path.stat().st_size < 200_000  # the forest is stored compactly
