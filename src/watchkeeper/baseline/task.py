"""The model's task (binary, multiclass, regression): its columns, classes, score bins and
sensitive attributes, inferred from the reference, and the per-row codes (:class:`RowCodes`)
that its label and loss models learn from. The joint tallies built on them are in
profiles/task.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.binning import MAX_CODE_LEVELS, plan_numeric
from watchkeeper.baseline.estimators import LabelModel, LossModel
from watchkeeper.baseline.multiclass import (
    ClassCalibration,
    infer_class_scores,
    match_class_scores,
)
from watchkeeper.errors import SuiteError
from watchkeeper.io.values import (
    category_counts,
    label_codes,
    numbers,
    numbers_with_nan,
    type_class,
    whole_levels,
)

#: Quantile bins of the score: fine enough for ROC-AUC within 0.001–0.005 of the exact
#: value, small enough to keep a window's tally a few thousand integers.
SCORE_BINS = 1000
#: Bands for a numeric sensitive attribute such as age (quantiles of the reference).
SENSITIVE_BANDS = 5
_POSITIVE_NAMES = ("1", "true", "yes", "y", "positive", "pos", ">50k", "employed")


class TaskType(StrEnum):
    """What the model predicts; its value is the suite file's ``task.type``."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


@dataclass
class Attribute:
    """A sensitive attribute's groups: its levels, or bands for a numeric column."""

    column: str
    levels: list[str] | None = None
    bands: list[float] | None = None  # interior cut points: [a, b) bands, open ends

    @property
    def labels(self) -> list[str]:
        if self.bands is not None:
            cuts = [_fmt(b) for b in self.bands]
            return ([f"<{cuts[0]}"] + [f"{a}-{b}" for a, b in itertools.pairwise(cuts)]
                    + [f">={cuts[-1]}"])
        return [*(self.levels or []), "other"]

    def codes(self, column: pa.ChunkedArray) -> np.ndarray:
        """Group index per row; missing values go to the last group ("other")."""
        if self.bands is not None:
            values = numbers_with_nan(column)
            out = np.searchsorted(np.asarray(self.bands), values, side="right")
            out[~np.isfinite(values)] = len(self.bands)  # counted with the top band
            return out.astype(np.int64)
        return label_codes(column, self.levels or [])


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


