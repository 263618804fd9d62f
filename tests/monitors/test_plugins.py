"""Monitors of your own: registered in Python or by an installed package's entry point,
named in the suite file, calibrated, budgeted, alerted and reported like built-in ones."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.monitors import Family, Finding, Monitor, ReferenceData, base, severity_for
from watchkeeper.monitors.contract import PROPERTIES, check_monitor
from watchkeeper.profiles.core import Profile
from watchkeeper.report import render


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the registry, dropped after the test (plugins defined here leave)."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def top_bin_class() -> type[Monitor]:
    class TopBin(Monitor):
        """Share of a column's values in the reference's top bin (its highest values)."""

        type = "top_bin"
        family = Family.DRIFT
        params: ClassVar[dict[str, Any]] = {"min_effect": 0.02, "critical_effect": 0.2}

        def calibrate(self, reference: ReferenceData) -> None:
            bins = reference.profile.columns[self.column_name].bins
            assert bins is not None
            self.calibration = {"top": int(bins[-2]), "n": int(bins.sum())}

        def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
            column = window.columns.get(self.column_name)
            if column is None or column.bins is None or not column.bins.sum() or \
                    "n" not in self.calibration:
                return []
            n = int(column.bins.sum())
            base_, warning, critical = self.rate_lines(self.calibration["top"],
                                                       self.calibration["n"], n)
            share = column.bins[-2] / n
            severity = severity_for(share, warning, critical)
            if severity is None:
                return []
            return [self.finding(share, warning, severity,
                                 f"{share:.1%} of {self.column} in the top bin, "
                                 f"{base_:.1%} in the reference")]

    return TopBin


def data(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.normal(shift, 1.0, n), "y": rng.normal(0.0, 1.0, n)})


@pytest.mark.usefixtures("registry")
def test_a_plugin_gets_calibration_budget_alerts_and_report() -> None:
    top_bin = top_bin_class()
    suite = wk.init(data(5_000, seed=1), monitors=[top_bin("x"), "top_bin:y"], budget=0.02)
    mine = [m for m in suite.monitors if m.type == "top_bin"]
    assert [m.id for m in mine] == ["top_bin:x", "top_bin:y"]
    assert all(m.calibration["n"] == 5_000 for m in mine)
    drift = [m for m in suite.monitors if m.family == "drift"]
    # the drift family's share of the budget, split evenly over its monitors, plugins too
    families = suite.family_alpha()
    alpha, count = families["drift"]
    assert count == len(drift) == 4
    assert alpha == pytest.approx(0.02 * 0.3 / sum(suite.weights[f] for f in families))
    assert [m.alpha for m in mine] == pytest.approx([alpha / 4] * 2)

    result = suite.check(data(2_000, seed=2, shift=1.0))
    (found,) = [f for f in result.findings if f.monitor == "top_bin"]
    assert (found.column, found.family, found.severity) == ("x", "drift", wk.Severity.WARNING)
    doc = result.to_dict()
    (entry,) = [f for w in doc["windows"] for f in w["findings"] if f["monitor"] == "top_bin"]
    assert "alert" in entry  # the alert lifecycle took it: an incident, or what inhibited it
    assert "top_bin" in render(doc) and "in the top bin" in render(doc)
    assert not [f for f in suite.check(data(2_000, seed=3)).findings if f.monitor == "top_bin"]


@pytest.mark.usefixtures("registry")
def test_a_plugin_keeps_the_contract_and_round_trips_the_suite_file(tmp_path: Path) -> None:
    top_bin = top_bin_class()
    report = check_monitor(top_bin("x"), data(5_000, seed=4), data(2_000, seed=5, shift=0.5),
                           windows=[data(500, seed=s) for s in range(10, 30)])
    assert report.passed == list(PROPERTIES)
    suite = wk.init(data(5_000, seed=4), monitors=["top_bin:x"])
    path = tmp_path / "suite.yaml"
    suite.save(path)
    assert "- type: top_bin\n  column: x\n" in path.read_text()
    loaded = wk.load(path)
    batch = data(2_000, seed=6, shift=1.0)
    assert [f.to_dict() for f in loaded.check(batch).findings] == \
        [f.to_dict() for f in suite.check(batch).findings]


@pytest.mark.usefixtures("registry")
def test_an_unknown_type_in_a_suite_file_names_what_is_installed(tmp_path: Path) -> None:
    top_bin_class()
    path = tmp_path / "suite.yaml"
    wk.init(data(500, seed=7)).save(path)
    text = path.read_text()
    path.write_text(text.replace("monitors:\n", "monitors:\n- type: nonesuch\n", 1))
    with pytest.raises(wk.SuiteError) as err:
        wk.load(path)
    message = str(err.value)
    assert "monitors[0].type: unknown monitor type 'nonesuch' (installed: built-in: " in message
    assert "feature_drift" in message and "plugins: top_bin)" in message
    assert "entry point group watchkeeper.monitors" in message
    with pytest.raises(wk.SuiteError, match=r"monitors\[1\]: unknown monitor type 'nope'"):
        wk.init(data(500, seed=7), monitors=["top_bin:x", "nope"])


def _class(**body: Any) -> type:
    def evaluate(self: Monitor, window: Profile, reference: Profile) -> list[Finding]:
        return []
    return type("Mine", (Monitor,), {"type": "mine", "family": "quality",
                                     "evaluate": evaluate, **body})


@pytest.mark.usefixtures("registry")
@pytest.mark.parametrize(("body", "problem"), [
    ({"type": "Mine Monitor"}, r"Mine\.type: set type to the name .*got 'Mine Monitor'"),
    ({"family": "finance"}, r"Mine\.family: must be one of quality, drift, .*got 'finance'"),
    ({"params": {"limit": "high"}}, r"Mine\.params\.limit: must be a number"),
    ({"params": {"on": True}}, r"Mine\.params\.on: must be a number"),
    ({"evaluate": Monitor.evaluate}, r"Mine\.evaluate: a monitor implements evaluate"),
    ({"type": "feature_drift"}, r"Mine\.type: 'feature_drift' is a built-in monitor type"),
])
def test_a_malformed_plugin_is_refused_when_defined(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(wk.SuiteError, match=problem):
        _class(**body)
    assert base.monitor_class("feature_drift").__module__ == "watchkeeper.monitors.drift"


@pytest.mark.usefixtures("registry")
def test_register_monitor_is_the_public_way_in() -> None:
    cls = _class()
    assert wk.register_monitor(cls) is cls and base.monitor_class("mine") is cls
    with pytest.raises(wk.SuiteError, match=r"expected a subclass of watchkeeper\.Monitor"):
        wk.register_monitor(dict)  # type: ignore[arg-type]


PLUGIN = '''
from typing import Any, ClassVar

import watchkeeper as wk
from watchkeeper.monitors import Severity


class RowCeiling(wk.Monitor):
    """More rows in a window than a fixed ceiling (not calibrated: a business limit)."""

    type = "row_ceiling"
    family = "quality"
    calibrated = False
    params: ClassVar[dict[str, Any]] = {"max_rows": 100}

    def evaluate(self, window, reference):
        ceiling = self.settings["max_rows"]
        if window.rows <= ceiling:
            return []
        return [self.finding(window.rows, ceiling, Severity.WARNING,
                             f"{window.rows} rows, the ceiling is {ceiling}")]
'''


def test_an_installed_package_declares_monitors_by_entry_point(tmp_path: Path) -> None:
    """A real distribution on the path (a dist-info with entry_points.txt), loaded by a
    fresh interpreter when the suite file names its type."""
    (tmp_path / "wk_rowplugin.py").write_text(PLUGIN)
    info = tmp_path / "wk_rowplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wk-rowplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[watchkeeper.monitors]\nrow_ceiling = wk_rowplugin:RowCeiling\n"
        "broken = wk_rowplugin:NoSuchClass\n")
    suite = tmp_path / "suite.yaml"
    wk.init(data(500, seed=8)).save(suite)
    text = suite.read_text()
    suite.write_text(text.replace("monitors:\n", "monitors:\n- type: row_ceiling\n"
                                                 "  max_rows: 1000\n", 1))
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("monitors:\n", "monitors:\n- type: broken\n", 1))
    code = textwrap.dedent(f"""
        import numpy as np, pyarrow as pa, watchkeeper as wk
        suite = wk.load({str(suite)!r})
        rng = np.random.default_rng(0)
        batch = pa.table({{"x": rng.normal(size=1500), "y": rng.normal(size=1500)}})
        print([f.message for f in suite.check(batch).findings if f.monitor == "row_ceiling"])
        try:
            wk.load({str(broken)!r})
        except wk.SuiteError as exc:
            print(exc.problem)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert done.returncode == 0, done.stderr
    found, failed = done.stdout.strip().splitlines()
    assert found == "['1500 rows, the ceiling is 1000']"
    assert failed.startswith("monitor type 'broken': its plugin failed to load "
                             "(wk_rowplugin:NoSuchClass: ")
