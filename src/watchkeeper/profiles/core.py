"""Profile: a mergeable summary of a batch of rows against the suite's binning plan.

A profile keeps, per column, counts (rows, missing, invalid), mergeable moments, min/max,
and bin counts; nothing that grows with the number of rows. Merging two profiles is exact
for every count and associative, so profiles roll up from minutes to days and from
partitions to a whole data set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.schema import Column, Kind, Role, Schema
from watchkeeper.errors import SuiteError
from watchkeeper.io.tables import to_table
from watchkeeper.io.values import category_counts, category_label, numbers, type_class
from watchkeeper.profiles.clients import ClientStats, client_stats, merge_clients
from watchkeeper.profiles.embedding import profile_embedding
from watchkeeper.profiles.segments import segment_profiles
from watchkeeper.profiles.service import service_tallies
from watchkeeper.profiles.task import row_codes, tally, upgrade_tally
from watchkeeper.stats.moments import Moments
from watchkeeper.wire import RESERVED

OTHER = "__other__"
UNSEEN = "__unseen__"


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
            min=_pick(min, self.min, other.min),
            max=_pick(max, self.max, other.max),
            bins=bins,
            types=self.types + other.types,
            descriptors=_merge_parts(self.descriptors, other.descriptors),
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


def _merge_parts(a: dict[str, ColumnProfile],
                 b: dict[str, ColumnProfile]) -> dict[str, ColumnProfile]:
    empty = ColumnProfile()
    return {k: a.get(k, empty).merge(b.get(k, empty)) for k in dict.fromkeys([*a, *b])}


_Bound = TypeVar("_Bound", float, datetime)


def _pick(fn: Callable[[_Bound, _Bound], _Bound], a: _Bound | None,
          b: _Bound | None) -> _Bound | None:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


@dataclass
class Profile:
    """Summary of a window of rows: per-column profiles plus columns the schema does not know.

    >>> from watchkeeper.baseline.schema import infer_schema
    >>> t = pa.table({"x": [1.5, 2.5, None, 4.0], "c": ["a", "b", "a", "z"]})
    >>> s = infer_schema(t)
    >>> p = profile(t, s)
    >>> p.rows, p.columns["x"].missing, p.columns["x"].bins.tolist()
    (4, 1, [0, 1, 2, 0])
    """

    rows: int = 0
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    unexpected: Counter[str] = field(default_factory=Counter)  # unknown column → rows
    start: datetime | None = None
    end: datetime | None = None
    #: Tallies that join columns (score × prediction × label, per-group counts); see task.py.
    joint: dict[str, np.ndarray] = field(default_factory=dict)
    #: Per-client activity (bounded; see security.py).
    clients: dict[str, ClientStats] = field(default_factory=dict)
    #: Sub-profile per segment value with rows (``region=north``); see segments.py.
    segments: dict[str, Profile] = field(default_factory=dict)

    def merge(self, other: Profile) -> Profile:
        names = list(dict.fromkeys([*self.columns, *other.columns]))
        empty = ColumnProfile()
        return Profile(
            rows=self.rows + other.rows,
            columns={
                n: self.columns.get(n, empty).merge(other.columns.get(n, empty)) for n in names
            },
            unexpected=self.unexpected + other.unexpected,
            start=_pick(min, self.start, other.start),
            end=_pick(max, self.end, other.end),
            joint=add_tallies(self.joint, other.joint),
            clients=merge_clients(self.clients, other.clients),
            segments=_merge_segments(self.segments, other.segments),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows}
        if self.start is not None:
            out["start"] = self.start.isoformat()
        if self.end is not None:
            out["end"] = self.end.isoformat()
        out["columns"] = {n: c.to_dict() for n, c in self.columns.items()}
        if self.unexpected:
            out["unexpected"] = dict(self.unexpected)
        if self.joint:
            out["joint"] = {k: _tally_to_dict(v) for k, v in self.joint.items()}
        if self.clients:
            out["clients"] = {k: v.to_dict() for k, v in self.clients.items()}
        if self.segments:
            out["segments"] = {k: v.to_dict() for k, v in self.segments.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        return cls(
            rows=int(d["rows"]),
            columns={str(n): ColumnProfile.from_dict(c) for n, c in d["columns"].items()},
            unexpected=Counter({str(k): int(v) for k, v in (d.get("unexpected") or {}).items()}),
            start=datetime.fromisoformat(d["start"]) if d.get("start") else None,
            end=datetime.fromisoformat(d["end"]) if d.get("end") else None,
            joint={str(k): upgrade_tally(str(k), _tally_from_dict(v))
                   for k, v in (d.get("joint") or {}).items()},
            clients={str(k): ClientStats.from_dict(v)
                     for k, v in (d.get("clients") or {}).items()},
            segments={str(k): Profile.from_dict(v)
                      for k, v in (d.get("segments") or {}).items()},
        )


def _merge_segments(a: dict[str, Profile], b: dict[str, Profile]) -> dict[str, Profile]:
    if not b:
        return dict(a)
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k].merge(v) if k in out else v
    return out


def add_tallies(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], sign: int = 1
) -> dict[str, np.ndarray]:
    """Element-wise ``a + sign * b`` of two tally dictionaries (missing keys are zero)."""
    out = {k: v.copy() for k, v in a.items()}
    for k, v in b.items():
        out[k] = out[k] + sign * v if k in out else sign * v.copy()
    return out


#: A float tally whose cells are all whole multiples of 2^-GRID_BITS (sums of the label
#: model's P(positive), kept on that grid so they add exactly) is written as those whole
#: numbers: the same bits back, in a third of the bytes.
GRID_BITS = 20


def _tally_to_dict(t: np.ndarray) -> dict[str, Any]:
    """Sparse form: shape, flat positions of the non-zero cells and their values (a float
    tally on the 2^-20 grid as whole multiples of it, with ``grid: 20``).

    >>> _tally_to_dict(np.array([0.0, 0.5, 2.0 ** -20]))
    {'shape': [3], 'at': [1, 2], 'grid': 20, 'values': [524288, 1]}
    >>> _tally_from_dict(_tally_to_dict(np.array([0.0, 0.5, 2.0 ** -20]))).tolist()
    [0.0, 0.5, 9.5367431640625e-07]
    """
    flat = t.ravel()
    at = np.flatnonzero(flat)
    values = flat[at]
    out: dict[str, Any] = {"shape": list(t.shape), "at": at.tolist()}
    if t.dtype.kind in "iu":
        out["values"] = [int(v) for v in values]
        return out
    scaled = np.ldexp(values, GRID_BITS)
    if values.size and np.all(np.abs(scaled) < 2.0 ** 53) and np.all(scaled == np.round(scaled)):
        out["grid"] = GRID_BITS
        out["values"] = [int(v) for v in scaled]
        return out
    out["values"] = [float(v) for v in values]
    return out


def _tally_from_dict(d: dict[str, Any]) -> np.ndarray:
    shape = tuple(int(s) for s in d["shape"])
    values = d.get("values") or []
    grid = d.get("grid")
    is_int = grid is None and all(isinstance(v, int) for v in values)
    out = np.zeros(int(np.prod(shape)), dtype=np.int64 if is_int else float)
    if grid is not None:
        values = np.ldexp(np.asarray(values, dtype=float), -int(grid))
    out[np.asarray(d.get("at") or [], dtype=np.int64)] = values
    return out.reshape(shape)


def merge(*profiles: Profile) -> Profile:
    """Merge any number of profiles; ``merge()`` of nothing is the empty profile."""
    out = Profile()
    for p in profiles:
        if not isinstance(p, Profile):
            raise SuiteError("profiles", f"expected Profile objects (from profile() or "
                                         f"Suite.profile()), got a {type(p).__name__}")
        out = out.merge(p)
    return out


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
            from watchkeeper.profiles.text import describe_into  # it builds on this module

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


def service_only(table: pa.Table) -> np.ndarray | None:
    """Rows that carry nothing but service columns (``_latency_ms``, ``_error``…), as the
    ASGI middleware logs them; None when there are none. They count for latency and errors
    only: not as rows (with every feature missing), nor as a client's inputs."""
    if not any(name in RESERVED for name in table.column_names):
        return None
    others = [table.column(name) for name in table.column_names if name not in RESERVED]
    if not others:
        return np.ones(table.num_rows, dtype=bool) if table.num_rows else None
    if any(column.null_count == 0 for column in others):
        return None  # the usual case, answered without looking at a value
    empty = np.ones(table.num_rows, dtype=bool)
    for column in others:
        empty &= np.asarray(column.is_null(nan_is_null=True).to_numpy(zero_copy_only=False),
                            dtype=bool)
    return empty if empty.any() else None