@dataclass
class Task:
    """What the model predicts, which columns carry it, and how its tallies are laid out."""

    type: TaskType
    target: str | None = None
    prediction: str | None = None
    proba: str | None = None
    id: str | None = None
    classes: list[str] = field(default_factory=list)  # binary: [negative, positive]
    #: The prediction column's own spelling of each class, when it differs from the
    #: target's (a 0/1 prediction of a good/bad target): parallel to ``classes``.
    prediction_labels: list[str] | None = None
    score_edges: list[float] | None = None
    attributes: list[Attribute] = field(default_factory=list)
    intersections: list[list[str]] = field(default_factory=list)
    loss_model: LossModel | None = None  # regression: expected error without labels
    label_model: LabelModel | None = None  # binary with scores: P(positive) per row
    #: Multiclass: the score column per class (parallel to ``classes``), or one list
    #: column holding every class's score in class order.
    class_probas: list[str] | None = None
    #: Multiclass with scores and labels: P(class | score), one-vs-rest on the reference.
    class_calibration: ClassCalibration | None = None
    #: How init read the task (positive class, encodings), for its summary; not saved.
    notes: list[str] = field(default_factory=list, compare=False, repr=False)
    #: Why init estimates no performance for this multiclass task (kept in the suite).
    estimation_skipped: str | None = None

    def __post_init__(self) -> None:
        self.type = TaskType(self.type)  # also when given as its string ("binary")

    @property
    def positive(self) -> str | None:
        """The positive class of a binary task (the last of ``classes``)."""
        return self.classes[-1] if self.type == TaskType.BINARY else None

    @property
    def classification(self) -> bool:
        return self.type in (TaskType.BINARY, TaskType.MULTICLASS)

    @property
    def n_score_bins(self) -> int:
        return len(self.score_edges) + 1 if self.score_edges else 1

    def groupings(self) -> list[list[str]]:
        """Every grouping monitored for fairness: each attribute, then each intersection."""
        return [[a.column] for a in self.attributes] + self.intersections

    def attribute(self, column: str) -> Attribute:
        return next(a for a in self.attributes if a.column == column)

    def group_labels(self, grouping: list[str]) -> list[str]:
        parts = [[f"{c}={lab}" for lab in self.attribute(c).labels] for c in grouping]
        return [" & ".join(p) for p in itertools.product(*parts)]

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.value}
        for key in ("target", "prediction", "proba", "id"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.classes:
            out["classes"] = self.classes
        if self.prediction_labels is not None:
            out["prediction_labels"] = self.prediction_labels
        if self.score_edges is not None:
            out["score_edges"] = self.score_edges
        if self.attributes:
            out["sensitive"] = {
                a.column: ({"bands": a.bands} if a.bands is not None else {"levels": a.levels})
                for a in self.attributes
            }
        if self.intersections:
            out["intersections"] = self.intersections
        if self.loss_model is not None:
            out["loss_model"] = self.loss_model.to_dict()
        if self.label_model is not None:
            out["label_model"] = self.label_model.to_dict()
        if self.class_probas is not None:
            out["class_probas"] = self.class_probas
        if self.class_calibration is not None:
            out["class_calibration"] = self.class_calibration.to_dict()
        if self.estimation_skipped is not None:
            out["estimation_skipped"] = self.estimation_skipped
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "task") -> Task:
        kind = d.get("type")
        if kind not in {t.value for t in TaskType}:
            raise SuiteError(f"{where}.type",
                             f"must be binary, multiclass or regression, got {kind!r}")
        attributes = [
            Attribute(str(c), levels=[str(x) for x in spec["levels"]] if "levels" in spec else None,
                      bands=[float(x) for x in spec["bands"]] if "bands" in spec else None)
            for c, spec in (d.get("sensitive") or {}).items()
        ]
        task = cls(
            type=TaskType(kind),
            target=d.get("target"),
            prediction=d.get("prediction"),
            proba=d.get("proba"),
            id=d.get("id"),
            classes=[str(c) for c in d.get("classes") or []],
            prediction_labels=([str(c) for c in d["prediction_labels"]]
                               if d.get("prediction_labels") is not None else None),
            score_edges=[float(e) for e in d["score_edges"]] if d.get("score_edges") else None,
            attributes=attributes,
            intersections=[list(map(str, pair)) for pair in d.get("intersections") or []],
            loss_model=_model(LossModel, d, "loss_model", where),
            label_model=_model(LabelModel, d, "label_model", where),
            class_probas=([str(c) for c in d["class_probas"]]
                          if d.get("class_probas") is not None else None),
            class_calibration=_model(ClassCalibration, d, "class_calibration", where),
            estimation_skipped=(str(d["estimation_skipped"])
                                if d.get("estimation_skipped") is not None else None),
        )
        if task.type == TaskType.BINARY and len(task.classes) != 2:
            raise SuiteError(f"{where}.classes", "a binary task needs exactly two classes")
        if task.prediction_labels is not None and (
                len(task.prediction_labels) != len(task.classes)
                or len(set(task.prediction_labels)) != len(task.classes)):
            raise SuiteError(f"{where}.prediction_labels",
                             "needs one distinct prediction value per class")
        if task.class_probas is not None and len(task.class_probas) not in (
                1, len(task.classes)):
            raise SuiteError(f"{where}.class_probas", "needs one score column per class, or "
                             "one list column")
        if task.class_calibration is not None and (
                len(task.class_calibration.edges) != len(task.classes)
                or task.class_probas is None):
            raise SuiteError(f"{where}.class_calibration",
                             "needs class_probas and one calibration per class")
        known = {a.column for a in attributes}
        for i, pair in enumerate(task.intersections):
            if not set(pair) <= known:
                raise SuiteError(f"{where}.intersections[{i}]", "names a column not in sensitive")
        return task

def _model(cls: Any, d: dict[str, Any], key: str, where: str) -> Any:
    """A stored loss or label model, or None; a malformed one is a SuiteError naming it."""
    if not d.get(key):
        return None
    try:
        return cls.from_dict(d[key])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SuiteError(f"{where}.{key}", f"malformed ({exc})") from None


@dataclass
class RowCodes:
    """Per-row codes of a batch: what the tallies are built from and label joins need."""

    score_bin: np.ndarray
    score: np.ndarray
    pred: np.ndarray  # class index (len(classes) = other/missing) or the predicted value
    label: np.ndarray  # class index, len(classes) other, len(classes)+1 unlabeled; or y
    groups: dict[str, np.ndarray]
    expected_error: np.ndarray | None = None  # regression: (rows, 2 or 3), the loss model's
    expected_positive: np.ndarray | None = None  # binary: P(positive) from the label model
    class_bin: np.ndarray | None = None  # multiclass: (rows, k) score bin per class, -1 none
    class_p: np.ndarray | None = None  # multiclass: (rows, k) calibrated P(class), NaN none

    def take(self, rows: np.ndarray) -> RowCodes:
        return RowCodes(self.score_bin[rows], self.score[rows], self.pred[rows],
                        self.label[rows], {k: v[rows] for k, v in self.groups.items()},
                        None if self.expected_error is None else self.expected_error[rows],
                        None if self.expected_positive is None else self.expected_positive[rows],
                        None if self.class_bin is None else self.class_bin[rows],
                        None if self.class_p is None else self.class_p[rows])


