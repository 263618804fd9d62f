"""Profiles of text descriptors: each descriptor of a text column is summarised like a numeric
column (count, missing, invalid, moments, min/max, bins on the plan's edges) and kept in the
text column's profile under ``descriptors``, so windows merge exactly as bins do.

Monitors judge a descriptor with the numeric machinery by seeing it as a column of its own,
named ``<column>.<descriptor>``: :func:`descriptor_schema` and :func:`descriptor_window` give
that view of a suite's schema and of a window.
"""

from __future__ import annotations

import pyarrow as pa

from watchkeeper.baseline.schema import Column, Kind, Role, Schema
from watchkeeper.profiles.core import Profile


def descriptor_name(column: str, descriptor: str) -> str:
    """The name a descriptor goes by when judged as a column: ``review.oov_rate``."""
    return f"{column}.{descriptor}"


def descriptor_schema(spec: Column) -> Schema:
    """A schema of one numeric column per descriptor of a text column, binned on its plan."""
    assert spec.text is not None, f"{spec.name} has no text plan"
    out = Schema()
    for name, edges in spec.text.edges.items():
        full = descriptor_name(spec.name, name)
        out.columns[full] = Column(full, Kind.NUMERIC, Role.FEATURE, edges=list(edges))
    return out


def descriptor_window(window: Profile, column: str) -> Profile:
    """A window as the descriptor columns of one text column (none when it has no text)."""
    cp = window.columns.get(column)
    parts = {} if cp is None else cp.descriptors
    return Profile(rows=window.rows, start=window.start, end=window.end,
                   columns={descriptor_name(column, d): p for d, p in parts.items()})


def descriptor_table(column: pa.ChunkedArray | pa.Array, spec: Column) -> pa.Table:
    """A text column's descriptors per row as numeric columns (NaN where undefined), named
    as :func:`descriptor_schema` names them: what calibration resamples."""
    assert spec.text is not None, f"{spec.name} has no text plan"
    described = spec.text.describe(column)
    return pa.table({descriptor_name(spec.name, d): described.values[d]
                     for d in spec.text.edges})
