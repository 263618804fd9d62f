"""The joint tallies of a model's task, in a profile.

Performance, estimated-performance and fairness monitors need statistics that join
columns: score × prediction × label, and prediction × label per sensitive group. This
module defines them as integer tallies (floats for regression sums) computed row-wise
and summed, so they merge exactly, and so a label that arrives late moves one row from
the "unlabeled" slot to its label slot without touching anything else.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.multiclass import class_scores
from watchkeeper.baseline.task import RowCodes, Task, TaskType
from watchkeeper.io.values import label_codes, numbers_with_nan

PERFORMANCE = "performance"
REGRESSION = "regression"
REGRESSION_ESTIMATE = "regression_estimate"
PERFORMANCE_ESTIMATE = "performance_estimate"
SCORES = "scores"
#: Multiclass, per predicted class (and "other"): rows with scores, Σ P(class) (k) and
#: Σ P(class)·P(class') (k × k) of the calibrated probabilities: the expected confusion
#: matrix and its sampling covariance.
MULTICLASS_ESTIMATE = "multiclass_estimate"
#: Multiclass, per class and bin of its score: rows, Σ P(class), labeled rows, labeled
#: rows of the class (one-vs-rest ROC-AUC, expected and realised).
MULTICLASS_SCORES = "multiclass_scores"


def fairness_key(grouping: list[str]) -> str:
    """The joint tally key of a grouping of sensitive attributes: ``fairness:SEX*RAC1P``."""
    return "fairness:" + "*".join(grouping)


def tally_shapes(task: Task) -> dict[str, tuple[int, ...]]:
    """The shape of each joint tally of the task, by key."""
    shapes: dict[str, tuple[int, ...]] = {}
    if task.classification:
        k = len(task.classes)
        shapes[PERFORMANCE] = (task.n_score_bins, k + 1, k + 2)
    if task.label_model is not None:
        shapes[PERFORMANCE_ESTIMATE] = (task.n_score_bins, 2)  # Σ P(positive) per cell
    if task.type == TaskType.BINARY:
        shapes[SCORES] = (3,)  # labeled rows with a score, sum of log-loss, sum of Brier
        for grouping in task.groupings():
            shapes[fairness_key(grouping)] = (len(task.group_labels(grouping)), 2, 3)
    if task.class_calibration is not None:
        k = len(task.classes)
        shapes[MULTICLASS_ESTIMATE] = (k + 1, 1 + k + k * k)
        shapes[MULTICLASS_SCORES] = (k, task.class_calibration.n_bins, 4)
    if task.type == TaskType.REGRESSION:
        shapes[REGRESSION] = (len(REGRESSION_FIELDS),)
        if task.loss_model is not None:
            # rows with a prediction, Σ|ê|, Σê² (and Σ expected |e|/|y|, 0 where MAPE is
            # not estimated; a ridge loss model of an earlier version has no such column)
            shapes[REGRESSION_ESTIMATE] = (1 + task.loss_model.width,)
    return shapes


def row_codes(table: pa.Table, task: Task) -> RowCodes:
    """Per row of a batch: its score bin, score, predicted and true class (or values), group
    per fairness grouping, and what the task's loss and label models expect."""
    n = table.num_rows
    names = set(table.column_names)
    k = len(task.classes)
    score = np.full(n, np.nan)
    if task.proba and task.proba in names:
        score = numbers_with_nan(table.column(task.proba))
    if task.score_edges:
        edges = np.asarray(task.score_edges)
        score_bin = np.searchsorted(edges[1:-1], np.nan_to_num(score, nan=edges[0]), side="right")
    else:
        score_bin = np.zeros(n, dtype=np.int64)
    if task.classification:
        pred = (label_codes(table.column(task.prediction), task.prediction_labels or task.classes)
                if task.prediction in names else np.full(n, k))
        label = (label_codes(table.column(task.target), task.classes)
                 if task.target in names else np.full(n, k + 1))
        if task.target in names:
            missing = table.column(task.target).is_null().to_numpy(zero_copy_only=False)
            label[np.asarray(missing, dtype=bool)] = k + 1
    else:
        pred = (numbers_with_nan(table.column(task.prediction)) if task.prediction in names
                else np.full(n, np.nan))
        label = (numbers_with_nan(table.column(task.target)) if task.target in names
                 else np.full(n, np.nan))
    groups: dict[str, np.ndarray] = {}
    if task.type == TaskType.BINARY:
        per_attribute = {a.column: (a.codes(table.column(a.column)) if a.column in names
                                    else np.full(n, len(a.labels) - 1)) for a in task.attributes}
        for grouping in task.groupings():
            code = np.zeros(n, dtype=np.int64)
            for c in grouping:
                code = code * len(task.attribute(c).labels) + per_attribute[c]
            groups[fairness_key(grouping)] = code
    expected = task.loss_model.predict(table) if task.loss_model is not None else None
    score_bin = score_bin.astype(np.int64)
    positive = (task.label_model.predict(table, score_bin, pred)
                if task.label_model is not None else None)
    class_bin = class_p = None
    if task.class_calibration is not None and task.class_probas:
        raw = class_scores(table, task.class_probas, k)
        class_bin, class_p = task.class_calibration.bins(raw), task.class_calibration.predict(raw)
    return RowCodes(score_bin, score, pred, label, groups, expected, positive, class_bin,
                    class_p)


