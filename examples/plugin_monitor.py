"""A monitor of your own: a mean-shift test, registered, calibrated and checked like the
built-in monitors, on the ACS employment data (data/acs_employment_ma).

It defines ``MeanShift`` (the column's mean against the reference's, a two-sided z-test at
the monitor's share of the alert budget), registers it, checks it keeps the monitor
contract, builds a suite with it (``init(..., monitors=["mean_shift:AGEP"])``), saves the
suite, loads it back (the file names the monitor by its type) and checks 2016-2018 data.

    python examples/plugin_monitor.py

A package would declare the class in its ``pyproject.toml`` instead of importing it:

    [project.entry-points."watchkeeper.monitors"]
    mean_shift = "my_package.monitors:MeanShift"
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import stats

import watchkeeper as wk
from watchkeeper.monitors import Family, Finding, ReferenceData, Severity
from watchkeeper.monitors.contract import check_monitor
from watchkeeper.profiles.core import Profile

DATA = Path(__file__).resolve().parents[1] / "data" / "acs_employment_ma"


@wk.register_monitor
class MeanShift(wk.Monitor):
    """The mean of a numeric column moved: a two-sided z-test of the window's mean against
    the reference's (reference uncertainty included), alerting when the shift is also at
    least ``min_effect`` reference standard deviations. The profile keeps each column's
    mergeable moments, so the monitor reads them: nothing here looks at rows."""

    type = "mean_shift"
    family = Family.DRIFT  # takes a share of the drift family's alert budget
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.05}

    def calibrate(self, reference: ReferenceData) -> None:
        moments = reference.profile.columns[self.column_name].moments
        self.calibration = {"mean": moments.mean, "std": moments.std, "n": moments.n}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        column = window.columns.get(self.column_name)
        n_ref, std = int(self.calibration.get("n", 0)), float(self.calibration.get("std", 0))
        if column is None or column.moments.n < 2 or n_ref < 2 or not std > 0:
            return []
        mean, ref_mean = column.moments.mean, float(self.calibration["mean"])
        z = abs(mean - ref_mean) / (std * math.sqrt(1 / column.moments.n + 1 / n_ref))
        effect = abs(mean - ref_mean) / std
        warning = float(stats.norm.isf(self.alpha / 2))
        critical = float(stats.norm.isf(self.alpha / 200))
        if z <= warning or effect < self.settings["min_effect"]:
            return []
        return [self.finding(z, warning, Severity.CRITICAL if z > critical else Severity.WARNING,
                             f"mean of {self.column} moved {ref_mean:.2f} → {mean:.2f} "
                             f"({effect:.2f} standard deviations)",
                             reference_mean=ref_mean, mean=mean, effect=effect)]


def main() -> int:
    reference = pq.read_table(DATA / "employment_MA_reference.pq").slice(0, 20_000)
    analysis = pq.read_table(DATA / "employment_MA_analysis.pq")

    # 1. the contract the built-in monitors keep (merge, round trip, bad values, budget...)
    passed = check_monitor(MeanShift("AGEP"), reference.slice(0, 10_000),
                           reference.slice(10_000, 5_000)).passed
    print(f"contract: {len(passed)} properties kept")

    # 2. a suite with it: calibrated and given its share of the alert budget
    suite = wk.init(reference, target="employed", monitors=["mean_shift:AGEP"])
    (mine,) = [m for m in suite.monitors if m.type == "mean_shift"]
    print(f"alpha: {mine.alpha:.2e} (the drift family's share, split over its monitors)")

    # 3. the suite file names it by type; loading finds the registered class
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "acs.yaml"
        suite.save(path)
        loaded = wk.load(path)
    (entry,) = [m.to_dict() for m in loaded.monitors if m.type == "mean_shift"]
    print(f"suite file entry: type={entry['type']} column={entry['column']}")

    # 4. checked like any monitor: findings, alerts and the report
    result = loaded.check(analysis, window_by="year")
    for w in result.windows:
        shifts = [f for f in w.findings if f.monitor == "mean_shift"]
        print(f"{w.label}: " + ("; ".join(f"{f.severity.value}: {f.message}" for f in shifts)
                                or "no mean shift"))
    # a batch that leaves out the under-30s (a sampling change upstream) shifts the mean
    older = analysis.filter(pc.greater_equal(analysis.column("AGEP"), 30)).slice(0, 5_000)
    shifted = [f for f in loaded.check(older).findings if f.monitor == "mean_shift"]
    print("over-30s only: " + "; ".join(f"{f.severity.value}: {f.message}" for f in shifted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
