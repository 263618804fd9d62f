"""A multiclass classifier's per-class scores: which columns hold them, and their
calibration on the labeled reference (one-vs-rest, isotonic over quantile bins of each
class's score, then each row renormalised to sum to one).

The calibrated probabilities are what confidence-based estimation sums into a window's
expected confusion matrix (see monitors/estimate_multiclass.py); the score bins are what
its one-vs-rest ROC-AUC is counted on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchkeeper.io.values import numbers_with_nan, type_class
from watchkeeper.stats.metrics import calibrate_bins, calibration_test

#: Quantile bins of each class's score (calibration steps and ROC-AUC histograms).
CLASS_BINS = 50
#: Scores are used as they are when a calibration test on the reference cannot reject them
#: at this level (as for a binary classifier, see estimators.base_calibration).
CALIBRATION_TEST_ALPHA = 0.05
#: ``method`` of a calibration that keeps the scores as they are (renormalised).
AS_IS = "as_is"
ISOTONIC = "isotonic"


def is_list_column(column: pa.ChunkedArray) -> bool:
    """Whether a column holds one list of numbers per row (all classes' scores at once)."""
    return pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or \
        pa.types.is_fixed_size_list(column.type)


def match_class_scores(table: pa.Table, candidates: list[str],
                       classes: list[str]) -> tuple[list[str] | None, str]:
    """The score columns of a multiclass task, parallel to ``classes``, and how they were
    found: one list column with a score per class (in the order of ``classes``), or one
    column per class whose name ends with the class (``proba_<class>``,
    ``y_pred_proba_<class>``). None, with the reason, when neither fits."""
    lists = [c for c in candidates if is_list_column(table.column(c))]
    if len(lists) == 1:
        lengths = pc.list_value_length(table.column(lists[0])).to_numpy(zero_copy_only=False)
        seen: list[int] = sorted({int(x) for x in lengths[np.isfinite(lengths.astype(float))]})
        if len(seen) == 1 and int(seen[0]) == len(classes):
            return lists, f"list column {lists[0]!r}: one score per class, in class order"
        return None, (f"list column {lists[0]!r} must hold {len(classes)} scores per row "
                      f"(one per class {classes}), found lengths {seen[:5]}")
    numeric = {c.lower(): c for c in candidates if type_class(table.column(c).type) == "numeric"}
    # a prefix that names every class: proba_ + each class (never_married must not be taken
    # for married: the prefix is shared by all of them)
    prefixes = sorted({name[:-len(cls)] for name in numeric for cls in classes
                       if name.endswith(cls.lower()) and len(name) > len(cls)}, key=len)
    for prefix in prefixes:
        found = [numeric.get(prefix + cls.lower()) for cls in classes]
        if all(found):
            return [str(c) for c in found], "one score column per class: " + ", ".join(
                f"{c} → {n}" for c, n in zip(classes, found, strict=True))
    covered = {cls for cls in classes if any(n.endswith(cls.lower()) for n in numeric)}
    missing = [c for c in classes if c not in covered] or classes
    return None, ("no score column per class for " + ", ".join(map(repr, missing))
                  + "; name them proba_<class> (or give one list column of scores in "
                    "class order) to estimate performance without labels")


#: An inferred list column of class scores: rows whose scores sum to 1 within this…
SUM_TOLERANCE = 1e-3
#: …at least this share of the rows with a list.
SUM_SHARE = 0.99


def infer_class_scores(table: pa.Table, candidates: list[str], k: int
                       ) -> tuple[str | None, str]:
    """The list column among ``candidates`` that holds a multiclass classifier's scores
    when none is named: floats in [0, 1], ``k`` per row (as many as classes) summing to 1
    (within ``SUM_TOLERANCE`` on ``SUM_SHARE`` of the rows). The column and how it was
    found; None when no column, or more than one, fits (with the reason, or "")."""
    fits = [c for c in candidates if _looks_like_class_scores(table.column(c), k)]
    if len(fits) == 1:
        return fits[0], (f"list column {fits[0]!r} inferred: {k} scores in [0, 1] summing to "
                         "1 per row, one per class, taken in class order (name it with "
                         "--proba to say so)")
    if len(fits) > 1:
        return None, (f"{len(fits)} list columns could hold the class scores "
                      f"({', '.join(map(repr, fits))}): name one with --proba")
    return None, ""


def _looks_like_class_scores(column: pa.ChunkedArray, k: int) -> bool:
    if not is_list_column(column) or not pa.types.is_floating(column.type.value_type):
        return False
    valid = column.drop_null()
    if len(valid) == 0:
        return False
    lengths = pc.list_value_length(valid).to_numpy(zero_copy_only=False)
    if not np.all(lengths == k):
        return False
    values = np.asarray(pc.list_flatten(valid).to_numpy(zero_copy_only=False), dtype=float)
    if values.size != len(valid) * k:  # a missing score inside a list
        return False
    scores = values.reshape(-1, k)
    finite = np.isfinite(scores).all(axis=1)
    in_range = finite & (scores >= 0.0).all(axis=1) & (scores <= 1.0).all(axis=1)
    sums_one = in_range & (np.abs(scores.sum(axis=1) - 1.0) <= SUM_TOLERANCE)
    return bool(sums_one.mean() >= SUM_SHARE)


def class_scores(table: pa.Table, columns: list[str], k: int) -> np.ndarray:
    """Scores (rows × k) from the task's score columns; a row with any score missing,
    non-finite or outside [0, 1] (or a list of the wrong length) is NaN throughout."""
    n = table.num_rows
    out = np.full((n, k), np.nan)
    names = set(table.column_names)
    if len(columns) == 1 and columns[0] in names and is_list_column(table.column(columns[0])):
        column = table.column(columns[0])
        if pa.types.is_fixed_size_list(column.type):
            column = column.cast(pa.list_(column.type.value_type))
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        ok = lengths == k
        if ok.any():
            flat = numbers_with_nan(pa.chunked_array([pc.list_flatten(
                pc.filter(column, pa.array(ok)))]))
            if flat.size == int(ok.sum()) * k:
                out[ok] = flat.reshape(-1, k)
    elif len(columns) == k and all(c in names for c in columns):
        out = np.column_stack([numbers_with_nan(table.column(c)) for c in columns])
    bad = ~np.all(np.isfinite(out) & (out >= 0.0) & (out <= 1.0), axis=1)
    out[bad] = np.nan
    return out


@dataclass
class ClassCalibration:
    """P(class | its score) per class, fitted one-vs-rest on the labeled reference.

    ``edges[c]`` are the interior cut points of class c's score bins (reference
    quantiles); ``values[c]`` the calibrated probability per bin (isotonic), or empty when
    the scores are kept as they are (``method`` ``as_is``: a calibration test on the
    reference does not reject them). Each row's calibrated probabilities are renormalised
    to sum to one.

    >>> rng = np.random.default_rng(0)
    >>> p = rng.dirichlet([1, 1, 1], 3000)
    >>> y = np.array([rng.choice(3, p=row) for row in p])
    >>> cal = ClassCalibration.fit(p, y)
    >>> cal.method, np.allclose(cal.predict(p[:2]).sum(axis=1), 1.0)
    ('as_is', True)
    """

    edges: list[list[float]]
    values: list[list[float]]
    method: str = ISOTONIC
    test: dict[str, Any] | None = None

    @property
    def n_bins(self) -> int:
        """Bins of the widest class (the width of the per-class score tallies)."""
        return max((len(e) + 1 for e in self.edges), default=1)

    def bins(self, scores: np.ndarray) -> np.ndarray:
        """Score bin per row and class (rows × k); −1 where the row has no scores."""
        out = np.full(scores.shape, -1, dtype=np.int64)
        ok = np.isfinite(scores).all(axis=1)
        for c, edges in enumerate(self.edges):
            out[ok, c] = np.searchsorted(np.asarray(edges, dtype=float), scores[ok, c],
                                         side="right")
        return out

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (rows × k), each row summing to one; NaN rows stay NaN."""
        if self.method == AS_IS:
            raw = np.asarray(scores, dtype=float)
        else:
            codes = self.bins(scores)
            raw = np.full(scores.shape, np.nan)
            ok = codes[:, 0] >= 0
            for c, values in enumerate(self.values):
                raw[ok, c] = np.asarray(values, dtype=float)[codes[ok, c]]
        total = raw.sum(axis=1, keepdims=True)
        k = raw.shape[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(total > 0, raw / np.where(total > 0, total, 1.0), 1.0 / k)
        out[~np.isfinite(raw).all(axis=1)] = np.nan
        return out

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray) -> ClassCalibration:
        """Fit on the rows with scores and a known label (``labels`` a class index; other
        values, e.g. unlabeled, are left out)."""
        k = scores.shape[1]
        ok = np.isfinite(scores).all(axis=1) & (labels >= 0) & (labels < k)
        s, y = scores[ok], labels[ok]
        edges = []
        for c in range(k):
            qs = np.quantile(s[:, c], np.linspace(0, 1, CLASS_BINS + 1)[1:-1]) if s.size else []
            edges.append([float(q) for q in np.unique(np.round(qs, 9))])
        found = cls(edges, [])
        width = found.n_bins
        codes = found.bins(s)
        shape = (width, k)

        def per_bin(weights: np.ndarray | None = None) -> np.ndarray:
            flat = codes * k + np.arange(k)  # bin × class cells
            return np.bincount(flat.ravel(), weights=None if weights is None else
                               weights.ravel(), minlength=width * k).reshape(shape)

        totals = per_bin()
        positives = per_bin((y[:, None] == np.arange(k)).astype(float))
        values = [calibrate_bins(positives[:len(e) + 1, c], totals[:len(e) + 1, c])
                  for c, e in enumerate(edges)]
        test = calibration_test(positives, per_bin(s), per_bin(s * (1 - s)), totals)
        statistic = float(test["statistic"])
        found.test = {"statistic": round(statistic, 3) if np.isfinite(statistic) else None,
                      "df": int(test["df"]), "p_value": round(float(test["p_value"]), 6),
                      "alpha": CALIBRATION_TEST_ALPHA}
        if test["p_value"] >= CALIBRATION_TEST_ALPHA:
            found.method = AS_IS
        else:
            found.values = [[round(float(v), 6) for v in vs] for vs in values]
        return found

    def describe(self) -> str:
        if self.method == AS_IS:
            return ("per-class scores used as they are (the calibration test on the labeled "
                    "reference does not reject them), renormalised per row")
        return (f"one-vs-rest isotonic calibration of each class's score over {CLASS_BINS} "
                "quantile bins on the labeled reference, renormalised per row")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "edges": self.edges}
        if self.values:
            out["values"] = self.values
        if self.test is not None:
            out["test"] = dict(self.test)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassCalibration:
        method = str(d.get("method", ISOTONIC))
        if method not in (AS_IS, ISOTONIC):
            raise ValueError(f"method must be {AS_IS} or {ISOTONIC}, got {method!r}")
        edges = [[float(x) for x in e] for e in d["edges"]]
        values = [[float(x) for x in v] for v in d.get("values") or []]
        if method == ISOTONIC and (len(values) != len(edges) or any(
                len(v) != len(e) + 1 for v, e in zip(values, edges, strict=True))):
            raise ValueError("values needs one calibrated value per bin of each class")
        if any(np.any(np.diff(e) <= 0) for e in edges):
            raise ValueError("edges must increase")
        return cls(edges, values, method, d.get("test"))


#: Labeled reference rows with scores needed to calibrate (fewer: no estimation).
MIN_CALIBRATION_ROWS = 100


def fit_class_calibration(table: pa.Table, target: str, classes: list[str],
                          columns: list[str]) -> ClassCalibration | None:
    """The calibration of a multiclass task's scores on the labeled reference rows; None
    with fewer than ``MIN_CALIBRATION_ROWS`` of them."""
    from watchkeeper.io.values import label_codes

    scores = class_scores(table, columns, len(classes))
    labels = label_codes(table.column(target), classes)
    labels[np.asarray(table.column(target).is_null().to_numpy(zero_copy_only=False),
                      dtype=bool)] = len(classes)
    ok = np.isfinite(scores).all(axis=1) & (labels < len(classes))
    if ok.sum() < MIN_CALIBRATION_ROWS:
        return None
    return ClassCalibration.fit(scores, labels)


def multiclass_left_out(task: Any) -> str:
    """Why a multiclass task has no estimated performance (for init's summary; kept in the
    suite as the task's ``estimation_skipped``, so a reloaded suite says the same)."""
    if task.estimation_skipped:
        return str(task.estimation_skipped)
    if not task.class_probas:
        note = next((n for n in task.notes if n.startswith("class scores: ")), None)
        return (note.removeprefix("class scores: ") if note else
                "no score column per class (name them proba_<class>, or give one list "
                "column of scores)")
    if task.target is None:
        return "needs a labeled reference (target=) to calibrate the class scores"
    return (f"fewer than {MIN_CALIBRATION_ROWS} labeled reference rows with every class's "
            "score")
