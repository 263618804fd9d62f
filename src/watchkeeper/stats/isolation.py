"""Isolation forest with level-shared cuts: how quickly random cuts isolate a row.

Liu, Ting and Zhou's isolation forest scores a row by the average depth at which random
axis-parallel cuts, fitted on small subsamples of the reference, separate it from the
others: unusual rows are isolated in few cuts. Two changes make it fit a profiling path
and complement the other OOD signals:

- every tree applies the same cut to all cells of a level (an *oblivious* tree), so scoring
  costs one comparison per level and tree on whole columns, with no per-row tree walk:
  about 0.15 s per million rows for the default 16 trees of depth 8;
- a level cuts a random feature inside a random busy cell of the subsample, between two
  neighbouring values at a uniformly random rank (the original cuts uniformly between the
  min and max). Rank cuts follow the mass of the data, so rows in empty regions *between*
  dense ones (a broken correlation, an impossible combination) are isolated early; rows
  beyond the reference's range or far from its centre are left to the range and robust
  distance checks, which catch them outright.

The isolation depth of a leaf is the first level at which its cell held at most one
subsample row (plus the usual average-depth correction ``c(n)`` for cells still holding
``n`` rows at the last level); a row's score is ``2 ** (-mean depth / c(sample))`` as in
the original method: near 1 for rows isolated at once, lower for typical rows.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = [rng.normal(size=5_000), rng.normal(size=5_000)]
>>> forest = IsolationForest.fit(ref, seed=0)
>>> typical, odd = forest.score([np.array([0.0, 6.0]), np.array([0.0, -6.0])])
>>> bool(odd > typical)
True
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

_EULER = 0.5772156649015329


def average_depth(n: np.ndarray | float) -> np.ndarray:
    """``c(n)``: average depth at which a random binary search tree isolates among ``n``."""
    n = np.asarray(n, dtype=float)
    safe = np.maximum(n, 2.0)
    c = 2.0 * (np.log(safe - 1.0) + _EULER) - 2.0 * (safe - 1.0) / safe
    return np.where(n > 2, c, np.where(n == 2, 1.0, 0.0))


@dataclass
class IsolationForest:
    """Trees as (feature, threshold) per level and the isolation depth of every leaf."""

    features: np.ndarray  # (trees, depth) int: column index cut at each level
    thresholds: np.ndarray  # (trees, depth) float: a row goes "right" when value > threshold
    depths: np.ndarray  # (trees, 2**depth) float: isolation depth of each leaf
    sample: int  # subsample rows per tree

    @property
    def trees(self) -> int:
        return int(self.features.shape[0])

    @property
    def depth(self) -> int:
        return int(self.features.shape[1])

    @classmethod
    def fit(cls, columns: list[np.ndarray], *, trees: int = 16, depth: int = 8,
            sample: int = 256, seed: int = 0) -> IsolationForest:
        """Fit on reference columns (equal lengths, finite values; NaN rows are skipped)."""
        if not columns:
            raise ValueError("an isolation forest needs at least one column")
        if not 1 <= depth <= 8:
            raise ValueError(f"depth must be between 1 and 8, got {depth}")
        x = np.column_stack([np.asarray(c, dtype=float) for c in columns])
        x = x[np.isfinite(x).all(axis=1)]
        if len(x) < 2:
            raise ValueError("an isolation forest needs at least 2 complete reference rows")
        rng = np.random.default_rng(seed)
        sample = min(sample, len(x))
        features = np.zeros((trees, depth), dtype=np.int64)
        thresholds = np.zeros((trees, depth))
        depths = np.zeros((trees, 2**depth))
        for t in range(trees):
            rows = x[rng.choice(len(x), size=sample, replace=False)]
            cell = np.zeros(sample, dtype=np.int64)
            for level in range(depth):
                features[t, level], thresholds[t, level] = _cut(rows, cell, rng)
                cell |= (rows[:, features[t, level]] > thresholds[t, level]).astype(
                    np.int64) << level
            depths[t] = _leaf_depths(cell, depth)
        # stored to 1/256 of a level (see to_dict): round now, so a forest read back from a
        # suite file scores every row exactly as the one that calibrated the thresholds
        return cls(features, thresholds, np.round(depths * 256) / 256, sample)

    def path_length(self, columns: list[np.ndarray]) -> np.ndarray:
        """Mean isolation depth of each row over the trees (columns in fit order; a NaN
        goes left at every cut, so impute missing values before calling)."""
        n = len(columns[0]) if columns else 0
        total = np.zeros(n)
        chunk = 65_536  # keeps the working arrays in cache
        cut = np.empty(chunk, dtype=bool)
        shifted = np.empty(chunk, dtype=np.uint8)
        leaf = np.empty(chunk, dtype=np.uint8)
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            part = [c[lo:lo + m] for c in columns]
            b, s, code = cut[:m], shifted[:m], leaf[:m]
            for t in range(self.trees):
                code[:] = 0
                for level in range(self.depth):
                    np.greater(part[self.features[t, level]], self.thresholds[t, level], out=b)
                    np.left_shift(b.view(np.uint8), level, out=s)
                    np.bitwise_or(code, s, out=code)
                total[lo:lo + m] += self.depths[t].take(code)
        return total / max(self.trees, 1)

    def score(self, columns: list[np.ndarray]) -> np.ndarray:
        """Anomaly score in (0, 1]: ``2 ** (-mean depth / c(sample))``."""
        return np.exp2(-self.path_length(columns) / float(average_depth(self.sample)))

    # -- persistence: cuts as lists, leaf depths as compact base64 (2 bytes per leaf) ----------
    def to_dict(self) -> dict[str, Any]:
        scaled = np.round(self.depths * 256).astype("<u2")  # depth ≤ 8 + c(256) ≈ 18.4: fits
        return {"sample": self.sample, "features": self.features.tolist(),
                "thresholds": self.thresholds.tolist(),
                "depths_u16_over_256": base64.b64encode(scaled.tobytes()).decode("ascii")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IsolationForest:
        features = np.asarray(d["features"], dtype=np.int64)
        thresholds = np.asarray(d["thresholds"], dtype=float)
        if features.ndim != 2 or features.shape != thresholds.shape:
            raise ValueError("features and thresholds must be lists of equal-length lists")
        packed = base64.b64decode(d["depths_u16_over_256"])
        raw = np.frombuffer(packed[: len(packed) // 2 * 2], dtype="<u2")
        if len(packed) % 2 or raw.size != features.shape[0] * 2 ** features.shape[1]:
            raise ValueError("leaf depths do not match the number and depth of the trees")
        depths = raw.reshape(features.shape[0], -1).astype(float) / 256
        return cls(features, thresholds, depths, int(d["sample"]))


def _cut(rows: np.ndarray, cell: np.ndarray, rng: np.random.Generator) -> tuple[int, float]:
    """A random cut inside a random cell that still holds rows with different values."""
    cells, counts = np.unique(cell, return_counts=True)
    busy = counts > 1
    if not busy.any():
        return 0, float(rows[:, 0].max())
    order = rng.choice(cells[busy], size=int(busy.sum()), replace=False,
                       p=counts[busy] / counts[busy].sum())  # busier cells first, as a rule
    for c in order:
        inside = rows[cell == c]
        spread = np.flatnonzero(inside.max(axis=0) > inside.min(axis=0))
        if spread.size:
            f = int(rng.choice(spread))
            values = np.unique(inside[:, f])
            k = int(rng.integers(len(values) - 1))  # between two neighbouring values
            return f, float((values[k] + values[k + 1]) / 2)
    return 0, float(rows[:, 0].max())  # no cell can be cut: a cut that moves nothing


def _leaf_depths(cell: np.ndarray, depth: int) -> np.ndarray:
    """Isolation depth of every leaf code given the subsample's leaf codes."""
    leaves = np.arange(2**depth)
    out = np.full(2**depth, np.nan)
    for level in range(1, depth + 1):
        mask = (1 << level) - 1
        held = np.bincount(cell & mask, minlength=2**level)[leaves & mask]
        out = np.where(np.isnan(out) & (held <= 1), level, out)
    last = np.bincount(cell, minlength=2**depth)
    return np.where(np.isnan(out), depth + average_depth(last), out)
