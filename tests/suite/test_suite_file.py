"""The suite file: readable, lossless round trip, validated on load with field-named errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import watchkeeper as wk
from tests.helpers import TEST_DATA
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.suite import file as suitefile

DATA = TEST_DATA


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reference, _ = synthetic_drift_pair(5_000, seed=7)
    path = tmp_path_factory.mktemp("suite") / "watchkeeper.yaml"
    wk.init(reference, name="synthetic").save(path)
    return path


def test_save_load_save_is_byte_identical(suite_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.yaml"
    wk.load(suite_path).save(again)
    assert again.read_bytes() == suite_path.read_bytes()


def test_editing_the_suites_document_leaves_the_suite_as_it_was(suite_path: Path) -> None:
    suite = wk.load(suite_path)
    before = suitefile.dump(suite.to_dict())
    doc = suite.to_dict()
    for monitor in doc["monitors"]:
        for value in monitor.get("calibration", {}).values():
            if isinstance(value, dict):
                value.clear()
            elif isinstance(value, list):
                value.append(-1)
    assert any(m.get("calibration") for m in doc["monitors"])
    assert suitefile.dump(suite.to_dict()) == before


def test_the_file_is_readable_and_records_how_thresholds_were_obtained(suite_path: Path) -> None:
    doc = suitefile.parse(suite_path.read_text(), "suite")
    assert doc["name"] == "synthetic"
    assert doc["alert_budget"] == 0.01
    drift = next(m for m in doc["monitors"] if m["type"] == "feature_drift")
    assert set(drift) >= {"column", "alpha", "min_effect", "calibration"}
    assert "resampled" in drift["calibration"]["method"]
    assert [p["rows"] for p in drift["calibration"]["null"]][:3] == [30, 100, 300]
    # the reference profile travels with the suite
    assert doc["reference_profile"]["rows"] == 5_000
    # alpha is the budget split over the monitors that can run (by family weights)
    idle = wk.load(suite_path).idle()
    running = [m for m in doc["monitors"] if "alpha" in m
               and (f"{m['type']}:{m['column']}" if "column" in m else m["type"]) not in idle]
    assert sum(m["alpha"] for m in running) == pytest.approx(0.01)


def test_check_needs_only_the_suite_file(suite_path: Path) -> None:
    _, current = synthetic_drift_pair(5_000, seed=8)
    result = wk.load(suite_path).check(current)
    assert {f.column for f in result.alerts()} == {"num_00", "num_01", "num_02", "cat_00"}


def test_an_edited_threshold_takes_effect(suite_path: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load(suite_path.read_text())
    for m in doc["monitors"]:
        if m.get("column") == "num_02" and m["type"] == "feature_drift":
            m["min_effect"] = 0.5
            m["critical_effect"] = 0.9
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(doc))
    _, current = synthetic_drift_pair(5_000, seed=8)
    flagged = {f.column for f in wk.load(edited).check(current).alerts()}
    assert flagged == {"num_00", "num_01", "cat_00"}


def _broken(suite_path: Path, tmp_path: Path, edit) -> Path:
    doc = suitefile.parse(suite_path.read_text(), "suite")  # fitted artefacts inline
    edit(doc)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (lambda d: d["monitors"][3].update(alpha="high"), "monitors[3].alpha", "a number"),
        (lambda d: d["monitors"][3].update(alpha=2.0), "monitors[3].alpha", "(0.0, 1.0)"),
        (lambda d: d["monitors"][1].update(type="magic"), "monitors[1].type", "unknown monitor"),
        (lambda d: d["monitors"][1].update(column="nope"), "monitors[1].column", "no column"),
        (lambda d: d["monitors"][1].update(threshold=3), "monitors[1].threshold", "unknown field"),
        (lambda d: d["columns"]["num_00"].update(kind="weird"), "columns.num_00.kind", "one of"),
        (lambda d: d["columns"]["num_00"].update(edges=[3, 2, 1]), "columns.num_00.edges",
         "increasing"),
        (lambda d: d["reference_profile"]["columns"]["cat_00"].update(bins=[1, 2]),
         "reference_profile.columns.cat_00.bins", "plan has 12"),
        (lambda d: d.pop("columns"), "columns", "is required"),
        (lambda d: d.update(watchkeeper=99), "watchkeeper", "not supported"),
        (lambda d: d.update(alert_budget=0), "alert_budget", "(0.0, 1.0)"),
    ],
)
def test_invalid_files_are_rejected_naming_the_field(
    suite_path: Path, tmp_path: Path, edit, field: str, problem: str
) -> None:
    path = _broken(suite_path, tmp_path, edit)
    with pytest.raises(wk.SuiteError) as info:
        wk.load(path)
    message = str(info.value)
    assert field in message and problem in message, message
    assert message.startswith(f"{path}: ")


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: [unclosed\n")
    with pytest.raises(wk.SuiteError, match="not valid YAML"):
        wk.load(bad)
    with pytest.raises(wk.SuiteError, match="no such file"):
        wk.load(tmp_path / "missing.yaml")
    bad.write_text("- just\n- a list\n")
    with pytest.raises(wk.SuiteError, match="expected a mapping"):
        wk.load(bad)


def test_alert_rules_are_in_the_file_and_editable(suite_path: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load(suite_path.read_text())
    assert doc["alerts"]["for_windows"]["drift"] == 2
    assert doc["alerts"]["inhibit"][0]["name"] == "column break"
    doc["alerts"]["for_windows"]["drift"] = 3
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(doc))
    assert wk.load(tmp_path / "edited.yaml").rules.for_window("feature_drift", "drift") == 3
    doc["alerts"]["clear_for"] = 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(wk.SuiteError, match="alerts: clear_for: must be at least 1"):
        wk.load(tmp_path / "bad.yaml")


def test_fitted_artefacts_follow_the_editable_part_in_one_compact_section(
        suite_path: Path) -> None:
    text = suite_path.read_text()
    editable, _, fitted = text.partition("\nfitted:\n")
    assert fitted, "no fitted: section"
    for artefact in ("edges:", "calibration:", "reference_profile:", "score_edges:"):
        assert artefact not in editable
    raw = yaml.safe_load(text)
    assert {"columns", "monitors", "budget", "alerts"} <= set(raw)
    assert list(raw)[-1] == "fitted"
    assert set(raw["fitted"]) >= {"columns", "monitors", "reference_profile"}
    inline = yaml.safe_dump(suitefile.parse(text, "suite"), sort_keys=False)  # format 1
    assert len(text.splitlines()) < len(inline.splitlines()) / 4


def test_a_suite_written_in_format_1_still_loads_and_checks() -> None:
    """tests/data/suite_v1.yaml was written by the code before the fitted: section
    (a binary classifier with a score, a label model and a sensitive column)."""
    old = wk.load(DATA / "suite_v1.yaml")
    assert yaml.safe_load((DATA / "suite_v1.yaml").read_text())["watchkeeper"] == 1
    task = old.schema.task
    assert task.label_model is not None and task.score_edges and task.classes == ["0", "1"]
    rng = np.random.default_rng(4)
    x = rng.normal(size=2_000)
    p = 1 / (1 + np.exp(-2 * x))
    current = pd.DataFrame({"id": np.arange(2_000), "x": x, "group": rng.choice(["a", "b"], 2_000),
                            "label": (rng.random(2_000) < p).astype(int),
                            "prediction": (p > 0.5).astype(int), "score": p})
    metrics = old.check(current).windows[0].metrics
    assert metrics["realised"]["roc_auc"] > 0.8 and "estimated" in metrics


def test_format_1_and_2_files_of_one_suite_are_the_same_suite(tmp_path: Path) -> None:
    old = wk.load(DATA / "suite_v1.yaml")
    old.save(tmp_path / "v2.yaml")
    assert yaml.safe_load((tmp_path / "v2.yaml").read_text())["watchkeeper"] == 2
    assert wk.load(tmp_path / "v2.yaml").to_dict() == old.to_dict()


def test_an_inline_artefact_wins_and_a_corrupt_one_is_named(suite_path: Path,
                                                            tmp_path: Path) -> None:
    raw = yaml.safe_load(suite_path.read_text())
    raw["columns"]["num_00"]["edges"] = [0.0, 1.0]
    (tmp_path / "inline.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(wk.SuiteError, match=r"columns\.num_00\.bins: has 22 bins, the column.s "
                                            r"plan has 3"):
        wk.load(tmp_path / "inline.yaml")  # the inline edges were used
    raw = yaml.safe_load(suite_path.read_text())
    raw["fitted"]["monitors"]["feature_drift:num_00"] = "not base64!"
    (tmp_path / "corrupt.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(wk.SuiteError, match=r"fitted\.monitors\.feature_drift:num_00: corrupt"):
        wk.load(tmp_path / "corrupt.yaml")
