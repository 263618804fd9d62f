"""Estimated performance without labels: confidence-based estimation (CBPE).

At ``init`` the labeled reference decides whether the classifier's scores can be used as
they are: a calibration test (:func:`~watchkeeper.stats.metrics.calibration_test`) compares
the labels with the scores by predicted class. Scores it finds calibrated are kept (their
mean per score bin and predicted class); otherwise they are calibrated (isotonic, on the
score bins, per predicted class). Isotonic calibration of scores that are already calibrated
only adds the noise of the reference's labels (about the sampling error of the reference's
own accuracy, 0.0014 at 70k rows), so scores the labels cannot tell from calibrated are kept.

A window's expected confusion matrix is then the sum over its score bins of rows ×
P(positive | bin, predicted class). Accuracy, precision, recall, F1 and ROC-AUC follow, each
with a 95% sampling band; once labels arrive the estimate is reported beside the realised
value. The table is fixed at ``init`` and a window contributes only integer counts, so
windows merge exactly.
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
    calibration_test,
    expected_binary,
    score_means,
)
from watchkeeper.task import PERFORMANCE, REGRESSION_ESTIMATE, Task, row_codes

ESTIMATED = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: The scores are used as they are unless the calibration test rejects them at this level.
CALIBRATION_TEST_ALPHA = 0.05


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
        method = ("isotonic calibration of score bins per predicted class on the labeled "
                  "reference")
        tested = _scores_as_they_are(reference, task)
        if tested is not None and tested["p_value"] >= CALIBRATION_TEST_ALPHA:
            cells = tested["means"]
            method = ("scores used as they are (the calibration test on the labeled reference "
                      "does not reject them): mean score per bin and predicted class")
        self.calibration = {
            "method": method + "; expected confusion matrix per window; per-row sd from "
                               "resampled reference windows",
            "calibration": [[round(float(a), 6), round(float(b), 6)] for a, b in cells],
        }
        if tested is not None:
            statistic = float(tested["statistic"])
            self.calibration["calibration_test"] = {
                "statistic": round(statistic, 3) if np.isfinite(statistic) else None,
                "df": int(tested["df"]),
                "p_value": round(float(tested["p_value"]), 6),
                "alpha": CALIBRATION_TEST_ALPHA,
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


def _scores_as_they_are(reference: ReferenceData, task: Task) -> dict[str, Any] | None:
    """The calibration test of the reference's scores and their mean per cell (score bin ×
    predicted class); None when the scores cannot be probabilities (outside [0, 1])."""
    codes = row_codes(reference.table, task)
    ok = (codes.label <= 1) & (codes.pred <= 1) & np.isfinite(codes.score)
    score = codes.score[ok]
    if score.size == 0 or score.min() < 0.0 or score.max() > 1.0:
        return None
    shape = (task.n_score_bins, 2)
    cell = codes.score_bin[ok] * 2 + codes.pred[ok]

    def per_cell(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=shape[0] * 2).reshape(shape)

    rows, sums = per_cell(None), per_cell(score)
    out: dict[str, Any] = calibration_test(
        per_cell((codes.label[ok] == 1).astype(float)), sums, per_cell(score * (1 - score)), rows)
    out["means"] = score_means(sums, rows)
    return out
