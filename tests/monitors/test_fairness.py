"""Fairness monitoring on the ACS employment data (issue #3, must-show 2)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import watchkeeper as wk
from tests.helpers import policy_suite, two_groups

GROUP = "SEX=1 & RAC1P=2"


@pytest.fixture(scope="module")
def suite(acs_suite: wk.Suite) -> wk.Suite:
    return acs_suite  # fitted once per session (conftest.py)


@pytest.fixture(scope="module")
def windows(acs_analysis: pa.Table, acs_labels: pa.Table) -> list[pa.Table]:
    """ACS 2016 (the year after the reference) in windows of about 10k rows, with labels."""
    analysis, labels = acs_analysis, acs_labels
    year = analysis.filter(pc.equal(analysis.column("year"), 2016))
    year = year.append_column("employed", labels.slice(0, year.num_rows).column("employed"))
    assert np.array_equal(year.column("id").to_numpy(),
                          labels.slice(0, year.num_rows).column("id").to_numpy())
    return [year.slice(i, 10_000) for i in range(0, year.num_rows, 10_000)]


def flip_group(table: pa.Table) -> pa.Table:
    """Flip the predictions of one SEX × RAC1P group (a fairness regression)."""
    mask = pc.and_(pc.equal(table.column("SEX"), "1"), pc.equal(table.column("RAC1P"), "2"))
    flipped = pc.if_else(mask, pc.subtract(1, table.column("prediction")),
                         table.column("prediction"))
    return table.set_column(table.column_names.index("prediction"), "prediction", flipped)


def fairness_alerts(suite: wk.Suite, table: pa.Table) -> list[wk.Finding]:
    return [f for f in suite.check(table).alerts() if f.family == "fairness"]


def test_no_fairness_alert_in_any_clean_window(suite: wk.Suite, windows) -> None:
    assert len(windows) == 7
    for table in windows:
        assert fairness_alerts(suite, table) == []


def test_a_flipped_group_fires_for_that_group_only(suite: wk.Suite, windows) -> None:
    for table in windows:
        found = fairness_alerts(suite, flip_group(table))
        assert found, "the injected regression must be detected in every window"
        assert {f.segment for f in found} == {GROUP}
        # flipping predictions turns the group's TPR into 1 − TPR, its FPR into 1 − FPR
        # (its selection rate moves towards parity here, which is not a regression)
        assert {"tpr_gap", "fpr_gap"} <= {f.metric for f in found}
        # the overlapping groups the change also shows in are named as evidence
        tpr = next(f for f in found if f.metric == "tpr_gap")
        assert "RAC1P=2" in tpr.evidence["also_affected"]


def test_group_table_and_suite_level_measures(suite: wk.Suite, windows) -> None:
    metrics = suite.check(windows[0]).windows[0].metrics["fairness"]
    sex = metrics["SEX"]
    assert set(sex["groups"]) == {"SEX=1", "SEX=2"}
    assert {"n", "selection_rate", "tpr", "fpr", "precision", "accuracy"} <= set(
        sex["groups"]["SEX=1"])
    diff, lo, hi = sex["dp_difference"]
    assert lo < diff < hi and 0 < sex["di_ratio"] <= 1 and sex["eo_difference"] >= 0
    small = [g for g, v in metrics["SEX*RAC1P"]["groups"].items()
             if v.get("status") == "insufficient data"]
    assert small and all(v["n"] < 100 for g, v in metrics["SEX*RAC1P"]["groups"].items()
                         if g in small)


def test_measures_name_their_extreme_groups_and_carry_the_reference(suite: wk.Suite,
                                                                   windows) -> None:
    metrics = suite.check(windows[0]).windows[0].metrics["fairness"]
    for name, summary in metrics.items():
        groups = {g: v for g, v in summary["groups"].items() if "status" not in v}
        rates = {g: v["selection_rate"] for g, v in groups.items()}
        high, low = summary["dp_groups"]
        assert rates[high] == max(rates.values()) and rates[low] == min(rates.values())
        assert summary["dp_difference"][0] == pytest.approx(rates[high] - rates[low])
        assert summary["di_ratio"] == pytest.approx(rates[low] / rates[high])
        metric = summary["eo_metric"]
        top, bottom = summary["eo_groups"]
        values = {g: v[metric] for g, v in groups.items() if metric in v}
        assert values[top] == max(values.values()) and values[bottom] == min(values.values())
        assert summary["eo_difference"] == pytest.approx(values[top] - values[bottom])
        assert set(summary["reference"]) == {"dp_difference", "di_ratio", "eo_difference"}, name
    # the reference's own disparate-impact ratio, as calibrated for the policy
    known = suite.monitors[[m.type for m in suite.monitors].index("fairness")]
    for attribute, ratio in known.calibration["reference_di_ratio"].items():
        assert metrics[attribute]["reference"]["di_ratio"] == pytest.approx(ratio, abs=1e-6)
    # the under-18s are (almost) never employed: age's DI ratio is far below 0.8 already in
    # the reference, between the youngest band and a middle one
    age = metrics["AGEP"]
    assert age["reference"]["di_ratio"] < 0.1 and age["dp_groups"][1].startswith("AGEP=<")
    assert metrics["SEX"]["reference"]["di_ratio"] > 0.8


def test_extremes_follow_a_group_whose_predictions_change(suite: wk.Suite, windows) -> None:
    table = windows[0]
    mask = pc.equal(table.column("SEX"), "2")
    nobody = table.set_column(table.column_names.index("prediction"), "prediction",
                              pc.if_else(mask, 0, table.column("prediction")))
    sex = suite.check(nobody).windows[0].metrics["fairness"]["SEX"]
    assert sex["dp_groups"] == ["SEX=1", "SEX=2"] and sex["di_ratio"] == 0.0
    assert sex["eo_groups"] == ["SEX=1", "SEX=2"]  # TPR of SEX=2 is now 0
    assert sex["reference"]["di_ratio"] > 0.8  # a change, not the data as it was


def test_age_is_banded_and_the_bands_are_in_the_suite(suite: wk.Suite) -> None:
    age = suite.schema.task.attribute("AGEP")
    assert age.bands == sorted(age.bands) and len(age.bands) >= 3
    assert all(float(b).is_integer() for b in age.bands)
    assert "bands" in suite.to_dict()["task"]["sensitive"]["AGEP"]


def test_a_new_four_fifths_break_is_alerted_a_known_one_is_not() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    group = rng.choice(["a", "b"], n)
    y = (rng.random(n) < 0.5).astype(int)
    pred = (rng.random(n) < 0.5).astype(int)
    reference = pa.table({"id": np.arange(n), "gender": group, "target": y, "prediction": pred})
    suite = wk.init(reference)
    assert suite.schema.task.attributes[0].column == "gender"
    biased = np.where(group == "a", rng.random(n) < 0.3, rng.random(n) < 0.5).astype(int)
    window = reference.set_column(3, "prediction", pa.array(biased))
    found = [f for f in suite.check(window).alerts() if f.family == "fairness"]
    assert "di_ratio" in {f.metric for f in found}
    # a reference that already breaks the rule does not alert on every window
    known = wk.init(window)
    assert "di_ratio" not in {f.metric for f in known.check(window).alerts()}


def test_every_grouping_carries_the_policy_line(suite: wk.Suite, windows) -> None:
    metrics = suite.check(windows[0]).windows[0].metrics["fairness"]
    assert {m["min_di_ratio"] for m in metrics.values()} == {0.8}
    custom = policy_suite(two_groups(0.5), 0.9)
    measured = custom.check(two_groups(0.425)).windows[0].metrics["fairness"]["gender"]
    assert measured["min_di_ratio"] == 0.9 and measured["di_ratio"] == pytest.approx(0.85)