def infer_task(
    table: pa.Table,
    *,
    target: str | None,
    prediction: str | None,
    proba: str | None,
    id: str | None,
    sensitive: list[str],
    positive: str | None = None,
    allow_inverted_score: bool = False,
    probas: list[str] | None = None,
) -> Task | None:
    """Infer the task from the target (or prediction) column; None without either.

    Target, prediction and score are read against each other: a prediction spelled
    differently from the target (0/1 for good/bad) is mapped to the target's labels when
    the score or the agreement with the target says which is which, else it is an error;
    a binary task's positive class is the one the score ranks highest (see
    :func:`choose_positive`); a multiclass task's per-class scores are the ``probas``
    columns (every score column by default) named for its classes, or one list column
    (see :func:`~watchkeeper.baseline.multiclass.match_class_scores`). What was decided,
    and why, is in ``Task.notes``."""
    basis = target or prediction
    if basis is None:
        return None
    kinds = {c: _is_categorical(table.column(c)) for c in (target, prediction) if c}
    prediction_labels: list[str] | None = None
    notes: list[str] = []
    if any(kinds.values()):
        labels = {c: sorted(category_counts(table.column(c))[0], key=_class_order)
                  for c in kinds}
        if target and prediction and labels[target] and labels[prediction] and not (
                set(labels[target]) & set(labels[prediction])):
            classes = labels[target]
            prediction_labels, how = match_encoding(table, target, prediction, proba,
                                                    classes, labels[prediction])
            notes.append(f"prediction {prediction!r} read as the target's labels: "
                         + ", ".join(f"{p} → {c}" for p, c in
                                     zip(prediction_labels, classes, strict=True))
                         + f" ({how})")
        else:
            classes = sorted(set().union(*labels.values()), key=_class_order)
        if len(classes) < 2:
            raise SuiteError("target" if basis == target else "prediction",
                             f"{basis!r} has fewer than two classes in the reference; name a "
                             "column with at least two")
        task_type = TaskType.BINARY if len(classes) == 2 else TaskType.MULTICLASS
        if task_type == TaskType.BINARY:
            pos, why = choose_positive(table, target, proba, classes, positive,
                                       allow_inverted_score,
                                       prediction if prediction_labels is None else None)
            notes.insert(0, f"positive class {pos!r} ({why})")
            if prediction_labels is not None and pos != classes[-1]:
                prediction_labels.reverse()
            classes = [c for c in classes if c != pos] + [pos]
    else:
        task_type, classes = TaskType.REGRESSION, []
    task = Task(task_type, target=target, prediction=prediction, proba=proba, id=id,
                classes=classes, prediction_labels=prediction_labels, notes=notes)
    if proba and task_type == TaskType.BINARY:

        finite = numbers(table.column(proba)).finite
        if finite.size:
            task.score_edges = plan_numeric(finite, SCORE_BINS)
    candidates = [c for c in (probas if probas is not None else [proba] if proba else [])
                  if c in table.column_names]
    if task_type == TaskType.MULTICLASS and candidates:
        task.class_probas, how = match_class_scores(table, candidates, classes)
        notes.append(f"class scores: {how}")
    elif task_type == TaskType.MULTICLASS:  # none named: one list column that fits
        others = [c for c in table.column_names if c not in (target, prediction, id)]
        inferred, how = infer_class_scores(table, others, len(classes))
        if inferred is not None:
            task.proba, task.class_probas = inferred, [inferred]
        if how:
            notes.append(f"class scores: {how}")
    if task_type == TaskType.BINARY:
        task.attributes = [_attribute(table.column(c), c) for c in sensitive]
        task.intersections = [list(p) for p in itertools.combinations(sensitive, 2)]
    return task


