"""A mergeable quantile sketch with a bounded rank error (Munro–Paterson compactors).

Values go to level 0; a level holding ``k`` or more values sorts them and sends every
other one (alternately the odd and the even ones) to the level above, where each stands for
twice as many values. One such compaction at level ``h`` moves the rank of any value by at
most ``2**h``, and a level compacts at most ``n / (k 2**h)`` times, so after ``n`` values

    |estimated rank - true rank| <= n * levels / k,   levels <= log2(n / k) + 2

(:meth:`QuantileSketch.rank_error` gives this bound as a fraction of ``n``; with
``k = 4096``: 0.15 % at 100,000 values, 0.29 % at 10 million). Two sketches merge by
adding their levels and compacting again, with the same bound for the total count, so
batches can be sketched apart and merged in any order. Memory: about ``k`` floats per level.
Minimum and maximum are kept exactly.
"""

from __future__ import annotations

import math

import numpy as np

#: Values a level holds before it is compacted (the rank error is about levels / K).
K = 4096


class QuantileSketch:
    """Quantiles of a stream of numbers in bounded memory.

    >>> s = QuantileSketch(k=64)
    >>> for chunk in np.array_split(np.arange(10_000.0), 7):
    ...     s.add(chunk)
    >>> s.count, s.quantiles([0.0, 1.0]).tolist()
    (10000, [0.0, 9999.0])
    >>> bool(abs(s.quantiles([0.5])[0] - 5000) <= s.rank_error() * s.count)
    True
    """

    def __init__(self, k: int = K) -> None:
        if k < 2:
            raise ValueError(f"k must be at least 2, got {k}")
        self.k = k
        self.levels: list[np.ndarray] = [np.empty(0)]
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self._flip = 0  # alternates which half a compaction keeps

    def add(self, values: np.ndarray) -> None:
        """Add finite numbers (NaN and infinities are the caller's to drop)."""
        values = np.asarray(values, dtype=float).ravel()
        if not values.size:
            return
        self.count += values.size
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self.levels[0] = np.concatenate([self.levels[0], values])
        self._compact()

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """Add another sketch's values (in place; returns self)."""
        if other.k != self.k:
            raise ValueError(f"cannot merge sketches of k={self.k} and k={other.k}")
        while len(self.levels) < len(other.levels):
            self.levels.append(np.empty(0))
        for h, level in enumerate(other.levels):
            self.levels[h] = np.concatenate([self.levels[h], level])
        self.count += other.count
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self._compact()
        return self

    def _compact(self) -> None:
        h = 0
        while h < len(self.levels):
            level = self.levels[h]
            if level.size >= self.k:
                level = np.sort(level)
                keep = level[: level.size - level.size % 2]  # an odd one out stays
                self.levels[h] = level[keep.size:]
                up = keep[self._flip::2]
                self._flip ^= 1
                if h + 1 == len(self.levels):
                    self.levels.append(np.empty(0))
                self.levels[h + 1] = np.concatenate([self.levels[h + 1], up])
            h += 1

    def rank_error(self) -> float:
        """The bound on the rank error of :meth:`quantiles`, as a fraction of the count."""
        if self.count <= self.k:
            return 0.0
        return min(len(self.levels) / self.k, 1.0)

    def quantiles(self, qs: np.ndarray | list[float]) -> np.ndarray:
        """For each q, the smallest value whose estimated rank reaches ``q × count`` (as
        ``numpy.quantile(..., method="inverted_cdf")``; exact while ``count <= k``); q = 0 and
        1 give the exact minimum and maximum."""
        qs = np.asarray(qs, dtype=float)
        if not self.count:
            return np.full(qs.shape, np.nan)
        values = np.concatenate(self.levels)
        weights = np.concatenate([np.full(level.size, 2.0**h)
                                  for h, level in enumerate(self.levels)])
        order = np.argsort(values, kind="stable")
        values, cum = values[order], np.cumsum(weights[order])
        cum *= self.count / cum[-1]  # the odd ones out make the weights sum off by a little
        at = np.searchsorted(cum, qs * self.count, side="left")
        out = values[np.clip(at, 0, values.size - 1)]
        out = np.where(qs <= 0, self.min, out)
        return np.where(qs >= 1, self.max, out)
