"""Performance: realised metrics once labels arrive, and whether labels keep arriving.

Metrics come from the window's joint tallies (confusion counts, score histograms per
label, error sums), so they are exact after any merge of windows or partitions, and a
window's metrics update as its late labels arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from watchkeeper.baseline.task import Task, TaskType
from watchkeeper.monitors.base import (
    Family,
    Finding,
    Monitor,
    ReferenceData,
    Severity,
    absent,
    severity_for,
)
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.task import (
    MULTICLASS_SCORES,
    PERFORMANCE,
    REGRESSION,
    REGRESSION_FIELDS,
    SCORES,
    row_codes,
    tally,
)
from watchkeeper.stats.calibration import difference_threshold
from watchkeeper.stats.metrics import (
    binary_metrics,
    binned_auc,
    multiclass_metrics,
    regression_metrics,
)
from watchkeeper.stats.multiclass import MICRO, macro_auc, multiclass_report

#: Metrics where lower is better; the rest are better when higher.
LOWER_IS_BETTER = {"mae", "rmse", "mape", "log_loss", "brier"}
#: Row counts among a window's realised measures (not metrics).
COUNTS = ("rows", "labeled", "scored")
#: Reported but not judged: micro averages repeat accuracy when every row has a prediction
#: (judging them too would split the budget over one metric thrice).
REPORTED_ONLY = (*COUNTS, *MICRO)
#: Rows drawn per resampled window when measuring a metric's sampling noise.
RESAMPLE_ROWS = 2_000


def realised_metrics(joint: dict[str, np.ndarray], task: Task) -> dict[str, float]:
    """Metrics of the labeled rows of a window's tallies, plus ``labeled`` and ``rows``.
    Without a prediction column (a target alone) only the score's metrics, if any: there
    is no model output to compare the labels with."""
    if task.classification and PERFORMANCE in joint:
        t = joint[PERFORMANCE]
        k = len(task.classes)
        labeled = t[:, :, :k]  # known labels only (not "other", not unlabeled)
        confusion = labeled.sum(axis=0)[:k, :].T  # true × predicted
        out: dict[str, float] = {"rows": float(t.sum()), "labeled": float(labeled.sum())}
        if task.type == TaskType.BINARY:
            if task.prediction is not None:
                # classes are [negative, positive]; a missing prediction counts as negative
                tp, fn = confusion[1, 1], labeled[:, [0, 2], 1].sum()
                fp, tn = confusion[0, 1], labeled[:, [0, 2], 0].sum()
                m = binary_metrics(float(tp), float(fp), float(fn), float(tn))
                out.update({k: m[k] for k in ("accuracy", "precision", "recall", "f1")})
            if task.score_edges:
                out["roc_auc"] = float(binned_auc(labeled[:, :, 1].sum(1), labeled[:, :, 0].sum(1)))
            scores = joint.get(SCORES)
            if scores is not None and scores[0] > 0:
                out["log_loss"], out["brier"] = scores[1] / scores[0], scores[2] / scores[0]
        elif task.prediction is not None:
            full = labeled.sum(axis=0)[:, :].T  # true × predicted incl. "other" prediction
            m = multiclass_metrics(np.pad(full, ((0, 1), (0, 0))))
            out.update(m)
            out.update({name: v for name, v in multiclass_report(full).items()
                        if name in MICRO})
        if task.type == TaskType.MULTICLASS and MULTICLASS_SCORES in joint:
            auc = macro_auc(joint[MULTICLASS_SCORES], realised=True)
            if np.isfinite(auc):
                out["roc_auc"] = auc
        return out
    if task.type == TaskType.REGRESSION and REGRESSION in joint:
        sums = dict(zip(REGRESSION_FIELDS, joint[REGRESSION].tolist(), strict=True))
        # labeled: rows with a label (coverage); scored: with a prediction too (the metrics')
        return {"labeled": sums["labels"], "scored": sums["n"], **regression_metrics(sums)}
    return {}


def metric_unit_sd(
    reference: ReferenceData,
    measure: Callable[[dict[str, np.ndarray]], dict[str, float]],
    rows: np.ndarray,
    names: list[str],
    *,
    draws: int = 200,
) -> dict[str, float]:
    """Per-row standard deviation of each metric, by resampling windows of reference rows."""
    task = reference.schema.task
    assert task is not None
    codes = row_codes(reference.table, task).take(rows)
    m = min(RESAMPLE_ROWS, rows.size)
    rng = reference.rng("metric_unit_sd", *names)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(draws):
        values = measure(tally(codes.take(rng.integers(0, rows.size, m)), task))
        for k in names:
            if np.isfinite(values.get(k, np.nan)):
                samples[k].append(values[k])
    return {k: float(np.std(v, ddof=1) * np.sqrt(m)) if len(v) > 2 else 0.0
            for k, v in samples.items()}


class DropMonitor(Monitor):
    """A metric compared with its reference value; alerts when it gets worse by more than
    sampling noise at the window's size (calibrated) and by at least ``min_effect``."""

    params: ClassVar[dict[str, Any]] = {"min_effect": 0.02, "critical_effect": 0.05,
                                        "min_rows": 100}

    needs_task = True

    @property
    def task(self) -> Task:
        return self.bound_task()

    def judged_rows(self, window: Profile) -> int:
        """The rows a window's metric is computed on."""
        return window.rows

    def not_evaluated(self, window: Profile) -> str | None:
        if "reference" not in self.calibration:
            return None  # skipped at init (said so in the suite), not per window
        outputs = [c for c in (self.task.prediction, self.task.proba) if c]
        missing = absent(window, outputs)
        if outputs and len(missing) == len(outputs):
            return f"{', '.join(missing)} missing"
        n, floor = self.judged_rows(window), self.settings["min_rows"]
        return f"{self.counted}n < {floor}" if n < floor else None

    #: What ``n`` counts, in a not-evaluated reason ("labeled " for realised metrics).
    counted = ""

    def compare(self, window: dict[str, float], n: int, label: str) -> list[Finding]:
        ref = self.calibration.get("reference", {})
        unit = self.calibration.get("unit_sd", {})
        n_ref = int(self.calibration.get("reference_rows", 0))
        names = [k for k in ref if k in window and np.isfinite(window[k])]
        if n < self.settings["min_rows"] or not names:
            return []
        alpha = self.alpha / len(names)
        found = []
        for name in names:
            worse = ref[name] - window[name]
            if name in LOWER_IS_BETTER:
                worse = -worse
            scale = abs(ref[name]) if name in ("mae", "rmse", "mape") else 1.0  # relative errors
            warning = max(difference_threshold(unit.get(name, 0.0), n, n_ref, alpha),
                          self.settings["min_effect"] * scale)
            critical = max(difference_threshold(unit.get(name, 0.0), n, n_ref, alpha / 100),
                           self.settings["critical_effect"] * scale, warning)
            severity = severity_for(worse, warning, critical)
            if severity is None:
                continue
            f = self.finding(
                window[name], ref[name] - warning if name not in LOWER_IS_BETTER
                else ref[name] + warning, severity,
                f"{label} {name} {ref[name]:.3f} → {window[name]:.3f} on {n} rows",
                reference=ref[name], change=-worse, rows=n,
            )
            f.metric = name
            found.append(f)
        return found