def rank_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC of ``score`` for the rows where ``positive`` is true (Mann–Whitney, ties
    counted half); NaN without rows of both kinds."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _scored_labels(table: pa.Table, column: str, proba: str | None,
                   levels: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Scores and class codes (index in ``levels``) of the rows that have both."""
    if not proba or proba not in table.column_names:
        return None
    score = numbers_with_nan(table.column(proba))
    codes = label_codes(table.column(column), levels)
    ok = np.isfinite(score) & (codes < len(levels))
    return score[ok], codes[ok]


def choose_positive(table: pa.Table, target: str | None, proba: str | None,
                    classes: list[str], given: str | None,
                    allow_inverted_score: bool = False,
                    prediction: str | None = None) -> tuple[str, str]:
    """The positive class of a binary task, and why: the class ``given``, else the one the
    score ranks highest on the labeled reference (its ROC-AUC above 0.5: the score is
    P(that class)) or, without labels, the predicted class the score ranks highest, else
    one named like a positive class (1, yes, true…), else the last. A given class the score
    ranks lowest (ROC-AUC below 0.5) is an error unless ``allow_inverted_score``: every
    estimate built on that score would be meaningless."""
    if given is not None and given not in classes:
        raise SuiteError("positive_class", f"{given!r} is not one of the classes {classes}; "
                         "give one of them")
    auc, basis = float("nan"), "reference ROC-AUC"  # of classes[1]
    for column, name in ((target, "reference ROC-AUC"),
                         (prediction, "ROC-AUC against the predicted class")):
        scored = _scored_labels(table, column, proba, classes) if column else None
        if scored is not None and np.isfinite(rank_auc(scored[0], scored[1] == 1)):
            auc, basis = rank_auc(scored[0], scored[1] == 1), name
            break
    if given is not None:
        given_auc = auc if given == classes[1] else 1.0 - auc
        if given_auc < 0.5 and not allow_inverted_score:
            other = classes[0] if given == classes[1] else classes[1]
            raise SuiteError(
                "positive_class",
                f"the score {proba!r} ranks {given!r} lowest ({basis} {given_auc:.2f} < 0.5): "
                f"it is P({other!r}); make {other!r} the positive class, or pass "
                "allow_inverted_score=True to keep it")
        return given, "given" + (f"; {basis} {given_auc:.2f}" if np.isfinite(given_auc) else "")
    if np.isfinite(auc) and auc != 0.5:
        pos = classes[1] if auc > 0.5 else classes[0]
        return pos, f"the score {proba!r} ranks it highest: {basis} {max(auc, 1 - auc):.2f}"
    named = next((c for c in classes if c.lower() in _POSITIVE_NAMES), None)
    if named is not None:
        return named, "named like a positive class; no scores to tell"
    return classes[-1], "the last label in order; no scores to tell"


def match_encoding(table: pa.Table, target: str, prediction: str, proba: str | None,
                   classes: list[str], values: list[str]) -> tuple[list[str], str]:
    """The prediction value standing for each of the target's two ``classes`` when the two
    columns share no value, and how it was told: by the score (the prediction value with
    the higher scores stands for the label with the higher scores) and by agreement with
    the target on the reference rows (better than chance one way round). Each is used
    when it is clear; both must agree; with neither it is a one-line error naming the
    values."""
    problem = (f"prediction {prediction!r} values {values} share none of the target "
               f"{target!r} labels {classes}")
    if len(classes) != 2 or len(values) != 2:
        raise SuiteError("prediction", f"{problem}; recode the prediction to the target's "
                         "labels")
    votes: dict[str, bool] = {}  # how → values[1] stands for classes[1]
    pred_scored = _scored_labels(table, prediction, proba, values)
    label_scored = _scored_labels(table, target, proba, classes)
    if pred_scored is not None and label_scored is not None:
        by_pred = rank_auc(pred_scored[0], pred_scored[1] == 1)
        by_label = rank_auc(label_scored[0], label_scored[1] == 1)
        if abs(by_pred - 0.5) > 0.05 and abs(by_label - 0.5) > 0.05:
            votes["by the score"] = (by_pred > 0.5) == (by_label > 0.5)
    pred = label_codes(table.column(prediction), values)
    label = label_codes(table.column(target), classes)
    both = (pred < 2) & (label < 2)
    n, same = int(both.sum()), int((pred[both] == label[both]).sum())
    if n and abs(2 * same - n) > 3 * np.sqrt(n):
        votes["by agreement with the target"] = 2 * same > n
    if not votes:
        raise SuiteError("prediction", f"{problem}, and neither the score nor agreement "
                         "with the target tells which is which; recode one of them")
    if len(set(votes.values())) > 1:
        raise SuiteError("prediction", f"{problem}, and the score and agreement with the "
                         "target map them opposite ways; recode one of them")
    straight = next(iter(votes.values()))
    return (list(values) if straight else list(reversed(values))), " and ".join(votes)


def _class_order(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _is_categorical(column: pa.ChunkedArray) -> bool:

    cls = type_class(column.type)
    if cls in ("string", "boolean"):
        return True
    if cls != "numeric":
        return False
    finite = numbers(column).finite
    levels = whole_levels(finite) if finite.size else None
    return levels is not None and levels.size <= MAX_CODE_LEVELS


def _attribute(column: pa.ChunkedArray, name: str) -> Attribute:

    if type_class(column.type) == "numeric" and not _is_categorical(column):
        finite = numbers(column).finite
        qs = np.quantile(finite, np.linspace(0, 1, SENSITIVE_BANDS + 1)[1:-1])
        if np.all(np.mod(finite, 1.0) == 0.0):
            qs = np.round(qs)
        return Attribute(name, bands=[float(q) for q in np.unique(qs)])
    counts, _ = category_counts(column)
    levels = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:50]
    return Attribute(name, levels=levels)
