"""Security signals: what normal inputs look like, to find out-of-distribution rows.

Learned at ``init`` from the reference (the ``SecurityModel`` in the suite) and computed
row-wise when a batch is profiled, into mergeable summaries: an OOD tally, the histogram of
the OOD score and the main offending features per window. The per-client statistics built
on it (and on :meth:`SecurityModel.row_hashes`) are tallies: see profiles/clients.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.io.values import label_codes, numbers_with_nan
from watchkeeper.stats.isolation import IsolationForest

OOD_TALLY = "ood"  # [rows, out-of-distribution rows]
OOD_FEATURES = "ood_features"  # per feature: OOD rows where it is the main offender
OOD_LEVELS = "ood_score"  # rows per OOD score bin (edges OOD_SCORE_EDGES)
#: Bin edges of the per-row OOD score, where 1 is the OOD line. A row's score is the largest
#: of: its robust distance over the reference's 99.9th percentile; its isolation score
#: rescaled so that the reference's median row is 0 and its 99.9th percentile 1; and, when
#: a value is beyond the reference's range or a category is new, 1 + the share of such
#: features.
OOD_SCORE_EDGES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0)


def _mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: spreads bits so the smallest hashes are a uniform sample."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def _rounded(x: np.ndarray, digits: int = 3) -> np.ndarray:
    """Round to ``digits`` significant digits, so near-identical inputs hash alike."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(x)))
        scale = np.where(np.isfinite(mag), 10.0 ** (digits - 1 - mag), 1.0)
        return np.where(np.isfinite(x), np.round(x * scale) / scale, 0.0)


@dataclass
class OODScores:
    """Per row: out of distribution or not, its OOD score (> 1 is out), and the index of its
    main offending feature (numeric features first, then categorical; -1 when fine)."""

    ood: np.ndarray
    score: np.ndarray
    offender: np.ndarray


@dataclass
class SecurityModel:
    """What normal inputs look like: robust centre/scale and support of numeric features,
    levels of categorical ones, an isolation forest on the numeric features, the reference's
    99.9th percentiles of distance and isolation score, and the decision boundary."""

    numeric: list[str]
    center: list[float]
    scale: list[float]
    low: list[float]
    high: list[float]
    categorical: list[str]
    levels: list[list[str]]
    threshold: float  # robust distance of the reference's 99.9th percentile row
    client: str = "_client"
    proba: str | None = None
    boundary: float = 0.5  # decision threshold on the score
    boundary_width: float = 0.0  # |score − boundary| below this is "near the boundary"
    forest: IsolationForest | None = None
    forest_median: float = 0.0  # isolation score of the reference's median row
    forest_threshold: float = 1.0  # and of its 99.9th percentile row

    # -- rows ------------------------------------------------------------------------------
    def values(self, table: pa.Table, name: str,
               aligned: dict[str, np.ndarray] | None) -> np.ndarray:
        """A numeric feature's values, NaN where missing (all NaN when the column is)."""
        if aligned is not None and name in aligned:
            return aligned[name]
        if name in table.column_names:
            return numbers_with_nan(table.column(name))
        return np.full(table.num_rows, np.nan)

    def _codes(self, table: pa.Table, only: set[str] | None = None) -> list[np.ndarray | None]:
        """Level index per row; len(levels) for a level never seen; -1 where missing
        (a missing value is a quality matter, not an out-of-distribution input)."""
        out: list[np.ndarray | None] = []
        for name, levels in zip(self.categorical, self.levels, strict=True):
            if only is not None and name not in only:
                out.append(None)
            elif name not in table.column_names:
                out.append(np.full(table.num_rows, -1))
            else:
                column = table.column(name)
                codes = label_codes(column, levels)
                missing = np.asarray(column.is_null(nan_is_null=True).to_numpy(
                    zero_copy_only=False), dtype=bool)
                codes[missing] = -1
                out.append(codes)
        return out

    def score(self, table: pa.Table, aligned: dict[str, np.ndarray] | None = None,
              unseen_in: set[str] | None = None) -> OODScores:
        """Score every row. A row is out of distribution when a value is beyond the
        reference's range, a category is new, or its robust distance or isolation score
        exceeds the reference's 99.9th percentile. Column by column, so no rows × features
        matrix is built."""
        n = table.num_rows
        d2 = np.zeros(n)
        outside = np.zeros(n, dtype=np.int16)  # features beyond the reference's support
        columns = [self.values(table, name, aligned) for name in self.numeric]
        imputed = []
        for j, x in enumerate(columns):
            t = x - self.center[j]
            t *= 1.0 / self.scale[j]
            with np.errstate(over="ignore"):  # |x| near 1e308: infinitely far, as it should be
                t *= t
            if np.isnan(t.sum()):  # missing values add nothing to the distance
                t[np.isnan(t)] = 0.0
                x = np.where(np.isnan(x), self.center[j], x)
            d2 += t
            imputed.append(x)
            outside += x < self.low[j]
            outside += x > self.high[j]
        # categorical columns only where the profile saw unseen levels (usually none)
        codes = [c if unseen_in is None or name in unseen_in else None
                 for name, c in zip(self.categorical, self._codes(table, unseen_in), strict=True)]
        for j, c in enumerate(codes):
            if c is not None:
                outside += c == len(self.levels[j])
        width = max(len(self.numeric) + len(self.categorical), 1)
        level = np.where(outside > 0, 1.0 + outside / width, 0.0)
        if self.numeric:
            d2 *= 1.0 / len(self.numeric)
            np.maximum(level, np.sqrt(d2) / self.threshold if self.threshold > 0 else
                       np.where(d2 > 0, np.inf, 0.0), out=level)
        if self.forest is not None and n:
            span = max(self.forest_threshold - self.forest_median, 1e-12)
            np.maximum(level, (self.forest.score(imputed) - self.forest_median) / span,
                       out=level)
        strange = level > 1.0
        # the main offender, for the (few) strange rows only
        rows = np.flatnonzero(strange)
        offender = np.full(n, -1, dtype=np.int64)
        if rows.size:
            blame = [np.nan_to_num(np.abs(x[rows] - self.center[j]) / self.scale[j], nan=0.0,
                                   posinf=0.0)
                     + 1e6 * ((x[rows] < self.low[j]) | (x[rows] > self.high[j]))
                     for j, x in enumerate(columns)]
            blame += [np.zeros(rows.size) if c is None else 1e9 * (c[rows] == len(self.levels[j]))
                      for j, c in enumerate(codes)]
            offender[rows] = np.argmax(np.column_stack(blame), axis=1)
        return OODScores(strange, level, offender)

    def distance(self, columns: list[np.ndarray]) -> np.ndarray:
        """Robust distance of rows given their numeric columns (in ``self.numeric`` order)."""
        if not columns:
            return np.zeros(0)
        d2 = np.zeros(len(columns[0]))
        for j, x in enumerate(columns):
            z = np.abs(x - self.center[j]) / self.scale[j]
            d2 += np.nan_to_num(z, nan=0.0, posinf=0.0) ** 2
        return np.sqrt(d2 / len(columns))

    def row_hashes(self, table: pa.Table, aligned: dict[str, np.ndarray] | None = None
                   ) -> np.ndarray:
        h = np.full(table.num_rows, np.uint64(0xCBF29CE484222325))
        with np.errstate(over="ignore"):
            for name in self.numeric:
                h = _mix(h ^ _rounded(self.values(table, name, aligned)).view(np.uint64))
            for column in self._codes(table):
                assert column is not None  # `only` not given: every column is coded
                h = _mix(h ^ column.astype(np.uint64))
        return h

    # -- batches -----------------------------------------------------------------------------
    def tallies(self, scores: OODScores) -> dict[str, np.ndarray]:
        width = len(self.numeric) + len(self.categorical)
        ood = scores.ood
        levels = np.searchsorted(OOD_SCORE_EDGES, scores.score, side="left")  # 1.0 is not out
        return {OOD_TALLY: np.array([len(ood), int(ood.sum())], dtype=np.int64),
                OOD_FEATURES: np.bincount(scores.offender[ood], minlength=width).astype(np.int64),
                OOD_LEVELS: np.bincount(levels, minlength=len(OOD_SCORE_EDGES) + 1
                                        ).astype(np.int64)}

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["forest"] = None if self.forest is None else self.forest.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SecurityModel:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if fields.get("forest") is not None:
            fields["forest"] = IsolationForest.from_dict(fields["forest"])
        return cls(**fields)