def profile(data: Any, schema: Schema) -> Profile:
    """Profile a batch of rows (any input :func:`watchkeeper.io.tables.to_table` accepts)."""
    if not isinstance(schema, Schema):
        raise SuiteError("schema", f"expected a Schema (a suite's .schema, or infer_schema()), "
                                   f"got a {type(schema).__name__}")
    everything = to_table(data)  # a Table is returned as is, once its column names are checked
    service = service_only(everything)
    table = everything if service is None else everything.filter(pa.array(~service))
    out = Profile(rows=table.num_rows)
    present = set(table.column_names)
    aligned: dict[str, np.ndarray] = {}
    embedded: dict[str, np.ndarray] = {}
    for spec in schema:
        if spec.role == Role.IGNORE:
            continue
        if spec.codebook is not None:  # vectors, a group of columns, or embedded text
            out.columns[spec.name] = profile_embedding(table, spec, embedded)
        elif spec.name in present:
            out.columns[spec.name] = profile_column(table.column(spec.name), spec, aligned)
        else:
            out.columns[spec.name] = ColumnProfile()
    for name in table.column_names:
        if name not in schema.columns and name not in RESERVED:
            out.unexpected[name] = table.num_rows
    if schema.task is not None:
        out.joint = tally(row_codes(table, schema.task), schema.task)
    out.joint.update(embedded)
    out.joint.update(service_tallies(everything))
    for rule in schema.rules:  # counted on the rows profiled (service-only rows are not)
        out.joint[rule.key] = rule.tally(table)
    if schema.multivariate is not None:
        out.joint.update(schema.multivariate.tallies(table, aligned))
    if schema.security is not None:
        unseen = {n for n, c in out.columns.items() if c.bins is not None and c.bins[-1] > 0
                  and schema.columns[n].categories is not None}
        scores = schema.security.score(table, aligned, unseen)
        out.joint.update(schema.security.tallies(scores))
        out.clients = client_stats(schema.security, table, scores.ood, aligned)
    if schema.segments:
        out.segments = segment_profiles(table, schema, profile)
    return out


def bin_codes(column: pa.ChunkedArray | pa.Array, spec: Column) -> np.ndarray:
    """Bin index of every valid value of a column, in row order (missing/invalid dropped)."""
    if spec.kind == Kind.NUMERIC:
        return numeric_codes(numbers(column).finite, spec.edges or [0.0])
    assert spec.categories is not None
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    index = {c: i for i, c in enumerate(spec.categories)}
    overflow = len(spec.categories) + (0 if spec.truncated else 1)
    out = []
    for chunk in chunks:
        encoded = chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode()
        labels = [category_label(v) for v in encoded.dictionary.to_pylist()]
        mapping = np.array([index.get(lab, overflow) for lab in labels] or [0], dtype=np.int64)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        valid = ~np.asarray(encoded.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if pa.types.is_floating(encoded.dictionary.type):
            nan = np.array([v != v for v in encoded.dictionary.to_pylist()] or [False])
            valid &= ~nan[np.where(valid, indices, 0).astype(np.int64)]
        out.append(mapping[indices[valid].astype(np.int64)])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
