"""Estimated performance without labels: confidence-based estimation (CBPE).

At ``init`` the labeled reference decides whether the classifier's scores can be used as
they are (:func:`~watchkeeper.baseline.estimators.base_calibration`: kept if a calibration test
cannot reject them, otherwise calibrated isotonically per predicted class), and a label
model learns where, by the rows' inputs, that calibrated score is still off
(:class:`~watchkeeper.baseline.estimators.LabelModel`). Each row's P(positive) is summed per score
bin and predicted class while profiling.

A window's expected confusion matrix is the sum of those probabilities: TP = Σ P(positive)
over rows predicted positive, and so on; ROC-AUC is the binned AUC of the expected label
histograms. Standard CBPE takes P(positive | score) from the reference, which is right only
if that relation holds in production; under covariate shift only P(positive | inputs) does,
so the label model's correction follows a window's mix of rows (on the ACS benchmark it cut
the accuracy estimate's error by a quarter). Windows merge exactly: a window contributes
counts and sums of fixed per-row values.

Each metric comes with a 95% band that covers two errors: sampling (which rows got which
label, given the probabilities) and the estimator's own error under shift, which does not
shrink with the window. The latter (``shift_sd``) is measured at ``init`` on chunks of the
labeled reference chosen to differ from it (runs in file order; the rows in each quarter of
every input's bins), each scored by an estimator fitted without those rows
(:func:`~watchkeeper.baseline.estimators.out_of_fold_positive`): the sd of the chunks' errors beyond
their sampling noise (:func:`~watchkeeper.stats.metrics.shift_sd`), the larger of the two
kinds of chunk, and at least the sampling sd of the metric over the labeled reference (the
noise of the labels the calibration was fitted to, which no window size averages away).
No estimate from the reference sees a change in P(label | inputs); once earlier windows'
labels are in, :func:`history_band` widens a window's band by their errors (a batch check
applies it in window order, see :meth:`~watchkeeper.run.check.CheckResult.refresh`). The
monitor alerts only when the whole band is worse than the threshold. Once labels arrive
the estimate is reported beside the realised value.

A regressor's MAE, RMSE and (where the loss model estimates it: labels of one sign) MAPE
are the window's sums of per-row expected errors from the loss model
(:class:`~watchkeeper.baseline.estimators.LossModel`), and get a band by the same method in
relative terms: the sampling sd of a window's realised metric is ``sampling_cv`` (the
reference's per-row sd of the metric over its value) × estimate / √rows, widened by
``shift_sd``, the loss model's own error as a fraction of the estimate, measured out of fold
(:func:`~watchkeeper.baseline.estimators.out_of_fold_loss`) on the same shifted chunks;
:func:`history_band` then widens it by earlier labelled windows' errors, as for a classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from watchkeeper.baseline.estimators import (
    BaseCalibration,
    BinnedInputs,
    base_calibration,
    out_of_fold_loss,
    out_of_fold_positive,
)
from watchkeeper.baseline.schema import Role
from watchkeeper.baseline.task import RowCodes, Task, TaskType
from watchkeeper.monitors import estimate_multiclass as multiclass
from watchkeeper.monitors.base import Family, Finding, Monitor, ReferenceData
from watchkeeper.monitors.performance import (
    LOWER_IS_BETTER,
    DropMonitor,
    metric_unit_sd,
    realised_metrics,
)
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.task import (
    PERFORMANCE,
    PERFORMANCE_ESTIMATE,
    REGRESSION_ESTIMATE,
    row_codes,
    tally,
)
from watchkeeper.stats.metrics import (
    bootstrap_expected_binary,
    error_band,
    expected_binary,
    sampling_sd_expected_binary,
    shift_sd,
    widen_band,
)

ESTIMATED = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: A classifier's shares reported beside them (multiclass: micro averages).
SHARES = (*ESTIMATED, "micro_precision", "micro_recall", "micro_f1")
#: Each input's bins cut the labeled reference into this many chunks of equal rows...
SHIFT_CHUNKS = 4
#: ... and file order into this many runs: the chunks the estimator's error is measured on.
TIME_CHUNKS = 8
#: Chunks are at least this many rows (fewer chunks per input on a small reference).
MIN_CHUNK_ROWS = 200
#: Label draws for a chunk's sampling sd.
CHUNK_DRAWS = 100
#: z of a two-sided 95% band.
Z95 = 1.96
#: ``estimated_band_method`` of a band set at init (sampling noise and ``shift_sd``).
BAND_AT_INIT = "init"
#: Earlier labelled windows needed before their errors widen a window's band...
MIN_LABELLED_WINDOWS = 2
#: ... of which the latest this many are used (an error regime that ended fades out).
BAND_HISTORY = 12
#: A window counts as labelled for that with at least this many labeled rows.
MIN_LABELED_ROWS = 30


class EstimatedPerformance(DropMonitor):
    """Performance estimated from calibrated scores (corrected per row by the label model),
    for windows whose labels are not in yet."""

    type = "estimated_performance"
    family = Family.ESTIMATED_PERFORMANCE

    def _estimate(self, joint: dict[str, np.ndarray]) -> dict[str, float]:
        if self.task.type == TaskType.REGRESSION:
            return expected_regression(joint.get(REGRESSION_ESTIMATE), self.task)
        if self.task.type == TaskType.MULTICLASS:
            return multiclass.estimate(joint) if "reference" in self.calibration else {}
        t = joint.get(PERFORMANCE)
        if t is None or "calibration" not in self.calibration:
            return {}
        counts = t.sum(axis=2)[:, :2]  # every row, labeled or not: score bin × predicted class
        return {k: v for k, v in expected_binary(counts, self._table(joint, counts),
                                                 positive=1).items() if k in ESTIMATED}

    def _table(self, joint: dict[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
        """P(positive | score bin, predicted class) in this window: the mean of its rows'
        label-model probabilities, or the reference's calibration where a cell is empty
        (or the suite has no label model)."""
        table = np.asarray(self.calibration["calibration"], dtype=float)
        sums = joint.get(PERFORMANCE_ESTIMATE)
        if sums is None:
            return table
        return np.where(counts > 0, sums / np.maximum(counts, 1), table)

    def calibrate(self, reference: ReferenceData) -> None:
        task = self.task
        if task.type == TaskType.REGRESSION:
            self._calibrate_regression(reference)
            return
        if task.type == TaskType.MULTICLASS:
            self.calibration = multiclass.calibrate(task, reference, shifted_chunks)
            return
        t = reference.profile.joint.get(PERFORMANCE)
        if task.type != TaskType.BINARY or t is None or not task.score_edges:
            self.calibration = {"skipped": "needs a binary classifier's score column"}
            return
        if t[:, :2, :2].sum() < 2:
            self.calibration = {"skipped": "no labeled rows in the reference"}
            return
        model = task.label_model
        found = (base_calibration(row_codes(reference.table, task), task.n_score_bins)
                 if model is None else BaseCalibration(model.base, model.method, model.test))
        method = found.method + "; " + (
            f"label model: {model.trees.trees} boosted trees on the inputs correct it per row"
            if model is not None else "no label model (fewer than 1,000 labeled rows)")
        self.calibration = {
            "method": method + "; expected confusion matrix per window; per-row sd from "
                               "resampled reference windows",
            "calibration": [[float(a), float(b)] for a, b in found.cells],
        }
        if found.test is not None:
            self.calibration["calibration_test"] = dict(found.test)
        reference_estimate = self._estimate(reference.profile.joint)
        names = [k for k in ESTIMATED if np.isfinite(reference_estimate.get(k, np.nan))]
        rows = np.arange(reference.table.num_rows)
        self.calibration.update({
            "reference_rows": int(rows.size),
            "reference": {k: reference_estimate[k] for k in names},
            "unit_sd": metric_unit_sd(reference, self._estimate, rows, names),
        })
        self._calibrate_shift(reference, names)

    def _calibrate_shift(self, reference: ReferenceData, names: list[str]) -> None:
        """``shift_sd`` per metric: the estimator's own error on shifted reference chunks,
        scored out of fold (see the module docstring), and at least the noise of the
        reference labels it was fitted on."""
        task = self.task
        codes = row_codes(reference.table, task)
        found = self._reference_sd(reference, names)
        positive = out_of_fold_positive(reference.table, codes, task)
        kinds = shifted_chunks(reference, np.flatnonzero(np.isfinite(positive)))
        for kind, chunks in kinds.items():
            errors: dict[str, list[float]] = {k: [] for k in names}
            sampling: dict[str, list[float]] = {k: [] for k in names}
            for i, chunk in enumerate(chunks):
                joint = _joint(codes.take(chunk), positive[chunk], task)
                counts = joint[PERFORMANCE].sum(axis=2)[:, :2]
                estimate = self._estimate(joint)
                realised = realised_metrics(joint, task)
                sd = sampling_sd_expected_binary(counts, self._table(joint, counts),
                                                 positive=1, draws=CHUNK_DRAWS,
                                                 rng=reference.rng(kind, i))
                for k in names:
                    errors[k].append(estimate.get(k, np.nan) - realised.get(k, np.nan))
                    sampling[k].append(sd[k])
            for k in names:  # the band must cover either kind of shift
                found[k] = max(found[k], shift_sd(np.asarray(errors[k]),
                                                  np.asarray(sampling[k])))
        self.calibration["method"] += (
            "; band widened by the estimator's own error (shift_sd): out of fold on "
            f"{sum(len(c) for c in kinds.values())} shifted reference chunks, at least the "
            "reference labels' noise")
        self.calibration["shift_sd"] = {k: round(v, 6) for k, v in found.items()}

    def _reference_sd(self, reference: ReferenceData, names: list[str]) -> dict[str, float]:
        """Sampling sd of each metric over the labeled reference rows: the error that the
        calibration (fitted to those labels) carries into every estimate, whatever the
        window's size."""
        joint = reference.profile.joint
        counts = joint[PERFORMANCE][:, :2, :2].sum(axis=2)
        sd = sampling_sd_expected_binary(counts, self._table(joint, counts), positive=1,
                                         draws=CHUNK_DRAWS, rng=reference.rng("reference_sd"))
        return {k: float(sd[k]) if np.isfinite(sd.get(k, np.nan)) else 0.0 for k in names}

    def _calibrate_regression(self, reference: ReferenceData) -> None:
        """A regressor's band is the classifier's (sampling, widened by ``shift_sd``) in
        relative terms: an error metric's spread grows with its level, so the sampling sd
        of a window's realised metric is ``sampling_cv`` × estimate / √rows and
        ``shift_sd`` is the estimator's own error as a fraction of the estimate."""
        task = self.task
        estimate = self._estimate(reference.profile.joint)
        if not estimate:
            self.calibration = {"skipped": "no loss model (needs a labeled reference)"}
            return
        names = list(estimate)
        rows = np.arange(reference.table.num_rows)
        codes = row_codes(reference.table, task)
        labeled = np.flatnonzero(np.isfinite(codes.label) & np.isfinite(codes.pred))
        realised = realised_metrics(reference.profile.joint, task)
        unit = metric_unit_sd(reference, lambda j: realised_metrics(j, task), labeled, names)
        cv = {k: unit[k] / realised[k] if realised.get(k, 0) > 0 else 0.0 for k in names}
        self.calibration = {
            "method": "loss model (boosted oblivious trees on the binned inputs and the "
                      "prediction) fitted to the reference's absolute, squared (and "
                      "percentage) errors; per-row sd from resampling",
            "reference_rows": int(rows.size),
            "reference": estimate,
            "unit_sd": metric_unit_sd(reference, self._estimate, rows, names),
            "sampling_cv": {k: round(v, 6) for k, v in cv.items()},
        }
        self._calibrate_regression_shift(reference, codes, names, labeled.size)

    def _calibrate_regression_shift(self, reference: ReferenceData, codes: RowCodes,
                                    names: list[str], labeled: int) -> None:
        """``shift_sd`` of a regressor, relative to the estimate: the loss model's error on
        shifted reference chunks scored out of fold, beyond their sampling noise, and at
        least the relative sampling sd of the reference's own errors (what the model was
        fitted to)."""
        task = self.task
        cv = self.calibration["sampling_cv"]
        found = {k: cv[k] / np.sqrt(max(labeled, 1)) for k in names}
        oof = out_of_fold_loss(reference.table, task)
        width = task.loss_model.width if task.loss_model is not None else 2
        scored = replace(codes, expected_error=oof[:, :width])
        kinds = shifted_chunks(reference, np.flatnonzero(np.isfinite(oof[:, 0])
                                                          & np.isfinite(codes.label)))
        for chunks in kinds.values():
            errors: dict[str, list[float]] = {k: [] for k in names}
            sampling: dict[str, list[float]] = {k: [] for k in names}
            for chunk in chunks:
                joint = tally(scored.take(chunk), task)
                estimate = self._estimate(joint)
                realised = realised_metrics(joint, task)
                for k in names:
                    e = estimate.get(k, np.nan)
                    errors[k].append((e - realised.get(k, np.nan)) / e if e > 0 else np.nan)
                    sampling[k].append(cv[k] / np.sqrt(chunk.size))
            for k in names:  # the band must cover either kind of shift
                found[k] = max(found[k], shift_sd(np.asarray(errors[k]),
                                                  np.asarray(sampling[k])))
        self.calibration["method"] += (
            "; band: sampling sd (sampling_cv × estimate / √rows) widened by the loss "
            "model's own error relative to the estimate (shift_sd), out of fold on "
            f"{sum(len(c) for c in kinds.values())} shifted reference chunks")
        self.calibration["shift_sd"] = {k: round(float(v), 6) for k, v in found.items()}

    def _regression_bands(self, window: Profile, estimate: dict[str, float]
                          ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
        """A regressor's 95% bands and sampling sds (see :meth:`_calibrate_regression`);
        a suite calibrated before regression bands (no ``sampling_cv``) has none."""
        cv = self.calibration.get("sampling_cv")
        sums = window.joint.get(REGRESSION_ESTIMATE)
        if not cv or sums is None or sums[0] <= 0:
            return {}, {}
        extra = self.calibration.get("shift_sd", {})
        bands, sampling = {}, {}
        for k, value in estimate.items():
            sd = float(cv.get(k, 0.0)) * value / float(np.sqrt(sums[0]))
            lo, hi = widen_band(value, (value - Z95 * sd, value + Z95 * sd),
                                float(extra.get(k, 0.0)) * value)
            bands[k], sampling[k] = (max(lo, 0.0), hi), sd
        return bands, sampling

    def measure(self, window: Profile) -> dict[str, Any]:
        estimate = self._estimate(window.joint)
        if not estimate:
            return {}
        bands, sampling = self._bands(window, estimate)
        out: dict[str, Any] = {"estimated": estimate}
        if bands:
            out.update(estimated_band=bands, estimated_band_method=BAND_AT_INIT,
                       estimated_sampling_sd=sampling)
        return self._with_error(out, window, estimate)

    def _bands(self, window: Profile, estimate: dict[str, float]
               ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
        """95% band of each estimated metric: the sampling band widened by ``shift_sd``
        (a suite calibrated before it existed has none: the sampling band alone); and the
        sampling sd of each metric (the sampling band's half-width / 1.96)."""
        if self.task.type == TaskType.REGRESSION:
            return self._regression_bands(window, estimate)
        if self.task.type == TaskType.MULTICLASS:
            return multiclass.bands(window.joint, estimate, self.calibration.get("shift_sd", {}))
        counts = window.joint[PERFORMANCE].sum(axis=2)[:, :2]
        rng = np.random.default_rng([int(counts.sum()), 17])
        bands = bootstrap_expected_binary(counts, self._table(window.joint, counts),
                                          positive=1, rng=rng)
        extra = self.calibration.get("shift_sd", {})
        out, sampling = {}, {}
        for k in estimate:
            lo, hi = widen_band(estimate[k], bands[k], float(extra.get(k, 0.0)))
            out[k] = (max(lo, 0.0), min(hi, 1.0))
            sampling[k] = (bands[k][1] - bands[k][0]) / (2 * Z95)
        return out, sampling

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
        bands = self._bands(window, estimate)[0]
        if not bands:  # a regressor's suite from before the band: the estimate alone
            return self.compare(estimate, window.rows, "estimated")
        return self.judge(window, estimate, bands)

    def judge(self, window: Profile, estimate: dict[str, float],
              bands: dict[str, tuple[float, float]]) -> list[Finding]:
        """Findings of a classifier's window from its estimate and 95% bands, judged on the
        band's better end: alert only if the whole band is past the threshold."""
        found = self.compare({k: lo if k in LOWER_IS_BETTER else hi
                              for k, (lo, hi) in bands.items()}, window.rows, "estimated")
        for f in found:
            name = f.metric or ""
            ref, (lo, hi) = self.calibration["reference"][name], bands[name]
            f.value = estimate[name]
            f.message = (f"estimated {name} {ref:.3f} → {estimate[name]:.3f} "
                         f"(95% band {lo:.3f}–{hi:.3f}) on {window.rows} rows")
            f.evidence.update(change=estimate[name] - ref, band=[lo, hi])
        return found


def shifted_chunks(reference: ReferenceData, rows: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Chunks of ``rows`` that differ from the reference as a whole, by kind of shift:
    ``time``, the rows in file order cut into up to ``TIME_CHUNKS`` runs; ``inputs``, for
    every input its rows ordered by the input's bin and cut into up to ``SHIFT_CHUNKS``
    parts. Empty below two chunks' rows."""
    most = rows.size // MIN_CHUNK_ROWS
    if most < 2:
        return {}
    inputs = {c.name: (c.edges if c.edges else tuple(c.categories or ()))
              for c in reference.schema if c.role == Role.FEATURE and c.n_bins}
    binned = BinnedInputs(*BinnedInputs.split_inputs(inputs))
    table = reference.table.take(rows)
    kinds = {"time": list(np.array_split(rows, min(TIME_CHUNKS, most)))}
    by_input = [part for name in binned.names for part in np.array_split(
        rows[np.argsort(binned._codes(table, name), kind="stable")], min(SHIFT_CHUNKS, most))]
    if by_input:
        kinds["inputs"] = by_input
    return kinds


def expected_regression(sums: np.ndarray | None, task: Task) -> dict[str, float]:
    """A regressor's expected MAE, RMSE and (where the loss model estimates it) MAPE from a
    window's ``regression_estimate`` tally: rows with a prediction, then the sums of the
    rows' expected absolute, squared and absolute percentage errors; {} without rows."""
    if sums is None or sums[0] <= 0:
        return {}
    out = {"mae": float(sums[1] / sums[0]), "rmse": float(np.sqrt(sums[2] / sums[0]))}
    if task.loss_model is not None and task.loss_model.mape and len(sums) > 3:
        out["mape"] = float(sums[3] / sums[0])
    return out


def _joint(codes: RowCodes, positive: np.ndarray, task: Task) -> dict[str, np.ndarray]:
    """A chunk's performance tally with ``positive`` (per-row P(positive)) summed per cell,
    as a window's tally holds the label model's."""
    joint = {PERFORMANCE: tally(codes, task)[PERFORMANCE]}
    ok = codes.pred <= 1
    shape = joint[PERFORMANCE].shape[0], 2
    joint[PERFORMANCE_ESTIMATE] = np.bincount(
        codes.score_bin[ok] * 2 + codes.pred[ok], weights=positive[ok],
        minlength=shape[0] * 2).reshape(shape)
    return joint



@dataclass(frozen=True)
class LabelledError:
    """An earlier window's estimation error per metric (realised − estimated), with the
    sampling sd of its realised metric (from its labeled rows)."""

    errors: dict[str, float]
    sampling_sd: dict[str, float]


def labelled_error(metrics: dict[str, Any], rows: int) -> LabelledError | None:
    """A window's :class:`LabelledError` from its reported metrics; None if it has fewer
    than ``MIN_LABELED_ROWS`` labels or no estimated band. The sampling sd of a window
    whose rows are only partly labeled grows as √(rows / labeled)."""
    error, sd = metrics.get("estimation_error"), metrics.get("estimated_sampling_sd")
    if not error or not sd:
        return None
    labeled = float((metrics.get("realised") or {}).get("labeled", rows) or 0)
    if labeled < MIN_LABELED_ROWS:
        return None
    scale = float(np.sqrt(max(rows, labeled) / labeled))
    return LabelledError({k: -_number(v) for k, v in error.items()},
                         {k: _number(v) * scale for k, v in sd.items()})


def history_band(metrics: dict[str, Any], earlier: Sequence[LabelledError]) -> dict[str, Any]:
    """The entries of a window's metrics that change when earlier labelled windows show the
    estimator's error under the drift at hand; {} below ``MIN_LABELLED_WINDOWS`` of them.

    A pure function of the window's reported metrics and the earlier windows' errors
    (oldest first; the last ``BAND_HISTORY`` are used), so a batch check and a server
    folding windows in order give the same band. Each metric's band is the hull of the
    band set at init, the estimate and :func:`~watchkeeper.stats.metrics.error_band`
    (earlier errors' mean and sd beyond sampling noise): history only widens it. The band
    set at init is kept as ``estimated_band_init``, so applying this again is the same."""
    history = list(earlier)[-BAND_HISTORY:]
    if len(history) < MIN_LABELLED_WINDOWS or "estimated_band" not in metrics:
        return {}
    init = metrics.get("estimated_band_init", metrics["estimated_band"])
    sampling = metrics.get("estimated_sampling_sd") or {}
    bands, mean_error = {}, {}
    for k, value in metrics.get("estimated", {}).items():
        if k not in init:
            continue
        lo, hi = (_number(x) for x in init[k])
        errors = np.array([_number(h.errors.get(k)) for h in history])
        predicted = error_band(_number(value), _number(sampling.get(k)), errors,
                               np.array([_number(h.sampling_sd.get(k)) for h in history]))
        if np.isfinite([*predicted, lo, hi]).all():
            lo = max(min(lo, predicted[0], value), 0.0)
            hi = max(hi, predicted[1], value)
            if k in SHARES:  # a classifier's metrics are shares; a regressor's errors
                hi = min(hi, 1.0)
            mean_error[k] = float(np.nanmean(errors))
        bands[k] = (lo, hi)
    return {"estimated_band": bands, "estimated_band_init": init,
            "estimated_band_method": f"history: errors of the last {len(history)} labelled "
                                     "windows",
            "estimated_error_mean": mean_error}


def _number(x: Any) -> float:
    """A reported value as a float; NaN for a missing one (JSON null)."""
    return float("nan") if x is None else float(x)


def band_from_history(monitors: Sequence[Monitor], window: Profile, findings: list[Finding],
                      metrics: dict[str, Any], earlier: Sequence[LabelledError]
                      ) -> list[Finding]:
    """A window's findings once its estimated bands are widened by :func:`history_band`
    (``metrics`` is updated in place): the estimated-performance findings are judged again
    on the new bands, the others kept."""
    update = history_band(metrics, earlier)
    if not update:
        return findings
    metrics.update(update)
    for m in monitors:
        if not (m.enabled and isinstance(m, EstimatedPerformance)):
            continue
        findings = [f for f in findings if f.monitor != m.type]
        if not m.not_evaluated(window) and "reference" in m.calibration:
            findings += m.judge(window, metrics["estimated"], update["estimated_band"])
    return findings
