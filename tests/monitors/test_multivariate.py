"""Multivariate drift: a broken correlation that no single column shows is found by
``multivariate_drift``, which names the pair that moved; clean windows stay quiet; the
model round-trips through the suite file and its tallies merge exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

import watchkeeper as wk
from watchkeeper.baseline.multivariate import MV_ERRORS, MV_PAIRS, JointModel, fit
from watchkeeper.cli import main
from watchkeeper.errors import SuiteError
from watchkeeper.monitors.multivariate import JOINT
from watchkeeper.profiles.core import merge


def rows(n: int, seed: int, rho: float = 0.8) -> pa.Table:
    """Five features: ``a`` and ``b`` correlated (``rho``), ``c`` follows ``a``, ``d`` and
    ``e`` independent. Every marginal is the same whatever ``rho``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rho * a + np.sqrt(1 - rho ** 2) * rng.normal(size=n)
    return pa.table({
        "a": a, "b": b,
        "c": np.where(a + rng.normal(size=n) > 0, "high", "low"),
        "d": rng.gamma(2.0, size=n),
        "e": rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]),
    })


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(rows(30_000, 0), multivariate=True)


def test_a_broken_correlation_is_found_and_the_pair_named(suite: wk.Suite) -> None:
    result = suite.check(rows(5_000, 1, rho=0.0))
    drift = [f for f in result.findings if f.family == "drift"]
    assert [f.monitor for f in drift] == ["multivariate_drift"]  # no column moved alone
    (f,) = drift
    assert f.column is None and f.metric == "reconstruction_error"
    assert f.value > f.threshold
    assert f.evidence["top_pair"] == "a × b"
    assert "a × b" in f.message
    assert result.windows[0].metrics["drift"][JOINT]["monitor"] == "multivariate_drift"


def test_clean_windows_stay_quiet(suite: wk.Suite) -> None:
    result = suite.check(rows(100_000, 2), window_rows=5_000)
    assert len(result.windows) == 20
    assert not [f for f in result.findings if f.monitor == "multivariate_drift"]


def test_tallies_merge_like_the_union(suite: wk.Suite) -> None:
    data = rows(4_000, 3, rho=0.3)
    whole = suite.profile(data)
    parts = merge(suite.profile(data.slice(0, 1_111)), suite.profile(data.slice(1_111)))
    for key in (MV_ERRORS, MV_PAIRS):
        assert parts.joint[key].tolist() == whole.joint[key].tolist()
    assert whole.joint[MV_ERRORS].sum() == 4_000


def test_bad_and_missing_values_are_imputed_not_raised(suite: wk.Suite) -> None:
    bad = [{"a": "not a number", "b": float("inf"), "c": 7, "d": None, "e": [1, 2]}] * 40
    window = suite.profile(bad)
    assert window.joint[MV_ERRORS].sum() == 40
    only_a = suite.profile(rows(500, 4).select(["a"]))
    assert only_a.joint[MV_ERRORS].sum() == 500
    suite.evaluate(window)  # judged without error


def test_the_model_round_trips_through_the_suite_file(suite: wk.Suite, tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    suite.save(path)
    loaded = wk.load(path)
    assert loaded.schema.multivariate == suite.schema.multivariate
    data = rows(5_000, 5, rho=0.2)
    assert [f.to_dict() for f in loaded.check(data).findings] == \
        [f.to_dict() for f in suite.check(data).findings]
    document = yaml.safe_load(path.read_text())  # an inline entry wins over the fitted one
    broken = suite.schema.multivariate.to_dict()
    broken["mean"] = broken["mean"][:-1]
    document["multivariate"] = broken
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SuiteError, match=r"multivariate.*malformed"):
        wk.load(path)


def test_too_few_rows_or_features_fit_no_model() -> None:
    assert fit(rows(100, 0), ["a", "b", "d"], [("e", ["x", "y", "z"])]) is None
    assert fit(rows(5_000, 0), ["a"], []) is None
    model = fit(rows(5_000, 0), ["a", "b", "d"], [("c", ["high", "low"])])
    assert isinstance(model, JointModel)
    assert JointModel.from_dict(model.to_dict()) == model
    assert wk.init(rows(5_000, 0).select(["a"]), multivariate=True).schema.multivariate is None


def test_it_is_added_only_when_asked_for() -> None:
    """Scoring every row costs several times a profile without it: not a default."""
    suite = wk.init(rows(5_000, 0))
    assert suite.schema.multivariate is None
    assert "multivariate_drift" not in {m.type for m in suite.monitors}


# -- declared column groups -------------------------------------------------------------------
@pytest.fixture(scope="module")
def grouped() -> wk.Suite:
    return wk.init(rows(30_000, 0), multivariate_groups={"ab": ["a", "b"], "cde": "c,d,e"})


