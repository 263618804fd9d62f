"""The alert budget (issue #12, item 6): only monitors that can run share it, split by
family weights that the suite records and init prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import watchkeeper as wk
from tests.helpers import ACS
from watchkeeper.errors import SuiteError
from watchkeeper.suite.generate import DEFAULT_WEIGHTS

WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")
SERVING_MONITORS = {"error_rate", "throughput", "client_volume", "near_duplicates",
                    "extraction_coverage", "boundary_probing"}


def batch(n: int = 3_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-x))
    return pd.DataFrame({"x": x, "k": rng.choice(["a", "b", "c"], n),
                         "y": (rng.random(n) < p).astype(int),
                         "prediction": (p > 0.5).astype(int), "score": p})


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(batch(), target="y", progress=False)


def running(suite: wk.Suite) -> list:
    idle = suite.idle()
    return [m for m in suite.monitors if m.calibrated and m.id not in idle]


def test_monitors_without_their_inputs_take_no_share(suite: wk.Suite) -> None:
    idle = suite.idle()
    assert {i.split(":")[0] for i in idle} == SERVING_MONITORS
    assert sum(m.alpha for m in running(suite)) == pytest.approx(suite.budget)
    # the drift monitors get more than an even split over every calibrated monitor
    calibrated = [m for m in suite.monitors if m.calibrated]
    drift = next(m for m in suite.monitors if m.type == "feature_drift")
    assert drift.alpha > suite.budget / len(calibrated)


def test_the_budget_is_split_by_family_weights(suite: wk.Suite) -> None:
    shares = suite.family_alpha()
    present = set(shares)
    total = sum(DEFAULT_WEIGHTS[f] for f in present)
    for family, (alpha, _) in shares.items():
        assert alpha == pytest.approx(suite.budget * DEFAULT_WEIGHTS[family] / total)
    assert "service" not in present  # nothing to run: its weight goes to the others


def test_idle_monitors_still_run_when_their_inputs_arrive(suite: wk.Suite) -> None:
    clients = [f"user{i}" for i in range(10)] * 100 + ["flooder"] * 3_000
    served = batch(4_000, seed=3).assign(_client=clients)
    found = {(f.monitor, f.segment) for f in suite.check(served).alerts()}
    assert ("client_volume", "client=flooder") in found


def test_serving_gives_serving_monitors_a_share() -> None:
    served = wk.init(batch(), target="y", serving=True, progress=False)
    assert served.idle() == {}
    assert sum(m.alpha for m in running(served)) == pytest.approx(served.budget)
    assert "service" in served.family_alpha()


def test_weights_are_overridable_and_saved(tmp_path: Path) -> None:
    s = wk.init(batch(), target="y", budget_weights={"performance": 0.6}, progress=False)
    assert s.weights["performance"] == 0.6 and s.weights["drift"] == DEFAULT_WEIGHTS["drift"]
    performance = s.family_alpha()["performance"][0]
    total = sum(s.weights[f] for f in s.family_alpha())
    assert performance == pytest.approx(s.budget * 0.6 / total)
    s.save(tmp_path / "s.yaml")
    assert wk.load(tmp_path / "s.yaml").weights == s.weights
    with pytest.raises(SuiteError, match=r"budget_weights: .speed.: not a monitor family"):
        wk.init(batch(), budget_weights={"speed": 1.0}, progress=False)
    with pytest.raises(SuiteError, match=r"budget_weights: .drift.: must be a number"):
        wk.init(batch(), budget_weights={"drift": -1.0}, progress=False)


def test_diff_names_a_changed_family_weight(suite: wk.Suite) -> None:
    from watchkeeper.suite.diff import diff

    heavier = wk.init(batch(), target="y", budget_weights={"fairness": 0.3}, progress=False)
    change = diff(suite, heavier)
    assert {"monitor": "budget", "setting": "fairness", "old": 0.1, "new": 0.3} in \
        change.settings_changed
    assert "budget: fairness 0.1 → 0.3" in change.to_text()


def test_init_prints_each_familys_alpha_and_what_takes_no_share(tmp_path: Path) -> None:
    import subprocess
    import sys

    batch().to_csv(tmp_path / "ref.csv", index=False)
    watchkeeper = Path(sys.executable).with_name("watchkeeper")

    def init(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(watchkeeper), "init", "ref.csv", "--target", "y", "--force",
                               "--no-progress", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    out = init("--budget-weights", "performance=0.6").stdout
    assert "α per family: quality" in out and "performance 0.0" in out
    assert "error_rate: no _error column" in out
    assert wk.load(tmp_path / "watchkeeper.yaml").weights["performance"] == 0.6
    bad = init("--budget-weights", "performance:0.6")
    assert bad.returncode == 2 and "expected family=weight" in bad.stderr


def test_the_suite_file_is_the_same_byte_for_byte_whatever_the_hash_seed(tmp_path: Path) -> None:
    # the families that share the budget were summed in set order, which follows
    # PYTHONHASHSEED: α then differed in its last digits from one run to the next
    columns = ["AGEP", "SEX", "RAC1P", "employed", "prediction", "predicted_probability"]
    pd.read_parquet(ACS / "employment_MA_reference.pq", columns=columns).head(300).to_parquet(
        tmp_path / "reference.pq")
    runs = {seed: subprocess.Popen(
        [str(WATCHKEEPER), "init", "reference.pq", "-o", f"suite_{seed}.yaml", "--no-progress",
         "--target", "employed", "--prediction", "prediction", "--proba",
         "predicted_probability", "--sensitive", "SEX,RAC1P", "--serving"],
        cwd=tmp_path, env={**os.environ, "PYTHONHASHSEED": seed}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in ("1", "2")}
    texts = []
    for seed, run in runs.items():
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        lines = (tmp_path / f"suite_{seed}.yaml").read_text().splitlines()
        texts.append([line for line in lines if not line.startswith("created: ")])
    assert "alpha: " in "\n".join(texts[0])
    assert texts[0] == texts[1]
