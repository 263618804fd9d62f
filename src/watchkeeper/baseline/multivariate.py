"""Multivariate drift: what ``init`` learns about how the inputs move together.

A change in how columns move together (a broken correlation) passes every one-column
monitor. The :class:`JointModel` encodes each row — numeric features as normal scores of
their reference quantiles (marginal-free: a Gaussian copula), categorical ones one-hot on
their most frequent levels, missing values at the reference centre — and fits a PCA to the
reference rows. A row's score is its reconstruction error from the principal components,
each residual direction scaled to about unit reference variance (so the directions where
the reference is tight, which a broken correlation loosens, count as much as the loose
ones; see :data:`RIDGE`).

Per window the profile keeps two mergeable tallies: rows per bin of that score (bin edges
from reference quantiles, so windows compare and merge like any column's bins), and, for the
column pairs most dependent in the reference, a small co-occurrence table of coarse bins
(quartiles; top levels), from which ``multivariate_drift`` tests each pair's dependence
(so a column tied to the others only weakly, whose break barely moves the per-row score,
is still seen) and names the pairs whose joint distribution moved beyond what their
marginals explain.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import special

from watchkeeper.baseline.binning import plan_numeric
from watchkeeper.io.values import label_codes, numbers_with_nan

MV_ERRORS = "mv_error"  # rows per bin of the per-row score (edges: JointModel.error_edges)
MV_PAIRS = "mv_pairs"  # per tracked pair: COARSE × COARSE co-occurrence counts
#: Quantile knots kept per numeric feature for its normal scores.
KNOTS = 64
#: One-hot levels per categorical feature (the most frequent; the rest share none).
MAX_LEVELS = 8
#: Features a model takes at most (those first in the schema).
MAX_FEATURES = 60
#: Share of the reference variance the principal components keep; the rest is residual.
VARIANCE = 0.65
#: Residual directions are scaled by 1/sqrt(variance + RIDGE × mean variance): near-exact
#: dependences (a code and its label, one-hot blocks) weigh much, but not infinitely.
#: Chosen on Adult, where 0.1 found every within-window permutation of a dependent column
#: at 5k rows that 0.01 or 0.3 found (see benchmarks/bench_multivariate.py).
RIDGE = 0.1
#: Bins of the per-row score.
ERROR_BINS = 20
#: Column pairs whose co-occurrence is kept (every pair of up to 16 columns), coarse bins
#: per column in them, and the partners every column keeps at least (its most dependent).
MAX_PAIRS = 120
COARSE = 4
PARTNERS = 3
#: Reference rows the model is fitted on at most (a seeded sample beyond).
FIT_ROWS = 100_000
#: Rows encoded at a time, so no rows × dimensions matrix grows with the batch.
BLOCK_ROWS = 65_536
_QUARTILES = np.array([-0.6745, 0.0, 0.6745])  # normal-score quartile cuts
#: A declared column group's name: letters, digits, ``_`` and ``-``.
GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def tally_keys(group: str | None = None) -> tuple[str, str]:
    """The profile's keys of the score bins and pair tables: the suite-wide model's, or a
    declared column group's (``mv_error:NAME``)."""
    return (MV_ERRORS, MV_PAIRS) if group is None else (f"{MV_ERRORS}:{group}",
                                                        f"{MV_PAIRS}:{group}")


