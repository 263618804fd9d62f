"""Profile: a mergeable summary of a batch of rows against the suite's binning plan.

A profile keeps, per column, counts (rows, missing, invalid), mergeable moments, min/max,
and bin counts; nothing that grows with the number of rows. Merging two profiles is exact
for every count and associative, so profiles roll up from minutes to days and from
partitions to a whole data set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.schema import Column, Kind, Role, Schema
from watchkeeper.errors import SuiteError
from watchkeeper.io.tables import to_table
from watchkeeper.io.values import category_label, numbers
from watchkeeper.profiles.clients import ClientStats, client_stats, merge_clients
from watchkeeper.profiles.column import ColumnProfile, numeric_codes, pick_bound, profile_column
from watchkeeper.profiles.embedding import profile_embedding
from watchkeeper.profiles.segments import segment_profiles
from watchkeeper.profiles.service import service_only, service_tallies
from watchkeeper.profiles.task import row_codes, tally, upgrade_tally
from watchkeeper.wire import RESERVED

OTHER = "__other__"
UNSEEN = "__unseen__"


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
            start=pick_bound(min, self.start, other.start),
            end=pick_bound(max, self.end, other.end),
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
    for group, model in schema.multivariate_groups.items():
        out.joint.update(model.tallies(table, aligned, group))
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
