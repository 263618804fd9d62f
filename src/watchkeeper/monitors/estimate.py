"""Estimated performance without labels: confidence-based estimation (CBPE).

At ``init`` the classifier's scores are calibrated on the labeled reference (isotonic, on
the score bins); a window's expected confusion matrix is then the sum over its score bins
of rows × P(positive | bin), split by the predicted class. Accuracy, precision, recall, F1
and ROC-AUC follow, each with a 95% sampling band; once labels arrive the estimate is
reported beside the realised value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from watchkeeper.monitors.base import Finding, ReferenceData
from watchkeeper.monitors.performance import DropMonitor, metric_unit_sd, realised_metrics
from watchkeeper.profile import Profile
from watchkeeper.stats.metrics import (
    bootstrap_expected_binary,
    calibrate_bins,
    expected_binary,
)
from watchkeeper.task import PERFORMANCE, REGRESSION_ESTIMATE

ESTIMATED = ("accuracy", "precision", "recall", "f1", "roc_auc")


class EstimatedPerformance(DropMonitor):
    """Performance estimated from calibrated scores, for windows whose labels are not in yet."""

    type = "estimated_performance"
    family = "estimated_performance"

    def _estimate(self, joint: dict[str, np.ndarray]) -> dict[str, float]:
        if self.task.type == "regression":
            sums = joint.get(REGRESSION_ESTIMATE)
            if sums is None or sums[0] <= 0:
                return {}
            return {"mae": float(sums[1] / sums[0]), "rmse": float(np.sqrt(sums[2] / sums[0]))}
        t = joint.get(PERFORMANCE)
        if t is None or "calibration" not in self.calibration:
            return {}
        counts = t.sum(axis=2)[:, :2]  # every row, labeled or not: score bin × predicted class
        out = expected_binary(counts, np.asarray(self.calibration["calibration"]), positive=1)
        return {k: out[k] for k in ESTIMATED}

    def calibrate(self, reference: ReferenceData) -> None:
        task = self.task
        if task.type == "regression":
            self._calibrate_regression(reference)
            return
        t = reference.profile.joint.get(PERFORMANCE)
        if task.type != "binary" or t is None or not task.score_edges:
            self.calibration = {"skipped": "needs a binary classifier's score column"}
            return
        labeled = t[:, :2, :2]  # score bin × predicted class × label
        if labeled.sum() < 2:
            self.calibration = {"skipped": "no labeled rows in the reference"}
            return
        # P(positive | score bin, predicted class): isotonic in the score within each
        # predicted class, so a bin that straddles the decision threshold is not averaged.
        cells = np.column_stack([calibrate_bins(labeled[:, p, 1], labeled[:, p, :].sum(axis=1))
                                 for p in (0, 1)])
        self.calibration = {
            "method": "isotonic calibration of score bins per predicted class on the labeled "
                      "reference; expected confusion matrix per window; per-row sd from "
                      "resampled reference windows",
            "calibration": [[round(float(a), 6), round(float(b), 6)] for a, b in cells],
        }
        reference_estimate = self._estimate(reference.profile.joint)
        names = [k for k in ESTIMATED if np.isfinite(reference_estimate.get(k, np.nan))]
        rows = np.arange(reference.table.num_rows)
        self.calibration.update({
            "reference_rows": int(rows.size),
            "reference": {k: reference_estimate[k] for k in names},
            "unit_sd": metric_unit_sd(reference, self._estimate, rows, names),
        })

    def _calibrate_regression(self, reference: ReferenceData) -> None:
        estimate = self._estimate(reference.profile.joint)
        if not estimate:
            self.calibration = {"skipped": "no loss model (needs a labeled reference)"}
            return
        names = list(estimate)
        rows = np.arange(reference.table.num_rows)
        self.calibration = {
            "method": "loss model (ridge on binned features and prediction) fitted to the "
                      "reference's absolute and squared errors; per-row sd from resampling",
            "reference_rows": int(rows.size),
            "reference": estimate,
            "unit_sd": metric_unit_sd(reference, self._estimate, rows, names),
        }

    def measure(self, window: Profile) -> dict[str, Any]:
        estimate = self._estimate(window.joint)
        if not estimate:
            return {}
        if self.task.type == "regression":
            return self._with_error({"estimated": estimate}, window, estimate)
        counts = window.joint[PERFORMANCE].sum(axis=2)[:, :2]
        rng = np.random.default_rng([int(counts.sum()), 17])
        bands = bootstrap_expected_binary(counts, np.asarray(self.calibration["calibration"]),
                                          positive=1, rng=rng)
        out: dict[str, Any] = {"estimated": estimate,
                               "estimated_band": {k: bands[k] for k in estimate}}
        return self._with_error(out, window, estimate)

    def _with_error(self, out: dict[str, Any], window: Profile,
                    estimate: dict[str, float]) -> dict[str, Any]:
        realised = realised_metrics(window.joint, self.task)
        if realised.get("labeled", 0) > 0:
            out["estimation_error"] = {k: estimate[k] - realised[k] for k in estimate
                                       if np.isfinite(realised.get(k, np.nan))}
        return out

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        estimate = self._estimate(window.joint)
        if not estimate or "reference" not in self.calibration:
            return []
        return self.compare(estimate, window.rows, "estimated")
