"""Segments: the slices of rows a user names (region, plan, model version, or a pair of
columns), learnt from the reference at ``init``.

A categorical segment column keeps its ``top`` most frequent reference values; the other
reference values are pooled as ``other``, values the reference never had are ``unseen``
and missing values ``missing``. A numeric column with many values is cut into ``bands``
quantile ranges of the reference (labelled as fairness labels its bands: ``<30``,
``30-45``, ``>=45``). A pair of columns segments by every combination of their values
(``region=north & plan=pro``, the spelling fairness findings use for intersections).

Every window's profile keeps one sub-profile per segment value (see
:mod:`watchkeeper.profiles.segments`), so segments merge like everything else.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.binning import MAX_CODE_LEVELS
from watchkeeper.baseline.task import Attribute
from watchkeeper.errors import SuiteError
from watchkeeper.io.values import (
    category_counts,
    label_codes,
    numbers,
    numbers_with_nan,
    type_class,
    whole_levels,
)

#: Values of a categorical segment column kept by name; the rest are pooled as "other".
TOP_LEVELS = 8
#: Quantile ranges of a numeric segment column.
BANDS = 4
#: Pooled reference values remembered, so a new value can be told from a pooled one.
MAX_POOLED = 1000
#: A segment value needs this many rows, in the window and in the reference, to be judged;
#: below it the segment is reported as not evaluated.
MIN_ROWS = 200
#: Share of each family's α that goes to the segments (the rest to the whole population).
SHARE = 0.5

OTHER, UNSEEN, MISSING = "other", "unseen", "missing"


@dataclass
class SegmentColumn:
    """How one column is cut into segment values: by levels (plus other, unseen, missing)
    or by bands (plus missing)."""

    column: str
    levels: list[str] | None = None
    pooled: list[str] = field(default_factory=list)
    truncated: bool = False  # more pooled values than remembered: none counts as unseen
    bands: list[float] | None = None

    @property
    def labels(self) -> list[str]:
        if self.bands is not None:
            return [*Attribute(self.column, bands=self.bands).labels, MISSING]
        return [*(self.levels or []), OTHER, UNSEEN, MISSING]

    def codes(self, table: pa.Table) -> np.ndarray:
        """Index in :attr:`labels` of every row's value (a column the batch lacks: missing)."""
        n = table.num_rows
        missing = len(self.labels) - 1
        if self.column not in table.column_names:
            return np.full(n, missing, dtype=np.int64)
        column = table.column(self.column)
        if self.bands is not None:
            values = numbers_with_nan(column)
            out = np.searchsorted(np.asarray(self.bands), values, side="right")
            out[~np.isfinite(values)] = missing
            return out.astype(np.int64)
        levels = self.levels or []
        known = label_codes(column, [*levels, *self.pooled])
        out = np.where(known < len(levels), known, len(levels))  # pooled → other
        unseen = known == len(levels) + len(self.pooled)
        if not self.truncated:
            out[unseen] = len(levels) + 1
        is_null = np.asarray(column.is_null(nan_is_null=True).to_numpy(zero_copy_only=False),
                             dtype=bool)
        out[is_null] = missing
        return out.astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        if self.bands is not None:
            return {"bands": self.bands}
        out: dict[str, Any] = {"levels": self.levels, "pooled": self.pooled}
        if self.truncated:
            out["truncated"] = True
        return out

    @classmethod
    def from_dict(cls, column: str, d: dict[str, Any]) -> SegmentColumn:
        if "bands" in d:
            return cls(column, bands=[float(b) for b in d["bands"]])
        return cls(column, levels=[str(x) for x in d.get("levels") or []],
                   pooled=[str(x) for x in d.get("pooled") or []],
                   truncated=bool(d.get("truncated", False)))


@dataclass
class Segment:
    """A segmentation: one column, or a pair whose values are combined."""

    parts: list[SegmentColumn]

    @property
    def name(self) -> str:
        """``region`` or ``region*plan`` (the key of the suite file's ``segments``)."""
        return "*".join(p.column for p in self.parts)

    @property
    def columns(self) -> list[str]:
        return [p.column for p in self.parts]

    @property
    def labels(self) -> list[str]:
        """Every segment value, spelt ``region=north`` or ``region=north & plan=pro``."""
        parts = [[f"{p.column}={lab}" for lab in p.labels] for p in self.parts]
        return [" & ".join(c) for c in itertools.product(*parts)]

    def codes(self, table: pa.Table) -> np.ndarray:
        """Index in :attr:`labels` of every row."""
        code = np.zeros(table.num_rows, dtype=np.int64)
        for p in self.parts:
            code = code * len(p.labels) + p.codes(table)
        return code

    def to_dict(self) -> dict[str, Any]:
        return {p.column: p.to_dict() for p in self.parts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls([SegmentColumn.from_dict(str(c), spec or {}) for c, spec in d.items()])


def segment_names(value: str | Iterable[str | Iterable[str]] | None) -> list[list[str]]:
    """``"region"``, ``"region,plan"`` (a pair) or a list of either, as lists of columns.

    >>> segment_names(["region", "plan,region", ("plan", "tier")])
    [['region'], ['plan', 'region'], ['plan', 'tier']]
    """
    if value is None:
        return []
    items: list[str | Iterable[str]] = [value] if isinstance(value, str) else list(value)
    out: list[list[str]] = []
    for i, item in enumerate(items):
        names = ([c.strip() for c in item.split(",") if c.strip()] if isinstance(item, str)
                 else [str(c) for c in item])
        if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
            raise SuiteError(f"segments[{i}]", "a segment is one column or a pair of distinct "
                                               f"columns (A,B), got {item!r}")
        out.append(names)
    return out


def fit_column(column: pa.ChunkedArray, name: str, top: int = TOP_LEVELS,
               bands: int = BANDS) -> SegmentColumn:
    """Segment values of a reference column: its top levels, or quantile bands when it is
    numeric with more distinct values than ``MAX_CODE_LEVELS``."""
    if type_class(column.type) == "numeric":
        finite = numbers(column).finite
        levels = whole_levels(finite) if finite.size else None
        if finite.size and (levels is None or levels.size > MAX_CODE_LEVELS):
            qs = np.quantile(finite, np.linspace(0, 1, bands + 1)[1:-1])
            if np.all(np.mod(finite, 1.0) == 0.0):
                qs = np.round(qs)
            return SegmentColumn(name, bands=[float(q) for q in np.unique(qs)])
    counts, _ = category_counts(column)
    ordered = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    rest = ordered[top:]
    return SegmentColumn(name, levels=ordered[:top], pooled=rest[:MAX_POOLED],
                         truncated=len(rest) > MAX_POOLED)


def fit_segments(table: pa.Table, names: list[list[str]], known: set[str] | None = None,
                 top: int = TOP_LEVELS) -> list[Segment]:
    """The segments of the reference ``table`` for each list of column names."""
    out = []
    for i, columns in enumerate(names):
        for c in columns:
            if c not in table.column_names or (known is not None and c not in known):
                raise SuiteError(f"segments[{i}]", f"no column {c!r} in the reference")
        out.append(Segment([fit_column(table.column(c), c, top) for c in columns]))
    return out
