"""One column's summary over a window (:class:`ColumnProfile`) and how a column of a batch
is profiled against its spec: numeric bins, category levels, text descriptors. The window's
:class:`~watchkeeper.profiles.core.Profile` and the profiles of other column kinds
(embeddings, text) build on this module; it builds on none of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.schema import Column, Kind
from watchkeeper.baseline.text import TextPlan
from watchkeeper.io.values import category_counts, numbers, type_class
from watchkeeper.stats.moments import Moments


@dataclass
class ColumnProfile:
    """Summary of one column over a window. ``count`` is rows where the column was present."""

    count: int = 0
    missing: int = 0
    invalid: int = 0
    moments: Moments = field(default_factory=Moments)
    min: float | None = None
    max: float | None = None
    bins: np.ndarray | None = None
    types: Counter[str] = field(default_factory=Counter)  # type class → rows seen with it
    #: A text column's descriptors (length, tokens…), each profiled as a numeric column.
    descriptors: dict[str, ColumnProfile] = field(default_factory=dict)

    @property
    def valid(self) -> int:
        return self.count - self.missing - self.invalid

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        if self.bins is None:
            bins = None if other.bins is None else other.bins.copy()
        elif other.bins is None:
            bins = self.bins.copy()
        else:
            bins = self.bins + other.bins
        return ColumnProfile(
            count=self.count + other.count,
            missing=self.missing + other.missing,
            invalid=self.invalid + other.invalid,
            moments=self.moments.merge(other.moments),
            min=pick_bound(min, self.min, other.min),
            max=pick_bound(max, self.max, other.max),
            bins=bins,
            types=self.types + other.types,
            descriptors=merge_parts(self.descriptors, other.descriptors),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count, "missing": self.missing, "invalid": self.invalid
        }
        if self.moments.n:
            out["moments"] = {"n": self.moments.n, "mean": self.moments.mean, "m2": self.moments.m2}
            out["min"], out["max"] = self.min, self.max
        if self.bins is not None:
            out["bins"] = [int(b) for b in self.bins]
        out["types"] = dict(sorted(self.types.items()))
        if self.descriptors:
            out["descriptors"] = {k: v.to_dict() for k, v in self.descriptors.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        m = d.get("moments") or {}
        return cls(
            count=int(d["count"]),
            missing=int(d.get("missing", 0)),
            invalid=int(d.get("invalid", 0)),
            moments=Moments(int(m.get("n", 0)), float(m.get("mean", 0.0)), float(m.get("m2", 0.0))),
            min=None if d.get("min") is None else float(d["min"]),
            max=None if d.get("max") is None else float(d["max"]),
            bins=None if d.get("bins") is None else np.asarray(d["bins"], dtype=np.int64),
            types=Counter({str(k): int(v) for k, v in (d.get("types") or {}).items()}),
            descriptors={str(k): cls.from_dict(v)
                         for k, v in (d.get("descriptors") or {}).items()},
        )


def merge_parts(a: dict[str, ColumnProfile],
                 b: dict[str, ColumnProfile]) -> dict[str, ColumnProfile]:
    empty = ColumnProfile()
    return {k: a.get(k, empty).merge(b.get(k, empty)) for k in dict.fromkeys([*a, *b])}


_Bound = TypeVar("_Bound", float, datetime)


def pick_bound(fn: Callable[[_Bound, _Bound], _Bound], a: _Bound | None,
          b: _Bound | None) -> _Bound | None:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


def _search_edges(edges: list[float]) -> np.ndarray:
    search = np.asarray(edges, dtype=float).copy()
    search[-1] = np.nextafter(search[-1], np.inf)  # the reference max belongs to the last bin
    return search


def numeric_codes(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Bin index of each finite value: 0 below the reference min, len(edges) above its max."""
    return np.searchsorted(_search_edges(edges), values, side="right")


def numeric_histogram(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Bin counts equal to ``bincount(numeric_codes(values, edges))``, computed as one count
    per edge: about four times faster than a binary search per value on random data.

    >>> numeric_histogram(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), [0.0, 0.5, 1.0]).tolist()
    [1, 1, 2, 1]
    """
    at_least = np.array([np.count_nonzero(values >= e) for e in _search_edges(edges)])
    return np.concatenate([[values.size - at_least[0]], at_least[:-1] - at_least[1:],
                           [at_least[-1]]]).astype(np.int64)


def category_bins(counts: Counter[str], spec: Column) -> np.ndarray:
    """Bin counts of category labels: one per level, then "other", then "unseen"."""
    assert spec.categories is not None
    index = {c: i for i, c in enumerate(spec.categories)}
    bins = np.zeros(len(spec.categories) + 2, dtype=np.int64)
    overflow = len(spec.categories) + (0 if spec.truncated else 1)  # other if truncated
    for label, n in counts.items():
        bins[index.get(label, overflow)] += n
    return bins


def describe_into(cp: ColumnProfile, column: pa.ChunkedArray | pa.Array, plan: TextPlan) -> None:
    """Count a text column's missing and invalid (non-string) values into ``cp`` and profile
    each of its descriptors into ``cp.descriptors``."""
    rows = len(column)
    described = plan.describe(column)
    cp.missing, cp.invalid = described.missing, described.invalid
    for name, edges in plan.edges.items():
        values = described.values[name]
        finite = values[np.isfinite(values)]
        d = ColumnProfile(count=rows, invalid=described.invalid,
                          missing=rows - described.invalid - finite.size,
                          bins=numeric_histogram(finite, edges))
        if finite.size:
            d.moments = Moments.of(finite)
            d.min, d.max = float(finite.min()), float(finite.max())
        cp.descriptors[name] = d


def profile_column(column: pa.ChunkedArray | pa.Array, spec: Column,
                   aligned: dict[str, np.ndarray] | None = None) -> ColumnProfile:
    """Profile one column against its spec; values that do not fit are counted, never raised.
    Numeric values in row order are left in ``aligned`` for row-wise signals to reuse."""
    rows = len(column)
    cp = ColumnProfile(count=rows, types=Counter({type_class(column.type): rows}))
    try:
        if spec.kind == Kind.NUMERIC:
            nums = numbers(column)
            cp.missing, cp.invalid = nums.missing, nums.invalid
            if aligned is not None and nums.values is not None:
                aligned[spec.name] = nums.values
            if nums.finite.size:
                cp.moments = Moments.of(nums.finite)
                cp.min, cp.max = float(nums.finite.min()), float(nums.finite.max())
            if spec.edges:
                cp.bins = numeric_histogram(nums.finite, spec.edges)
        elif spec.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
            counts, cp.missing = category_counts(column)
            if spec.categories is not None:
                cp.bins = category_bins(counts, spec)
        elif spec.text is not None:
            describe_into(cp, column, spec.text)
        else:
            cp.missing = column.null_count
    except (pa.ArrowException, TypeError, ValueError):
        # A column Arrow cannot read as this kind at all (nested values, say): every
        # present value is invalid, the schema monitor reports the type change.
        cp.missing = column.null_count
        cp.invalid = rows - cp.missing
        cp.bins = np.zeros(spec.n_bins, dtype=np.int64) if spec.n_bins else None
    return cp
