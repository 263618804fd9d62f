"""Estimated performance of a multiclass classifier without labels (confidence-based).

Each row's class scores are calibrated one-vs-rest on the labeled reference
(:class:`~watchkeeper.baseline.multiclass.ClassCalibration`) and summed per predicted class
while profiling; a window's expected confusion matrix is those sums, from which accuracy,
macro and micro precision, recall and F1 follow, and the macro one-vs-rest ROC-AUC from
the expected label histograms over each class's score bins. Windows merge exactly.

The 95% band is built as for a binary classifier (monitors/estimate.py): the sampling band
of the realised metrics if labels follow the calibrated probabilities (normal draws with
each predicted class's exact covariance, kept in the tally), widened by ``shift_sd``, the
estimator's own error on shifted chunks of the labeled reference scored by a calibration
fitted without them (out of fold), and at least the noise of the reference labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from watchkeeper.baseline.multiclass import ClassCalibration, class_scores
from watchkeeper.baseline.task import Task
from watchkeeper.monitors.base import ReferenceData
from watchkeeper.monitors.performance import metric_unit_sd, realised_metrics
from watchkeeper.profiles.task import MULTICLASS_ESTIMATE, MULTICLASS_SCORES, row_codes, tally
from watchkeeper.stats.metrics import shift_sd, widen_band
from watchkeeper.stats.multiclass import expected_multiclass, sampling_multiclass

#: The metrics judged (the micro averages are reported beside them).
JUDGED = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: Label draws for a window's band, and for a chunk's sampling sd.
BAND_DRAWS = 200
CHUNK_DRAWS = 100
#: Folds of the labeled reference for the out-of-fold calibration.
FOLDS = 2

Chunks = Callable[[ReferenceData, np.ndarray], dict[str, list[np.ndarray]]]


def estimate(joint: dict[str, np.ndarray]) -> dict[str, float]:
    """A window's estimated metrics; {} without the tallies or scored rows."""
    e = joint.get(MULTICLASS_ESTIMATE)
    if e is None:
        return {}
    return expected_multiclass(e, joint.get(MULTICLASS_SCORES))


def bands(joint: dict[str, np.ndarray], value: dict[str, float], shift: dict[str, Any]
          ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """95% band of each estimated metric (sampling, widened by ``shift``) and its
    sampling sd."""
    e = joint[MULTICLASS_ESTIMATE]
    rng = np.random.default_rng([round(float(e[:, 0].sum())), 17])
    sampled, sds = sampling_multiclass(e, joint.get(MULTICLASS_SCORES), draws=BAND_DRAWS,
                                       rng=rng)
    out, sampling = {}, {}
    for k, v in value.items():
        if k not in sampled:
            continue
        lo, hi = widen_band(v, sampled[k], float(shift.get(k, 0.0)))
        out[k] = (max(lo, 0.0), min(hi, 1.0))
        sampling[k] = sds[k]
    return out, sampling


def calibrate(task: Task, reference: ReferenceData, chunks: Chunks) -> dict[str, Any]:
    """The monitor's calibration entry: the reference estimate, per-row sds and
    ``shift_sd`` per metric (see the module docstring)."""
    cal = task.class_calibration
    joint = reference.profile.joint
    if cal is None or MULTICLASS_ESTIMATE not in joint:
        return {"skipped": "needs a multiclass classifier's score per class and labels"}
    ref = estimate(joint)
    names = [k for k in JUDGED if np.isfinite(ref.get(k, np.nan))]
    rows = np.arange(reference.table.num_rows)
    out: dict[str, Any] = {
        "method": cal.describe() + "; expected confusion matrix per window (Σ calibrated "
                  "probabilities per predicted class); per-row sd from resampled reference "
                  "windows",
        "reference_rows": int(rows.size),
        "reference": {k: ref[k] for k in names},
        "unit_sd": metric_unit_sd(reference, estimate, rows, names),
    }
    if cal.test is not None:
        out["calibration_test"] = dict(cal.test)
    _, sds = sampling_multiclass(joint[MULTICLASS_ESTIMATE], joint.get(MULTICLASS_SCORES),
                                 draws=CHUNK_DRAWS, rng=reference.rng("reference_sd"))
    found = {k: float(sds[k]) if np.isfinite(sds.get(k, np.nan)) else 0.0 for k in names}
    codes = row_codes(reference.table, task)
    oof = out_of_fold(reference, task, codes.label)
    scored = replace(codes, class_p=oof)
    kinds = chunks(reference, np.flatnonzero(np.isfinite(oof).all(axis=1)
                                             & (codes.label < len(task.classes))))
    for kind, parts in kinds.items():
        errors: dict[str, list[float]] = {k: [] for k in names}
        sampling: dict[str, list[float]] = {k: [] for k in names}
        for i, part in enumerate(parts):
            chunk = tally(scored.take(part), task)
            guess, real = estimate(chunk), realised_metrics(chunk, task)
            _, sd = sampling_multiclass(chunk[MULTICLASS_ESTIMATE], chunk.get(MULTICLASS_SCORES),
                                        draws=CHUNK_DRAWS, rng=reference.rng(kind, i))
            for k in names:
                errors[k].append(guess.get(k, np.nan) - real.get(k, np.nan))
                sampling[k].append(sd.get(k, np.nan))
        for k in names:  # the band must cover either kind of shift
            found[k] = max(found[k], shift_sd(np.asarray(errors[k]), np.asarray(sampling[k])))
    out["method"] += (
        "; band widened by the estimator's own error (shift_sd): out of fold on "
        f"{sum(len(c) for c in kinds.values())} shifted reference chunks, at least the "
        "reference labels' noise")
    out["shift_sd"] = {k: round(v, 6) for k, v in found.items()}
    return out


def out_of_fold(reference: ReferenceData, task: Task, labels: np.ndarray) -> np.ndarray:
    """Calibrated probabilities (rows × k) of the labeled reference rows, each run of
    ``FOLDS`` in file order scored by a calibration fitted on the other runs; NaN rows
    elsewhere."""
    k = len(task.classes)
    assert task.class_probas is not None
    raw = class_scores(reference.table, task.class_probas, k)
    labeled = np.flatnonzero(np.isfinite(raw).all(axis=1) & (labels < k))
    out = np.full(raw.shape, np.nan)
    for part in np.array_split(labeled, FOLDS):
        train = np.setdiff1d(labeled, part)
        if train.size and part.size:
            out[part] = ClassCalibration.fit(raw[train], labels[train]).predict(raw[part])
    return out