@dataclass
class JointModel:
    """The reference's joint structure: how to encode a row, the principal directions of the
    encoded reference, the bin edges of the per-row score and the column pairs tracked."""

    numeric: list[str]
    knots: list[list[float]]  # per numeric feature: distinct reference quantiles
    levels_cdf: list[list[float]]  # ... and their mid-rank CDF levels
    categorical: list[str]
    levels: list[list[str]]  # per categorical feature: one-hot levels, most frequent first
    mean: list[float]  # per encoded dimension
    scale: list[float]
    components: list[list[float]]  # residual directions (rows), each of unit variance
    error_edges: list[float]
    pairs: list[list[int]] = field(default_factory=list)  # column indices (numeric first)
    kept: int = 0  # principal components kept (reported)
    _cache: tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None = field(
        default=None, init=False, compare=False, repr=False)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    # -- rows ------------------------------------------------------------------------------
    def _read(self, table: pa.Table, aligned: dict[str, np.ndarray] | None
              ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """Per numeric feature its normal scores (NaN where missing), per categorical one
        its level codes (len(levels) for other levels) and missing flags, and the coarse
        code of every column (n × columns, -1 where missing). Unreadable columns are
        missing, never raised."""
        n = table.num_rows
        coarse = np.full((n, len(self.columns)), -1, dtype=np.int8)
        present = set(table.column_names)
        scores = []
        for j, name in enumerate(self.numeric):
            x = np.full(n, np.nan)
            if aligned is not None and name in aligned:
                x = aligned[name]
            elif name in present:
                with contextlib.suppress(pa.ArrowException, TypeError, ValueError):
                    x = numbers_with_nan(table.column(name))
            z = normal_scores(x, self.knots[j], self.levels_cdf[j])
            ok = np.isfinite(z)
            coarse[ok, j] = np.searchsorted(_QUARTILES, z[ok])
            scores.append(z)
        levels_of = []
        for j, (name, levels) in enumerate(zip(self.categorical, self.levels, strict=True)):
            codes, missing = np.full(n, len(levels)), np.ones(n, dtype=bool)
            if name in present:
                column = table.column(name)
                with contextlib.suppress(pa.ArrowException, TypeError, ValueError):
                    codes = label_codes(column, levels)
                    missing = np.asarray(column.is_null(nan_is_null=True).to_numpy(
                        zero_copy_only=False), dtype=bool)
            k = len(self.numeric) + j
            coarse[~missing, k] = np.minimum(codes[~missing], COARSE - 1)
            levels_of.append((codes, missing))
        return scores, levels_of, coarse

    def _raw(self, table: pa.Table,
             aligned: dict[str, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """Encoded rows (n × dimensions, before standardising: missing numbers at 0, the
        reference median; missing levels at the reference shares) and coarse codes."""
        scores, levels_of, coarse = self._read(table, aligned)
        dims = [np.where(np.isfinite(z), z, 0.0)[:, None] for z in scores]
        at = len(scores)
        for (codes, missing), levels in zip(levels_of, self.levels, strict=True):
            hot = (codes[:, None] == np.arange(len(levels))[None, :]).astype(float)
            hot[missing] = self.mean[at:at + len(levels)]
            dims.append(hot)
            at += len(levels)
        x = np.hstack(dims) if dims else np.zeros((table.num_rows, 0))
        return x, coarse

    def _lookups(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The residual projection as a sum over columns: per numeric feature its direction
        (scaled) and offset, per categorical one a table of each level's projection (a
        row for other levels, and a zero row for missing: the reference centre)."""
        if self._cache is None:
            dims = len(self.mean)
            r = np.asarray(self.components, dtype=float).reshape(-1, dims)
            mean, scale = np.asarray(self.mean), np.asarray(self.scale)
            m = len(self.numeric)
            slopes = (r[:, :m] / scale[:m]).T  # numeric: z ↦ z × slope − offset
            offsets = (r[:, :m] * (mean[:m] / scale[:m])).T
            tables, at = [], m
            for levels in self.levels:
                block = slice(at, at + len(levels))
                hot = np.vstack([np.eye(len(levels)), np.zeros((1, len(levels)))])
                rows = ((hot - mean[block]) / scale[block]) @ r[:, block].T
                tables.append(np.vstack([rows, np.zeros((1, r.shape[0]))]))
                at += len(levels)
            self._cache = (slopes, offsets, tables)
        return self._cache

    def scores(self, table: pa.Table,
               aligned: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the whitened reconstruction error, and the coarse code of each column.
        Computed column by column from :meth:`_lookups`, by row blocks: no rows ×
        encoded-dimensions matrix is built."""
        slopes, offsets, tables = self._lookups()
        out, codes = [], []
        for start in range(0, max(table.num_rows, 1), BLOCK_ROWS):
            block = table.slice(start, BLOCK_ROWS)
            part = {k: v[start:start + BLOCK_ROWS] for k, v in aligned.items()} \
                if aligned is not None else None
            scores, levels_of, coarse = self._read(block, part)
            proj = np.zeros((block.num_rows, slopes.shape[1] if slopes.size else
                             (tables[0].shape[1] if tables else 0)))
            if scores:  # one matrix product for the numeric features (missing: 0)
                z = np.column_stack(scores)
                proj += np.where(np.isfinite(z), z, 0.0) @ slopes - offsets.sum(axis=0)
            for (level, missing), lookup in zip(levels_of, tables, strict=True):
                proj += lookup[np.where(missing, len(lookup) - 1, level)]
            out.append(np.square(proj).sum(axis=1))
            codes.append(coarse)
        return np.concatenate(out), np.concatenate(codes)

    def tallies(self, table: pa.Table, aligned: dict[str, np.ndarray] | None = None,
                group: str | None = None) -> dict[str, np.ndarray]:
        """The window's mergeable summaries: score bins and pair co-occurrence counts
        (under a declared group's keys when ``group`` is given, see :func:`tally_keys`)."""
        errors_key, pairs_key = tally_keys(group)
        error, coarse = self.scores(table, aligned)
        out = {errors_key: error_histogram(error, self.error_edges)}
        pairs = np.zeros((len(self.pairs), COARSE, COARSE), dtype=np.int64)
        for i, (a, b) in enumerate(self.pairs):
            ok = (coarse[:, a] >= 0) & (coarse[:, b] >= 0)
            cell = coarse[ok, a].astype(np.int64) * COARSE + coarse[ok, b]
            pairs[i] = np.bincount(cell, minlength=COARSE * COARSE).reshape(COARSE, COARSE)
        if self.pairs:
            out[pairs_key] = pairs
        return out

    # -- suite file ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "method": f"PCA of the encoded features keeping {VARIANCE:.0%} of the variance; "
                      "per-row score: residual in the other directions, each scaled by "
                      f"1/sqrt(its variance + {RIDGE:g} x the mean variance)",
            "numeric": self.numeric, "knots": self.knots, "levels_cdf": self.levels_cdf,
            "categorical": self.categorical, "levels": self.levels,
            "mean": self.mean, "scale": self.scale, "components": self.components,
            "kept": self.kept, "error_edges": self.error_edges, "pairs": self.pairs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JointModel:
        """The model of a suite file's ``multivariate:`` entry (KeyError, TypeError or
        ValueError when malformed)."""
        model = cls(
            numeric=[str(c) for c in d["numeric"]],
            knots=[[float(v) for v in k] for k in d["knots"]],
            levels_cdf=[[float(v) for v in k] for k in d["levels_cdf"]],
            categorical=[str(c) for c in d["categorical"]],
            levels=[[str(v) for v in lv] for lv in d["levels"]],
            mean=[float(v) for v in d["mean"]], scale=[float(v) for v in d["scale"]],
            components=[[float(v) for v in c] for c in d["components"]],
            error_edges=[float(v) for v in d["error_edges"]],
            pairs=[[int(a), int(b)] for a, b in d.get("pairs") or []],
            kept=int(d.get("kept", 0)),
        )
        dims = len(model.numeric) + sum(len(lv) for lv in model.levels)
        if len(model.mean) != dims or len(model.scale) != dims or \
                any(len(c) != dims for c in model.components):
            raise ValueError(f"expected {dims} encoded dimensions in mean, scale and "
                             "components")
        if len(model.knots) != len(model.numeric) or len(model.levels_cdf) != len(model.knots):
            raise ValueError("expected knots and levels_cdf for every numeric feature")
        if any(not (0 <= a < len(model.columns) and 0 <= b < len(model.columns))
               for a, b in model.pairs):
            raise ValueError("pairs name a column index out of range")
        return model


def normal_scores(x: np.ndarray, knots: list[float], cdf: list[float]) -> np.ndarray:
    """Normal scores of values by the reference CDF (interpolated between knots, clipped at
    the reference's ends); NaN stays NaN."""
    if not knots:
        return np.full(x.shape, np.nan)
    u = np.interp(x, knots, cdf) if len(knots) > 1 else np.full(x.shape, 0.5)
    u = np.where(np.isfinite(x), u, np.nan)
    return special.ndtri(u)


def error_histogram(error: np.ndarray, edges: list[float]) -> np.ndarray:
    """Rows per score bin: below the reference minimum, the quantile bins, above its max."""
    search = np.asarray(edges, dtype=float).copy()
    search[-1] = np.nextafter(search[-1], np.inf)
    codes = np.searchsorted(search, error[np.isfinite(error)], side="right")
    return np.bincount(codes, minlength=len(edges) + 1).astype(np.int64)


def _knots(x: np.ndarray, n: int) -> tuple[list[float], list[float]]:
    """Distinct reference quantiles and their mid-rank CDF levels (kept inside (0, 1))."""
    finite = np.sort(x[np.isfinite(x)])
    if finite.size == 0:
        return [], []
    qs = np.unique(np.quantile(finite, np.linspace(0, 1, KNOTS + 1), method="inverted_cdf"))
    lo = np.searchsorted(finite, qs, side="left")
    hi = np.searchsorted(finite, qs, side="right")
    cdf = np.clip((lo + hi) / 2 / finite.size, 0.5 / n, 1 - 0.5 / n)
    return [float(v) for v in qs], [float(v) for v in cdf]


def fit(table: pa.Table, numeric: list[str], categorical: list[tuple[str, list[str]]],
        *, seed: int = 0) -> JointModel | None:
    """Fit the joint model on reference rows; None with fewer than two features or too
    few rows to tell a joint structure (50 per encoded dimension)."""
    numeric = numeric[:MAX_FEATURES]
    categorical = categorical[:max(MAX_FEATURES - len(numeric), 0)]
    if len(numeric) + len(categorical) < 2:
        return None
    if table.num_rows > FIT_ROWS:
        rng = np.random.default_rng([seed, 0x3017])
        table = table.take(np.sort(rng.choice(table.num_rows, FIT_ROWS, replace=False)))
    n = table.num_rows
    knots, cdfs = [], []
    for name in numeric:
        k, c = _knots(numbers_with_nan(table.column(name)), n)
        knots.append(k)
        cdfs.append(c)
    levels = [lv[:MAX_LEVELS] for _, lv in categorical]
    dims = len(numeric) + sum(len(lv) for lv in levels)
    if n < 50 * dims:
        return None
    model = JointModel(numeric=list(numeric), knots=knots, levels_cdf=cdfs,
                       categorical=[c for c, _ in categorical], levels=levels,
                       mean=[0.0] * dims, scale=[1.0] * dims, components=[],
                       error_edges=[0.0, 1.0])
    raw, _ = model._raw(table, None)
    model.mean = [float(v) for v in raw.mean(axis=0)]  # where missing levels are imputed
    raw, coarse = model._raw(table, None)
    mean = raw.mean(axis=0)
    sd = raw.std(axis=0)
    weight = np.ones(dims)  # a categorical block counts as one feature, not one per level
    at = len(numeric)
    for lv in levels:
        weight[at:at + len(lv)] = np.sqrt(len(lv))
        at += len(lv)
    scale = np.where(sd > 0, sd, 1.0) * weight
    z = (raw - mean) / scale
    cov = z.T @ z / max(n - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    total = float(values.sum()) or 1.0
    kept = int(np.searchsorted(np.cumsum(values) / total, VARIANCE) + 1)
    ridge = RIDGE * total / dims
    components = (vectors[:, kept:] / np.sqrt(np.maximum(values[kept:], 0.0) + ridge)).T
    model.mean, model.scale = [float(v) for v in mean], [float(v) for v in scale]
    model.components = [[float(v) for v in row] for row in components]
    model.kept = kept
    error, _ = model.scores(table)  # as every window will score them
    model.error_edges = plan_numeric(error, ERROR_BINS) or [0.0, 1.0]
    if len(model.error_edges) < 2:
        model.error_edges = [model.error_edges[0], model.error_edges[0]]
    model.pairs = _dependent_pairs(coarse)
    return model


def _dependent_pairs(coarse: np.ndarray) -> list[list[int]]:
    """The column pairs with the most mutual information between their coarse bins: every
    column's :data:`PARTNERS` most dependent first (so a column tied to others only weakly
    still has its ties tracked), then the most dependent of the rest, :data:`MAX_PAIRS` in
    all."""
    c = coarse.shape[1]
    scored = []
    for a in range(c):
        for b in range(a + 1, c):
            ok = (coarse[:, a] >= 0) & (coarse[:, b] >= 0)
            if ok.sum() < 100:
                continue
            table = np.bincount(coarse[ok, a].astype(np.int64) * COARSE + coarse[ok, b],
                                minlength=COARSE * COARSE).reshape(COARSE, COARSE)
            scored.append((mutual_information(table), a, b))
    scored.sort(key=lambda t: (-t[0], t[1], t[2]))
    first: dict[tuple[int, int], None] = {}
    for column in range(c):
        ties = [(a, b) for _, a, b in scored if column in (a, b)]
        first.update(dict.fromkeys(ties[:PARTNERS]))
    chosen = list(first)[:MAX_PAIRS]
    rest = [(a, b) for _, a, b in scored if (a, b) not in first]
    chosen += rest[:MAX_PAIRS - len(chosen)]
    rank = {(a, b): i for i, (_, a, b) in enumerate(scored)}
    return [[a, b] for a, b in sorted(chosen, key=rank.__getitem__)]


def mutual_information(table: np.ndarray) -> float:
    """Mutual information (nats) of a co-occurrence table."""
    total = table.sum()
    if total <= 0:
        return 0.0
    p = table / total
    outer = p.sum(axis=1, keepdims=True) * p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / outer[nz])).sum())
