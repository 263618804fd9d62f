"""Target, prediction and score read against each other at init (issue #12, items 2–3):
one encoding for both, the positive class the score ranks highest, printed, overridable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import watchkeeper as wk
from watchkeeper.errors import SuiteError


def credit(n: int = 4_000, seed: int = 0) -> pd.DataFrame:
    """A good/bad target, a 0/1 prediction (1 = good) and score = P(good)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-2 * x))
    return pd.DataFrame({
        "x": x, "sex": rng.choice(["f", "m"], n),
        "credit": np.where(rng.random(n) < p, "good", "bad"),
        "prediction": (p > 0.5).astype(int), "score": p,
    })


def test_a_0_1_prediction_of_a_good_bad_target_is_read_as_its_labels() -> None:
    data = credit()
    suite = wk.init(data, target="credit", sensitive="sex", progress=False)
    task = suite.schema.task
    assert task.type == "binary" and task.classes == ["bad", "good"]
    assert task.prediction_labels == ["0", "1"]
    realised = suite.check(credit(seed=1)).windows[0].metrics["realised"]
    assert realised["accuracy"] > 0.7 and realised["f1"] > 0.7
    types = {m.type for m in suite.monitors}
    assert {"fairness", "estimated_performance"} <= types
    assert any("0 → bad, 1 → good" in note for note in task.notes)


def test_the_mapping_is_told_by_agreement_with_the_target_without_a_score() -> None:
    data = credit().drop(columns="score")
    data["prediction"] = 1 - data["prediction"]  # 1 = bad now
    suite = wk.init(data, target="credit", progress=False)
    task = suite.schema.task
    assert dict(zip(task.prediction_labels, task.classes, strict=True)) == {"1": "bad",
                                                                             "0": "good"}
    assert suite.check(credit(seed=2).assign(prediction=lambda d: 1 - d.prediction)
                       .drop(columns="score")).windows[0].metrics["realised"]["accuracy"] > 0.7


def test_encodings_that_nothing_can_match_are_a_one_line_error() -> None:
    data = credit().drop(columns="score")
    data["prediction"] = np.random.default_rng(5).integers(0, 2, len(data))  # chance
    with pytest.raises(SuiteError, match=r"\['0', '1'\].*\['bad', 'good'\]") as err:
        wk.init(data, target="credit", progress=False)
    assert "\n" not in str(err.value)
    data["prediction"] = np.random.default_rng(5).integers(0, 3, len(data))
    with pytest.raises(SuiteError, match="share none of the target"):
        wk.init(data, target="credit", progress=False)


def test_the_positive_class_is_the_one_the_score_ranks_highest() -> None:
    data = credit()
    data["score"] = 1 - data["score"]  # P(bad)
    data["credit"] = data["credit"].map({"good": "yes", "bad": "no"})  # "yes" looks positive
    suite = wk.init(data, target="credit", prediction="prediction", progress=False)
    task = suite.schema.task
    assert task.positive == "no"
    assert suite.check(data).windows[0].metrics["realised"]["roc_auc"] > 0.8
    assert "ranks it highest: reference ROC-AUC 0.8" in task.notes[0]


def test_a_given_positive_class_the_score_ranks_lowest_needs_a_flag() -> None:
    data = credit()
    with pytest.raises(SuiteError, match=r"ranks 'bad' lowest \(reference ROC-AUC 0.1"):
        wk.init(data, target="credit", positive_class="bad", progress=False)
    forced = wk.init(data, target="credit", positive_class="bad", allow_inverted_score=True,
                     progress=False)
    assert forced.schema.task.positive == "bad"
    given = wk.init(data, target="credit", positive_class="good", progress=False)
    assert given.schema.task.positive == "good"


def test_init_prints_the_positive_class_and_the_mapping(tmp_path: Path) -> None:
    credit().to_csv(tmp_path / "ref.csv", index=False)
    watchkeeper = Path(sys.executable).with_name("watchkeeper")
    out = subprocess.run([str(watchkeeper), "init", "ref.csv", "--target", "credit",
                          "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "positive class 'good' (the score 'score' ranks it highest" in out
    assert "0 → bad, 1 → good" in out
    bad = subprocess.run([str(watchkeeper), "init", "ref.csv", "--target", "credit",
                          "--positive-class", "bad", "--force", "--no-progress"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--allow-inverted-score" in bad.stderr


def test_the_prediction_mapping_round_trips_through_the_suite_file(tmp_path: Path) -> None:
    suite = wk.init(credit(), target="credit", progress=False)
    suite.save(tmp_path / "s.yaml")
    loaded = wk.load(tmp_path / "s.yaml").schema.task
    assert loaded.prediction_labels == ["0", "1"] and loaded.classes == ["bad", "good"]


def test_init_names_the_task_monitors_it_left_out_and_why() -> None:
    from watchkeeper.suite.generate import not_generated

    data = credit()
    data["credit"] = np.where(data["x"] > 1, "fair", data["credit"])  # three labels
    data["prediction"] = np.where(data["x"] > 1, "fair",
                                  np.where(data["prediction"] == 1, "good", "bad"))
    suite = wk.init(data, target="credit", sensitive="sex", progress=False)
    left_out = not_generated(suite.schema)
    assert left_out == {
        "estimated_performance": "no score column per class for 'bad', 'fair', 'good'; name "
                                 "them proba_<class> (or give one list column of scores in "
                                 "class order) to estimate performance without labels",
        "fairness": "the task is multiclass: fairness needs a binary classifier"}
    assert not_generated(wk.init(credit().drop(columns="score"), target="credit",
                                 progress=False).schema)["estimated_performance"] == \
        "no score column (proba=)"


def test_without_labels_the_positive_class_is_the_predicted_class_the_score_ranks_highest(
) -> None:
    data = credit().drop(columns="credit")
    data["prediction"] = np.where(data["prediction"] == 1, "no", "yes")  # score = P("no")
    task = wk.init(data, prediction="prediction", proba="score", progress=False).schema.task
    assert task.target is None and task.positive == "no"
    assert "ROC-AUC against the predicted class 1.00" in task.notes[0]
    with pytest.raises(SuiteError, match="ranks 'yes' lowest"):
        wk.init(data, prediction="prediction", proba="score", positive_class="yes",
                progress=False)


def test_diff_names_a_changed_positive_class() -> None:
    from watchkeeper.suite.diff import diff

    data = credit()
    change = diff(wk.init(data, target="credit", progress=False),
                  wk.init(data, target="credit", positive_class="bad",
                          allow_inverted_score=True, progress=False))
    assert {"monitor": "task", "setting": "positive", "old": "good", "new": "bad"} in \
        change.settings_changed
