"""The suite file's embeddings: the ``embeddings:`` groups (name → its numeric columns) and
each embedding column's fitted codebook, read and written with field-named errors."""

from __future__ import annotations

from typing import Any

from watchkeeper.baseline.embedding import Codebook
from watchkeeper.baseline.schema import Column, Kind, Schema
from watchkeeper.errors import SuiteError
from watchkeeper.suite import file as suitefile


def bins_of(spec: Column) -> int:
    """Bins of a column's profile: its codes (plus "outside") for an embedding."""
    return spec.codebook.n_bins if spec.codebook is not None else spec.n_bins


def embedding_groups(schema: Schema) -> dict[str, list[str]]:
    """Embeddings made of several numeric columns: name → columns."""
    return {c.name: list(c.members) for c in schema if c.members}


def set_embedding_groups(schema: Schema, top: suitefile.Fields) -> None:
    """Give each embedding named in ``embeddings:`` its columns; each must be an embedding
    column of ``columns:``, its members columns of the suite."""
    groups = top.mapping("embeddings", {})
    for name in groups.data:
        spec = schema.columns.get(str(name))
        if spec is None or spec.kind != Kind.EMBEDDING:
            raise groups.error(str(name), "needs a column of kind embedding of that name in "
                                          "columns")
        listed = groups.items(str(name))
        if len(listed) < 2 or not all(isinstance(m, str) for m in listed):
            raise groups.error(str(name), "expected a list of at least 2 column names")
        for m in listed:
            if m not in schema.columns:
                raise groups.error(str(name), f"no column {m!r} in columns")
        spec.members = list(listed)
        if spec.codebook is not None and spec.codebook.dim != len(listed):
            raise groups.error(str(name), f"{len(listed)} columns, but its codebook has "
                                          f"{spec.codebook.dim} dimensions; re-run init")


def codebook_from_fields(f: suitefile.Fields) -> Codebook:
    """A column's codebook from its (decoded) suite-file entry."""
    raw: Any = f.data.get("codebook")
    try:
        return Codebook.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise SuiteError(f"{f.path}.codebook", f"malformed ({exc})", f.source) from None