def tally(codes: RowCodes, task: Task) -> dict[str, np.ndarray]:
    """Sum the rows' codes into the task's tallies (see :func:`tally_shapes`)."""
    out: dict[str, np.ndarray] = {}
    shapes = tally_shapes(task)
    if PERFORMANCE in shapes:
        shape = shapes[PERFORMANCE]
        flat = np.ravel_multi_index((codes.score_bin, codes.pred, codes.label), shape)
        out[PERFORMANCE] = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)
    if PERFORMANCE_ESTIMATE in shapes and codes.expected_positive is not None:
        shape = shapes[PERFORMANCE_ESTIMATE]
        ok = codes.pred <= 1
        flat = codes.score_bin[ok] * 2 + codes.pred[ok]
        out[PERFORMANCE_ESTIMATE] = np.bincount(
            flat, weights=codes.expected_positive[ok], minlength=shape[0] * 2).reshape(shape)
    if SCORES in shapes:
        positive = len(task.classes) - 1
        ok = (codes.label <= 1) & np.isfinite(codes.score)
        p = np.clip(codes.score[ok], 1e-15, 1 - 1e-15)
        y = (codes.label[ok] == positive).astype(float)
        logloss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        out[SCORES] = np.array([ok.sum(), logloss.sum(), np.square(p - y).sum()])
    for key, shape in shapes.items():
        if key.startswith("fairness:"):
            positive = len(task.classes) - 1
            pred = (codes.pred == positive).astype(np.int64)
            label = np.where(codes.label == positive, 1, np.where(codes.label == 0, 0, 2))
            flat = np.ravel_multi_index((codes.groups[key], pred, label), shape)
            out[key] = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)
    if MULTICLASS_ESTIMATE in shapes and codes.class_p is not None:
        out.update(_multiclass_tallies(codes, shapes))
    if REGRESSION in shapes:
        ok = np.isfinite(codes.pred) & np.isfinite(codes.label)
        y, e = codes.label[ok], codes.pred[ok] - codes.label[ok]
        nonzero = y != 0
        out[REGRESSION] = np.array([
            ok.sum(), np.abs(e).sum(), np.square(e).sum(),
            np.abs(e[nonzero] / y[nonzero]).sum(), nonzero.sum(), y.sum(), np.square(y).sum(),
            np.isfinite(codes.label).sum(),
        ])
    if REGRESSION_ESTIMATE in shapes and codes.expected_error is not None:
        ok = np.isfinite(codes.pred)
        expected = codes.expected_error[ok]
        out[REGRESSION_ESTIMATE] = np.array([ok.sum(), *expected.sum(axis=0)], dtype=float)
    return out


def _multiclass_tallies(codes: RowCodes, shapes: dict[str, tuple[int, ...]]
                        ) -> dict[str, np.ndarray]:
    """The :data:`MULTICLASS_ESTIMATE` and :data:`MULTICLASS_SCORES` tallies of the rows
    with scores."""
    assert codes.class_p is not None and codes.class_bin is not None
    k1, width = shapes[MULTICLASS_ESTIMATE]
    k = k1 - 1
    ok = np.isfinite(codes.class_p).all(axis=1)
    p, pred = codes.class_p[ok], np.minimum(codes.pred[ok], k)
    per_row = np.concatenate([np.ones((p.shape[0], 1)), p,
                              (p[:, :, None] * p[:, None, :]).reshape(-1, k * k)], axis=1)
    estimate = np.zeros((k1, width))
    np.add.at(estimate, pred, per_row)
    _, bins, _ = shapes[MULTICLASS_SCORES]
    label = codes.label[ok]
    labeled = (label < k).astype(float)
    scores = np.zeros((k, bins, 4))
    for c in range(k):
        at = codes.class_bin[ok, c]
        for j, w in enumerate((None, p[:, c], labeled, labeled * (label == c))):
            scores[c, :, j] = np.bincount(at, weights=w, minlength=bins)
    return {MULTICLASS_ESTIMATE: estimate, MULTICLASS_SCORES: scores}


#: The regression tally: rows with a label and a prediction (``n``) and their error sums,
#: then every row with a label (``labels``, for label coverage, as for classifiers).
REGRESSION_FIELDS = ("n", "abs", "sq", "ape", "n_ape", "y", "y2", "labels")


def upgrade_tally(key: str, values: np.ndarray) -> np.ndarray:
    """A tally as stored by an earlier version, in today's layout: a regression tally
    without ``labels`` takes ``n`` (what label coverage counted then)."""
    if key == REGRESSION and values.shape == (len(REGRESSION_FIELDS) - 1,):
        return np.append(values, values[0])
    return values
