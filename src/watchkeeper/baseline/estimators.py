"""Models fitted on the labeled reference that predict, per row, what labels will tell.

Both read a row's inputs as bins (the schema's numeric edges and categorical levels, an
unseen or missing value in a bin of its own) and are applied while profiling, so a window's
tally holds their sums before any label arrives:

- :class:`LossModel`, for a regressor: the expected absolute and squared error;
- :class:`LabelModel`, for a binary classifier with scores: P(positive) per row, the
  calibrated score corrected by the rows' inputs (see :mod:`watchkeeper.stats.boosting`).
  Confidence-based estimation sums these instead of assuming that P(label | score) stays
  as it was in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from watchkeeper.baseline.binning import plan_numeric
from watchkeeper.io.values import label_codes, numbers_with_nan
from watchkeeper.stats.boosting import ObliviousBoosting, intercept, sigmoid
from watchkeeper.stats.metrics import calibrate_bins, calibration_test, score_means

if TYPE_CHECKING:
    from watchkeeper.baseline.task import RowCodes, Task

#: Ridge penalty of the loss model, in rows: enough to keep sparse bins near the mean.
LOSS_MODEL_RIDGE = 10.0
LOSS_MODEL_ROWS = 50_000
#: Reference rows the label model learns from (a systematic sample beyond this).
LABEL_MODEL_ROWS = 100_000
#: Fewer labeled reference rows than this: no label model (the calibrated score alone).
LABEL_MODEL_MIN_ROWS = 1_000
#: The score enters the label model's trees in this many bins (quantiles of the reference).
LABEL_MODEL_SCORE_BINS = 20
PROBABILITY_GRID = 2.0 ** 20
#: The scores are used as they are unless the calibration test rejects them at this level.
CALIBRATION_TEST_ALPHA = 0.05


class CalibrationTest(TypedDict):
    """The calibration test of the reference's scores, as the suite file records it
    (``task.label_model.calibration_test``) and the performance-estimate monitor reports it."""

    statistic: float | None  # None when not finite
    df: int
    p_value: float
    alpha: float


@dataclass(frozen=True)
class BaseCalibration:
    """What :func:`base_calibration` finds: P(positive | score bin, predicted class), how
    it was obtained, and the calibration test (None if the scores cannot be probabilities)."""

    cells: np.ndarray  # (score bins, 2)
    method: str
    test: CalibrationTest | None


@dataclass
class BinnedInputs:
    """A row's inputs as integer bins: a numeric value by the edges it passes (missing in
    the last bin), a category by its level (unseen or missing after the levels, an absent
    column after that)."""

    edges: dict[str, list[float]]  # numeric inputs: interior cut points
    levels: dict[str, list[str]]  # categorical inputs

    @property
    def names(self) -> list[str]:
        return [*self.edges, *self.levels]

    def size(self, name: str) -> int:
        """Number of codes input ``name`` can take."""
        return len(self.edges[name]) + 2 if name in self.edges else len(self.levels[name]) + 2

    def _codes(self, table: pa.Table, name: str) -> np.ndarray:
        n = table.num_rows
        if name in self.edges:
            bins = len(self.edges[name]) + 1
            if name not in table.column_names:
                return np.full(n, bins)
            values = numbers_with_nan(table.column(name))
            out = np.searchsorted(np.asarray(self.edges[name]), values, side="right")
            return np.where(np.isfinite(values), out, bins)
        levels = self.levels[name]
        if name not in table.column_names:
            return np.full(n, len(levels) + 1)
        return label_codes(table.column(name), levels)  # unseen/missing: len(levels)

    @staticmethod
    def split_inputs(inputs: dict[str, Any]) -> tuple[dict[str, list[float]],
                                                      dict[str, list[str]]]:
        """``inputs`` maps column → numeric bin edges (a list, outer edges included) or
        category levels (a tuple)."""
        edges = {k: [float(x) for x in v[1:-1]] for k, v in inputs.items()
                 if isinstance(v, list)}
        levels = {k: [str(x) for x in v] for k, v in inputs.items() if isinstance(v, tuple)}
        return edges, levels


@dataclass
class LossModel(BinnedInputs):
    """Additive model of a regressor's absolute and squared error from binned inputs.

    Fitted on the labeled reference (ridge regression on one-hot bins of each feature and
    of the prediction); applied to every row of a window, its mean is the window's
    expected MAE (and, from the squared error, RMSE) before any label arrives.
    """

    intercept: list[float]  # [absolute error, squared error]
    coef: dict[str, list[list[float]]]  # per input, per bin (missing last): [abs, sq]

    def predict(self, table: pa.Table) -> np.ndarray:
        """(rows, 2) expected absolute and squared error, floored at zero."""
        out = np.tile(np.asarray(self.intercept, dtype=float), (table.num_rows, 1))
        for name, coef in self.coef.items():
            out += np.asarray(coef)[self._codes(table, name)]
        return np.maximum(out, 0.0)

    @classmethod
    def fit(cls, table: pa.Table, task: Task, inputs: dict[str, Any]) -> LossModel | None:
        """``inputs`` maps column → numeric bin edges (a list) or category levels (a tuple);
        the task has a target and a prediction."""
        target, prediction = task.target, task.prediction
        assert target is not None and prediction is not None  # the caller checks both
        y = numbers_with_nan(table.column(target))
        pred = numbers_with_nan(table.column(prediction))
        ok = np.flatnonzero(np.isfinite(y) & np.isfinite(pred))
        if ok.size < 50:
            return None
        ok = ok[:: max(1, ok.size // LOSS_MODEL_ROWS)]

        edges, levels = cls.split_inputs(inputs)
        edges[prediction] = plan_numeric(pred[np.isfinite(pred)], 10)[1:-1]
        model = cls(edges, levels, [0.0, 0.0], {})
        sub = table.take(pa.array(ok))
        names = model.names
        sizes = [model.size(n) for n in names]
        offsets = np.cumsum([0, *sizes])
        x = np.zeros((ok.size, offsets[-1]))
        for j, name in enumerate(names):
            x[np.arange(ok.size), offsets[j] + model._codes(sub, name)] = 1.0
        err = pred[ok] - y[ok]
        targets = np.column_stack([np.abs(err), np.square(err)])
        mean = targets.mean(axis=0)
        gram = x.T @ x + LOSS_MODEL_RIDGE * np.eye(x.shape[1])
        beta = np.linalg.solve(gram, x.T @ (targets - mean))
        model.intercept = [float(v) for v in mean]
        model.coef = {name: [[float(a), float(b)] for a, b in beta[offsets[j]:offsets[j + 1]]]
                      for j, name in enumerate(names)}
        return model

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges, "levels": self.levels, "intercept": self.intercept,
                "coef": {k: {"abs": [c[0] for c in v], "sq": [c[1] for c in v]}
                         for k, v in self.coef.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossModel:
        return cls(
            edges={str(k): [float(x) for x in v] for k, v in d["edges"].items()},
            levels={str(k): [str(x) for x in v] for k, v in d["levels"].items()},
            intercept=[float(x) for x in d["intercept"]],
            coef={str(k): [[float(a), float(b)] for a, b in zip(v["abs"], v["sq"], strict=True)]
                  for k, v in d["coef"].items()},
        )




def base_calibration(codes: RowCodes, n_score_bins: int) -> BaseCalibration:
    """P(positive | score bin, predicted class) from the labeled reference rows.

    The scores are kept as they are (their mean per cell) when a calibration test on the
    reference cannot reject them: isotonic calibration of calibrated scores only adds the
    noise of the reference's labels (about the sampling error of its accuracy, 0.0014 at
    70k rows). Otherwise each predicted class is calibrated isotonically over the score
    bins, so a bin that straddles the decision threshold is not averaged. Returns ``cells``
    (bins × 2), ``method`` and ``test`` (the calibration test, None if the scores cannot
    be probabilities).
    """
    ok = (codes.label <= 1) & (codes.pred <= 1)
    shape = (n_score_bins, 2)

    def per_cell(rows: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        cell = codes.score_bin[rows] * 2 + codes.pred[rows]
        return np.bincount(cell, weights=weights, minlength=shape[0] * 2).reshape(shape)

    positive = (codes.label == 1).astype(float)
    cells = np.column_stack([calibrate_bins(a, b) for a, b in zip(
        per_cell(ok, positive[ok]).T, per_cell(ok).T, strict=True)])
    method = "isotonic calibration of score bins per predicted class on the labeled reference"
    scored = ok & np.isfinite(codes.score)
    score = codes.score[scored]
    test: CalibrationTest | None = None
    if score.size and score.min() >= 0.0 and score.max() <= 1.0:
        rows, sums = per_cell(scored), per_cell(scored, score)
        found = calibration_test(per_cell(scored, positive[scored]), sums,
                                 per_cell(scored, score * (1 - score)), rows)
        if found["p_value"] >= CALIBRATION_TEST_ALPHA:
            cells = score_means(sums, rows)
            method = ("scores used as they are (the calibration test on the labeled reference "
                      "does not reject them): mean score per bin and predicted class")
        statistic = float(found["statistic"])  # as the suite file records it
        test = {"statistic": round(statistic, 3) if np.isfinite(statistic) else None,
                "df": int(found["df"]), "p_value": round(float(found["p_value"]), 6),
                "alpha": CALIBRATION_TEST_ALPHA}
    return BaseCalibration(np.round(cells, 6), method, test)


@dataclass
class LabelModel(BinnedInputs):
    """P(positive) per row of a binary classifier: the calibrated score, corrected by the
    row's inputs where the reference's labels show the score to be off for such rows.

    The correction is boosted on whether the prediction was *right* (its log-odds start at
    the calibrated score's), so an input that makes the model over-confident is one
    additive effect whichever class it predicts. Inputs: the binned features, the score in
    20 quantile bins, and the predicted class. With nothing to correct, no tree is kept and
    the model is the calibrated score (confidence-based estimation as usual).
    """

    base: np.ndarray  # (score bins, 2): P(positive | score bin, predicted class)
    trees: ObliviousBoosting
    method: str = ""
    test: CalibrationTest | None = None  # the calibration test, as base_calibration gives it
    #: log-odds shift per predicted class, so that on the reference the model's mean
    #: P(right) equals the calibrated score's (see ``intercept``)
    offset: list[float] = field(default_factory=lambda: [0.0, 0.0])

    def _input_codes(self, table: pa.Table, score_bin: np.ndarray,
                     pred: np.ndarray) -> list[np.ndarray]:
        coarse = score_bin * LABEL_MODEL_SCORE_BINS // self.base.shape[0]
        return [*(self._codes(table, name) for name in self.names), coarse,
                np.minimum(pred, 2)]

    def _sizes(self) -> list[int]:
        return [*(self.size(n) for n in self.names), LABEL_MODEL_SCORE_BINS, 3]

    def _base_correct(self, score_bin: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Log-odds that the prediction is right, by the calibrated score alone."""
        positive = pred == 1
        p = self.base[score_bin, positive.astype(np.int64)]
        p = np.clip(np.where(positive, p, 1.0 - p), 1e-6, 1 - 1e-6)
        return np.log(p / (1.0 - p)) + np.asarray([*self.offset, 0.0])[np.minimum(pred, 2)]

    def predict(self, table: pa.Table, score_bin: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """P(positive) per row, to 1e-6 (rows predicting neither class as class 0's)."""
        correct = self.trees.predict(self._input_codes(table, score_bin, pred),
                                     self._base_correct(score_bin, pred))
        positive = np.where(pred == 1, correct, 1.0 - correct)
        # on a grid of 2^-20, so sums are exact in float64 (up to 2^32 rows a cell) and
        # windows merge to the same bits in any order
        return np.round(positive * PROBABILITY_GRID) / PROBABILITY_GRID

    @classmethod
    def fit(cls, table: pa.Table, codes: RowCodes, task: Task, inputs: dict[str, Any],
            *, progress: bool | None = False) -> LabelModel | None:
        """Fit on the reference's labeled rows; None with fewer than 1,000 of them.
        ``progress``: a bar of the boosting rounds (None: only on a terminal)."""
        labeled = np.flatnonzero((codes.label <= 1) & (codes.pred <= 1))
        if labeled.size < LABEL_MODEL_MIN_ROWS:
            return None
        found = base_calibration(codes, task.n_score_bins)
        edges, levels = cls.split_inputs(inputs)
        model = cls(edges, levels, found.cells, ObliviousBoosting.empty(0), found.method,
                    found.test)
        rows = labeled[:: max(1, -(-labeled.size // LABEL_MODEL_ROWS))]
        sub = codes.take(rows)
        x = np.column_stack(model._input_codes(table.take(pa.array(rows)), sub.score_bin,
                                               sub.pred))
        right = (sub.label == sub.pred).astype(float)
        base = model._base_correct(sub.score_bin, sub.pred)
        with tqdm(desc="label model", unit=" trees", disable=None if progress is None
                  else not progress) as bar:
            model.trees = ObliviousBoosting.fit(x, model._sizes(), base, right,
                                                on_tree=bar.update)
        # the trees may move rows, not the mean: on the reference each predicted class keeps
        # the calibrated score's share of right predictions (not the labels' own share,
        # which would bring back their noise where the scores are kept as they are)
        margin = base + model.trees.margin(x)
        model.offset = [intercept(margin[sub.pred == k], sigmoid(base[sub.pred == k]))
                        for k in (0, 1)]
        return model

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "edges": self.edges, "levels": self.levels,
            "base": [[float(a), float(b)] for a, b in self.base], "method": self.method,
            "trees": self.trees.to_dict(), "offset": [float(v) for v in self.offset],
        }
        if self.test is not None:
            out["calibration_test"] = self.test
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelModel:
        model = cls(
            edges={str(k): [float(x) for x in v] for k, v in d["edges"].items()},
            levels={str(k): [str(x) for x in v] for k, v in d["levels"].items()},
            base=np.asarray(d["base"], dtype=float).reshape(-1, 2),
            trees=ObliviousBoosting.from_dict(d["trees"]),
            method=str(d.get("method", "")),
            offset=[float(v) for v in d.get("offset", [0.0, 0.0])],
            test=(cast(CalibrationTest, dict(d["calibration_test"]))
                  if d.get("calibration_test") else None),
        )
        model._validate()
        return model

    def inputs(self) -> dict[str, Any]:
        """The model's inputs in the form :meth:`fit` takes (edges as a list with outer
        edges, levels as a tuple), to fit it again on other rows."""
        return {**{k: [-np.inf, *v, np.inf] for k, v in self.edges.items()},
                **{k: tuple(v) for k, v in self.levels.items()}}

    def _validate(self) -> None:
        """Refuse a model that could not score rows (a hand-edited or truncated file)."""
        if self.base.ndim != 2 or self.base.shape[1] != 2 or not self.base.size:
            raise ValueError("base must be a list of [P(positive | class 0), … class 1] pairs")
        if not np.all((self.base >= 0) & (self.base <= 1)):
            raise ValueError("base holds probabilities: every value in [0, 1]")
        sizes = self._sizes()
        trees = self.trees
        if len(trees.order) != len(sizes) or any(
                len(o) != k or sorted(o.tolist()) != list(range(k))
                for o, k in zip(trees.order, sizes, strict=True)):
            raise ValueError(f"trees.order must hold a permutation of each input's {sizes} codes")
        if trees.trees and (trees.inputs.min() < 0 or trees.inputs.max() >= len(sizes)):
            raise ValueError(f"trees.inputs must name inputs 0–{len(sizes) - 1}")
        if trees.leaves.shape != (trees.trees, 2 ** trees.inputs.shape[1]):
            raise ValueError("trees.leaves do not match the number and depth of the trees")
        if not np.isfinite(trees.leaves).all():
            raise ValueError("trees.leaves must be finite")
        if len(self.offset) != 2 or not np.isfinite(self.offset).all():
            raise ValueError("offset must be two finite numbers (one per predicted class)")


def out_of_fold_positive(table: pa.Table, codes: RowCodes, task: Task,
                         folds: int = 2) -> np.ndarray:
    """P(positive) per labeled reference row from the estimator fitted without that row.

    The labeled rows are cut into ``folds`` runs in file order; each run is scored by the
    label model (or, without one, the calibration table) fitted on the other runs, so the
    estimator's error can be measured on reference rows it did not learn from, including
    the drift between runs. NaN for rows without a label or a 0/1 prediction.
    """
    labeled = np.flatnonzero((codes.label <= 1) & (codes.pred <= 1))
    out = np.full(codes.label.size, np.nan)
    inputs = task.label_model.inputs() if task.label_model is not None else None
    for part in np.array_split(labeled, folds):
        train = np.setdiff1d(labeled, part)
        fitted, scored = codes.take(train), codes.take(part)
        model = (LabelModel.fit(table.take(pa.array(train)), fitted, task, inputs)
                 if inputs is not None else None)
        if model is not None:
            out[part] = model.predict(table.take(pa.array(part)), scored.score_bin, scored.pred)
        else:
            cells = base_calibration(fitted, task.n_score_bins).cells
            out[part] = cells[scored.score_bin, scored.pred]
    return out