def fit(table: pa.Table, numeric: list[str], categorical: list[tuple[str, list[str]]],
        *, client: str, proba: str | None, prediction: str | None) -> SecurityModel:
    """Learn the security model from reference rows."""
    columns = [numbers_with_nan(table.column(c)) for c in numeric]
    x = np.column_stack(columns) if numeric else np.zeros((table.num_rows, 0))
    center = np.nanmedian(x, axis=0) if numeric else np.zeros(0)
    mad = 1.4826 * np.nanmedian(np.abs(x - center), axis=0) if numeric else np.zeros(0)
    sd = np.nanstd(x, axis=0) if numeric else np.zeros(0)
    scale = np.where(mad > 0, mad, np.where(sd > 0, sd, 1.0))
    model = SecurityModel(
        numeric=list(numeric), center=[float(v) for v in center], scale=[float(v) for v in scale],
        low=[float(v) for v in np.nanmin(x, axis=0)] if numeric else [],
        high=[float(v) for v in np.nanmax(x, axis=0)] if numeric else [],
        categorical=[c for c, _ in categorical], levels=[lv for _, lv in categorical],
        threshold=0.0, client=client, proba=proba)
    d = model.distance(columns)
    model.threshold = float(np.quantile(d, 0.999)) if d.size else 0.0
    complete = np.isfinite(x).all(axis=1).sum() if numeric else 0
    if complete >= 2:
        model.forest = IsolationForest.fit(columns, seed=0)
        imputed = [np.where(np.isnan(c), m, c) for c, m in zip(columns, center, strict=True)]
        model.forest_median, model.forest_threshold = (float(q) for q in np.quantile(
            model.forest.score(imputed), [0.5, 0.999]))
    if proba and proba in table.column_names:
        p = numbers_with_nan(table.column(proba))
        if prediction and prediction in table.column_names:
            pred = numbers_with_nan(table.column(prediction))
            pos, neg = p[pred == 1], p[pred == 0]
            if pos.size and neg.size and np.nanmax(neg) <= np.nanmin(pos):
                model.boundary = float((np.nanmax(neg) + np.nanmin(pos)) / 2)
        gap = np.abs(p[np.isfinite(p)] - model.boundary)
        model.boundary_width = float(np.quantile(gap, 0.05)) if gap.size else 0.0
    return model
