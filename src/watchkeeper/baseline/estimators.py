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

from watchkeeper.baseline.binning import plan_numeric
from watchkeeper.io.display import progress_bar
from watchkeeper.io.values import label_codes, numbers_with_nan
from watchkeeper.stats.boosting import ObliviousBoosting, intercept, sigmoid
from watchkeeper.stats.metrics import calibrate_bins, calibration_test, score_means

if TYPE_CHECKING:
    from watchkeeper.baseline.task import RowCodes, Task

#: Labeled reference rows the loss model learns from (a systematic sample beyond this).
LOSS_MODEL_ROWS = 100_000
#: Depth of the loss model's oblivious trees.
LOSS_MODEL_DEPTH = 6
#: Numeric inputs (and the prediction) enter the loss model in this many quantile bins of
#: the reference (finer than the schema's: the error can change within a drift bin).
LOSS_MODEL_BINS = 255
#: A split leaves at least this many rows, and this share of the rows, on either side.
LOSS_MODEL_MIN_LEAF = 20
LOSS_MODEL_LEAVES = 300
#: Boosting rounds per error, on every reference row (LightGBM's default number).
LOSS_MODEL_TREES = 100
#: L2 penalty on a leaf's value, in rows.
LOSS_MODEL_PENALTY = 5.0
#: What the loss model estimates per row, in the order of its columns: absolute error,
#: squared error, absolute percentage error (|error| / |label|, see ``LossModel``).
LOSS_OUTPUTS = ("abs", "sq", "ape")
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

    def inputs(self) -> dict[str, Any]:
        """The model's inputs in the form a model's ``fit`` takes (edges as a list with outer
        edges, levels as a tuple), to fit a model again on other rows."""
        return {**{k: [-np.inf, *v, np.inf] for k, v in self.edges.items()},
                **{k: tuple(v) for k, v in self.levels.items()}}

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
    """A regressor's expected absolute, squared and (where defined) absolute percentage
    error per row, from its binned inputs and prediction.

    Each error is boosted on its own (oblivious trees, squared loss, see
    :class:`~watchkeeper.stats.boosting.ObliviousBoosting`) from the reference's mean,
    on the labeled reference rows; applied to every row of a window, the sums give the
    window's expected MAE, RMSE (from the squared error) and MAPE before any label arrives.
    Each target is divided by its reference mean before boosting, so the leaves' grid and
    penalty mean the same whatever the label's unit.

    MAPE is estimated only where it is defined for every row of the reference: all its
    labels non-zero and of one sign (a price, a count, a duration). Labels that cross zero
    (a temperature in °C, a standardised value) make |error| / |label| unbounded near zero,
    so ``outputs`` is then ``["abs", "sq"]`` (the realised MAPE still leaves out rows whose
    label is 0).

    A suite written before the boosted model (ridge coefficients per bin, ``coef``) still
    loads and scores rows as it did then (absolute and squared error only).
    """

    intercept: list[float]  # per output: the reference's mean
    trees: list[ObliviousBoosting] = field(default_factory=list)  # per output
    scale: list[float] = field(default_factory=list)  # per output: targets ÷ this to fit
    outputs: list[str] = field(default_factory=lambda: list(LOSS_OUTPUTS))
    #: a ridge model of an earlier version: per input, per bin (missing last): [abs, sq]
    coef: dict[str, list[list[float]]] | None = None

    @property
    def mape(self) -> bool:
        """Whether the model estimates MAPE (see the class docstring for the rule)."""
        return "ape" in self.outputs

    @property
    def width(self) -> int:
        """Columns of :meth:`predict`: abs and sq, plus ape for a boosted model (0 where
        MAPE is not defined)."""
        return 2 if self.coef is not None else 3

    def _input_codes(self, table: pa.Table) -> list[np.ndarray]:
        return [self._codes(table, name) for name in self.names]

    def predict(self, table: pa.Table) -> np.ndarray:
        """(rows, :attr:`width`) expected absolute, squared and absolute percentage error,
        floored at zero."""
        n = table.num_rows
        if self.coef is not None:
            out = np.tile(np.asarray(self.intercept[:2], dtype=float), (n, 1))
            for name, coef in self.coef.items():
                out += np.asarray(coef)[self._codes(table, name)]
            return np.maximum(out, 0.0)
        out = np.zeros((n, 3))
        codes = self._input_codes(table)
        for i, name in enumerate(self.outputs):
            column = LOSS_OUTPUTS.index(name)
            out[:, column] = self.scale[i] * (
                self.intercept[i] / self.scale[i] + self.trees[i].margin(codes))
        return np.maximum(out, 0.0)

    @classmethod
    def fit(cls, table: pa.Table, task: Task, inputs: dict[str, Any], *,
            seed: int = 0) -> LossModel | None:
        """``inputs`` maps column → numeric bin edges (a list) or category levels (a tuple);
        the task has a target and a prediction. None with fewer than 50 labeled rows."""
        target, prediction = task.target, task.prediction
        assert target is not None and prediction is not None  # the caller checks both
        y = numbers_with_nan(table.column(target))
        pred = numbers_with_nan(table.column(prediction))
        ok = np.flatnonzero(np.isfinite(y) & np.isfinite(pred))
        if ok.size < 50:
            return None
        mape = bool((y[ok] > 0).all() or (y[ok] < 0).all())
        ok = ok[:: max(1, -(-ok.size // LOSS_MODEL_ROWS))]
        edges, levels = cls.split_inputs(inputs)
        for name in [*edges, prediction]:  # the loss model's own, finer bins
            values = pred[ok] if name == prediction else (
                numbers_with_nan(table.column(name).take(pa.array(ok)))
                if name in table.column_names else np.zeros(0))
            edges[name] = plan_numeric(values[np.isfinite(values)], LOSS_MODEL_BINS)[1:-1]
        outputs = [*LOSS_OUTPUTS] if mape else list(LOSS_OUTPUTS[:2])
        model = cls(edges, levels, [], outputs=outputs)
        x = np.column_stack(model._input_codes(table.take(pa.array(ok))))
        sizes = [model.size(n) for n in model.names]
        err = pred[ok] - y[ok]
        targets = {"abs": np.abs(err), "sq": np.square(err),
                   "ape": np.abs(err) / np.maximum(np.abs(y[ok]), 1e-300)}
        for i, name in enumerate(outputs):
            value = targets[name]
            mean = float(value.mean())
            scale = mean if mean > 0 else 1.0
            model.intercept.append(mean)
            model.scale.append(scale)
            settings: dict[str, Any] = {
                "loss": "squared", "seed": seed + i, "depth": LOSS_MODEL_DEPTH,
                "ordered": [n in model.edges for n in model.names], "oblivious": False,
                "min_child": max(LOSS_MODEL_MIN_LEAF, ok.size / LOSS_MODEL_LEAVES),
                "penalty": LOSS_MODEL_PENALTY}
            # every row, a fixed number of trees (a held-out part to stop early cost rows
            # and did not help: the best round was about 100 either way)
            model.trees.append(ObliviousBoosting.fit(
                x, sizes, np.full(ok.size, mean / scale), value / scale,
                max_trees=LOSS_MODEL_TREES, holdout=0.0, **settings))
        return model

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edges": self.edges, "levels": self.levels,
                               "intercept": self.intercept}
        if self.coef is not None:
            out["coef"] = {k: {"abs": [c[0] for c in v], "sq": [c[1] for c in v]}
                           for k, v in self.coef.items()}
            return out
        out.update(outputs=self.outputs, scale=self.scale,
                   trees=[t.to_dict() for t in self.trees])
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossModel:
        edges = {str(k): [float(x) for x in v] for k, v in d["edges"].items()}
        levels = {str(k): [str(x) for x in v] for k, v in d["levels"].items()}
        intercept = [float(x) for x in d["intercept"]]
        if "trees" not in d:  # the ridge model of an earlier version
            coef = {str(k): [[float(a), float(b)] for a, b in zip(v["abs"], v["sq"],
                                                                   strict=True)]
                    for k, v in d["coef"].items()}
            model = cls(edges, levels, intercept, outputs=list(LOSS_OUTPUTS[:2]), coef=coef)
        else:
            model = cls(edges, levels, intercept,
                        [ObliviousBoosting.from_dict(t) for t in d["trees"]],
                        [float(x) for x in d["scale"]], [str(x) for x in d["outputs"]])
        model._validate()
        return model

    def _validate(self) -> None:
        """Refuse a model that could not score rows (a hand-edited or truncated file)."""
        if self.outputs not in (list(LOSS_OUTPUTS[:2]), list(LOSS_OUTPUTS)):
            raise ValueError(f"outputs must be {list(LOSS_OUTPUTS[:2])} or "
                             f"{list(LOSS_OUTPUTS)}")
        if len(self.intercept) < len(self.outputs) or not np.isfinite(self.intercept).all():
            raise ValueError("intercept must hold one finite mean per output")
        sizes = [self.size(n) for n in self.names]
        if self.coef is not None:
            for name, coef in self.coef.items():
                if name not in self.edges and name not in self.levels:
                    raise ValueError(f"coef names an input without bins: {name!r}")
                if len(coef) != self.size(name):
                    raise ValueError(f"coef[{name!r}] needs {self.size(name)} bins")
            return
        if len(self.trees) != len(self.outputs) or len(self.scale) != len(self.outputs):
            raise ValueError("trees and scale need one entry per output")
        if not all(np.isfinite(s) and s > 0 for s in self.scale):
            raise ValueError("scale must be positive")
        for trees in self.trees:
            if len(trees.order) != len(sizes) or any(
                    len(o) != k for o, k in zip(trees.order, sizes, strict=True)):
                raise ValueError(f"trees.order must hold one rank per code of each input "
                                 f"({sizes})")
            if trees.trees and (trees.inputs.min() < 0 or trees.inputs.max() >= len(sizes)):
                raise ValueError(f"trees.inputs must name inputs 0–{len(sizes) - 1}")
            if not np.isfinite(trees.leaves).all():
                raise ValueError("trees.leaves must be finite")


def out_of_fold_loss(table: pa.Table, task: Task, folds: int = 2) -> np.ndarray:
    """(rows, 3) expected errors per reference row from a loss model fitted without it.

    As :func:`out_of_fold_positive`: the labeled rows are cut into ``folds`` runs in file
    order and each run is scored by a model fitted on the others, so the estimator's error
    is measured on rows it did not learn from (including the drift between runs). NaN for
    rows without a label and a prediction, or when a fold has too few rows to fit."""
    assert task.target is not None and task.prediction is not None and task.loss_model
    y = numbers_with_nan(table.column(task.target))
    pred = numbers_with_nan(table.column(task.prediction))
    labeled = np.flatnonzero(np.isfinite(y) & np.isfinite(pred))
    out = np.full((table.num_rows, 3), np.nan)
    inputs = task.loss_model.inputs()
    inputs.pop(task.prediction, None)
    for part in np.array_split(labeled, folds):
        model = LossModel.fit(table.take(pa.array(np.setdiff1d(labeled, part))), task, inputs)
        if model is not None:
            found = model.predict(table.take(pa.array(part)))
            out[part, :found.shape[1]] = found
    return out


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
        with progress_bar(desc="label model", unit=" trees", progress=progress) as bar:
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