def test_each_group_is_its_own_monitor_and_its_findings_name_it(grouped: wk.Suite) -> None:
    groups = [m for m in grouped.monitors if m.type == "multivariate_drift"]
    assert [m.id for m in groups] == ["multivariate_drift:ab", "multivariate_drift:cde"]
    drift = [m for m in grouped.monitors if m.family == "drift"]  # the family's budget,
    assert len(drift) == 7 and len({m.alpha for m in drift}) == 1  # one share each
    result = grouped.check(rows(5_000, 1, rho=0.0))  # a and b no longer move together
    (f,) = [f for f in result.findings if f.family == "drift"]
    assert (f.monitor, f.column, f.metric) == ("multivariate_drift", None,
                                               "reconstruction_error:ab")
    assert f.evidence["group"] == "ab" and f.evidence["top_pair"] == "a × b"
    assert f.message.startswith("group ab: joint distribution changed")
    measured = result.windows[0].metrics["drift"]
    assert measured["(joint:ab)"]["group"] == "ab" and "(joint:cde)" in measured


def test_clean_windows_keep_groups_quiet(grouped: wk.Suite) -> None:
    result = grouped.check(rows(100_000, 2), window_rows=5_000)
    assert not [f for f in result.findings if f.monitor == "multivariate_drift"]


def test_groups_round_trip_and_merge(grouped: wk.Suite, tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    grouped.save(path)
    loaded = wk.load(path)
    assert loaded.schema.multivariate_groups == grouped.schema.multivariate_groups
    assert [m.to_dict() for m in loaded.monitors] == [m.to_dict() for m in grouped.monitors]
    data = rows(5_000, 5, rho=0.2)
    assert [f.to_dict() for f in loaded.check(data).findings] == \
        [f.to_dict() for f in grouped.check(data).findings]
    whole = grouped.profile(data)
    parts = merge(grouped.profile(data.slice(0, 777)), grouped.profile(data.slice(777)))
    for key in ("mv_error:ab", "mv_pairs:ab", "mv_error:cde", "mv_pairs:cde"):
        assert parts.joint[key].tolist() == whole.joint[key].tolist()


@pytest.mark.parametrize(("groups", "problem"), [
    ({"ab": ["a", "zz"]}, "no column 'zz'"),
    ({"ab": ["a"]}, "two columns or more"),
    ({"a b": ["a", "b"]}, "group name"),
])
def test_a_bad_group_is_an_error_that_names_it(groups, problem: str) -> None:
    with pytest.raises(SuiteError, match=problem):
        wk.init(rows(5_000, 0), multivariate_groups=groups)


def test_the_cli_declares_groups(tmp_path: Path) -> None:
    reference = tmp_path / "ref.parquet"
    pq.write_table(rows(5_000, 0), reference)
    out = tmp_path / "suite.yaml"
    run = CliRunner().invoke(main, ["init", str(reference), "-o", str(out),
                                    "--multivariate-group", "ab=a,b", "--no-progress"])
    assert run.exit_code == 0, run.output
    assert list(wk.load(out).schema.multivariate_groups) == ["ab"]


# -- a weak tie among strong ones ---------------------------------------------------------
def weakly_tied(n: int, seed: int, broken: bool = False) -> pa.Table:
    """Five columns tied strongly to one factor, and ``w`` tied weakly (ρ = 0.25) to ``s0``
    only; ``broken`` permutes ``w`` (its marginal unchanged, its tie gone)."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=n)
    cols = {f"s{i}": 0.9 * factor + np.sqrt(0.19) * rng.normal(size=n) for i in range(5)}
    w = 0.25 * cols["s0"] + np.sqrt(1 - 0.25 ** 2) * rng.normal(size=n)
    cols["w"] = rng.permutation(w) if broken else w
    return pa.table(cols)


def test_a_weak_tie_that_breaks_is_found_by_its_pair() -> None:
    """The per-row score barely moves when a weakly tied column breaks away (its JS distance
    stays under the threshold here); the pair test sees the pair's dependence change."""
    suite = wk.init(weakly_tied(30_000, 0), multivariate=True)
    (monitor,) = [m for m in suite.monitors if m.type == "multivariate_drift"]
    assert len(monitor.calibration["pairs"]["df"]) == 15  # every pair of six columns
    for seed in (1, 2, 3):
        result = suite.check(weakly_tied(5_000, seed, broken=True))
        (f,) = [f for f in result.findings if f.family == "drift"]
        assert f.metric == "pair_dependence" and f.severity.rank >= 1
        assert f.evidence["top_pair"] == "s0 × w" and f.evidence["pair_p"] < 1e-20
        assert "dependence of s0 × w" in f.message
        measured = result.windows[0].metrics["drift"][JOINT]
        assert measured["js"] < measured["threshold"]  # the score alone would miss it
    clean = suite.check(weakly_tied(100_000, 9), window_rows=5_000)
    assert not [f for f in clean.findings if f.monitor == "multivariate_drift"]
    assert min(w.metrics["drift"][JOINT]["pair_p"] for w in clean.windows) > monitor.alpha