class RealisedPerformance(DropMonitor):
    """Realised model performance on the labeled rows of a window, against the reference."""

    type = "performance"
    family = Family.PERFORMANCE

    def calibrate(self, reference: ReferenceData) -> None:
        task = self.task
        metrics = realised_metrics(reference.profile.joint, task)
        names = [k for k in metrics if k not in REPORTED_ONLY and np.isfinite(metrics[k])]
        codes = row_codes(reference.table, task)
        if task.classification:
            labeled = np.flatnonzero(codes.label < len(task.classes))
        else:
            labeled = np.flatnonzero(np.isfinite(codes.label) & np.isfinite(codes.pred))
        if labeled.size < 2 or not names:
            self.calibration = {"skipped": "no labeled rows in the reference" if labeled.size < 2
                                else "no model output (prediction or score) to compare "
                                     "the labels with"}
            return
        self.calibration = {
            "method": "normal approximation; per-row sd from resampled windows of "
                      f"{RESAMPLE_ROWS} labeled reference rows",
            "reference_rows": int(labeled.size),
            "reference": {k: metrics[k] for k in names},
            "unit_sd": metric_unit_sd(reference, lambda j: realised_metrics(j, task), labeled,
                                      names),
        }

    def measure(self, window: Profile) -> dict[str, Any]:
        if not window.joint:
            return {}
        out: dict[str, Any] = {"realised": realised_metrics(window.joint, self.task)}
        t = window.joint.get(PERFORMANCE)
        if t is not None and self.task.prediction is not None:
            k = len(self.task.classes)
            # rows: true class; columns: predicted class, then "missing/other prediction"
            out["confusion"] = {"classes": self.task.classes,
                                "matrix": t[:, :, :k].sum(axis=0).T.tolist()}
        return out

    counted = "labeled "

    def judged_rows(self, window: Profile) -> int:
        if not window.joint:
            return 0
        metrics = realised_metrics(window.joint, self.task)
        return int(metrics.get("scored", metrics.get("labeled", 0)))

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        if "reference" not in self.calibration or not window.joint:
            return []
        metrics = realised_metrics(window.joint, self.task)
        return self.compare(metrics, self.judged_rows(window), "realised")


class LabelCoverage(Monitor):
    """Labels that stop arriving: windows old enough to have labels but with few of them.

    Evaluated over a sequence of windows: a window alerts when its share of labeled rows
    is below ``min_coverage`` times the typical coverage of earlier windows, unless it is
    among the newest ``delay_windows`` windows, whose labels may still be on their way.
    """

    type = "label_coverage"
    family = Family.PERFORMANCE
    calibrated = False
    params: ClassVar[dict[str, Any]] = {"min_coverage": 0.5, "delay_windows": 1}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        return []  # needs the sequence: see evaluate_sequence

    def evaluate_sequence(self, windows: list[Profile]) -> list[list[Finding]]:
        task = self.schema.task if self.schema else None
        coverage = []
        for w in windows:
            m = realised_metrics(w.joint, task) if task and w.joint else {}
            coverage.append(m.get("labeled", 0.0) / w.rows if w.rows else np.nan)
        out: list[list[Finding]] = [[] for _ in windows]
        due = len(windows) - int(self.settings["delay_windows"])
        for i in range(due):
            earlier = [c for c in coverage[:i] if np.isfinite(c) and c > 0]
            if not earlier or not np.isfinite(coverage[i]):
                continue
            typical = float(np.median(earlier))
            floor = self.settings["min_coverage"] * typical
            if coverage[i] < floor:
                f = self.finding(coverage[i], floor,
                                 Severity.CRITICAL if coverage[i] == 0 else Severity.WARNING,
                                 f"labels cover {coverage[i]:.1%} of rows, typically {typical:.1%}",
                                 typical=typical)
                f.metric = "label_coverage"
                out[i].append(f)
        return out
