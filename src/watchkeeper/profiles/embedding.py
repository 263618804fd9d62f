"""The profile of an embedding (or embedded-text) column: code counts as bins, plus the
moments of the vectors' norms and a tally of their distances to their nearest centroid.

Counts merge by addition like any bins; the distance tally (rows, sum, sum of squares)
too. Values that are not vectors of the codebook's length, or hold NaN/inf, are counted
as invalid, never raised.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.embedding import Codebook, vectors
from watchkeeper.baseline.schema import Column, Schema
from watchkeeper.profiles.column import ColumnProfile
from watchkeeper.profiles.service import service_only
from watchkeeper.stats.moments import Moments

if TYPE_CHECKING:
    from watchkeeper.profiles.core import Profile

#: The joint tally of a column's distances to the nearest centroid: rows, sum, sum of squares.
DISTANCE_TALLY = "embedding_distance:{}"


def held_out(table: pa.Table, spec: Column) -> pa.Table:
    """The reference rows the column's codebook (and text encoder) were not fitted on, when
    ``table`` is the reference ``init`` fitted them on; else ``table`` itself."""
    book = spec.codebook
    fitted = None if book is None else book.fitted_on
    if fitted is None or fitted.size != table.num_rows or fitted.all():
        return table
    return table.filter(pa.array(~fitted))


def codes(table: pa.Table, spec: Column) -> np.ndarray:
    """The code of every valid vector of the column, in row order."""
    assert spec.codebook is not None
    found = vectors(table, spec)
    if found is None or found.matrix.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return spec.codebook.assign(found.matrix)[0]


def cross_fit(reference: Profile, table: pa.Table, schema: Schema) -> Profile:
    """``reference`` (the profile of ``table``, the reference ``init`` fitted the codebooks
    on) with each embedding column profiled on the rows its codebook was not fitted on: the
    fitted rows sit nearer their centroids, and in a code mix slightly apart from fresh
    data's, so counting them would bias the reference (cross-fitting)."""
    service = service_only(table)
    for spec in schema:
        book = spec.codebook
        if book is None or book.fitted_on is None or book.fitted_on.size != table.num_rows \
                or spec.name not in reference.columns:
            continue
        keep = ~book.fitted_on if service is None else ~book.fitted_on & ~service
        if not keep.any():
            continue
        joint: dict[str, np.ndarray] = {}
        reference.columns[spec.name] = profile_embedding(table.filter(pa.array(keep)), spec,
                                                         joint)
        reference.joint.pop(DISTANCE_TALLY.format(spec.name), None)
        reference.joint.update(joint)
    return reference


def profile_embedding(table: pa.Table, spec: Column, joint: dict[str, np.ndarray]) -> ColumnProfile:
    """Column profile of an embedding; its distance tally is added to ``joint``."""
    book: Codebook | None = spec.codebook
    assert book is not None
    try:
        found = vectors(table, spec)
    except (pa.ArrowException, TypeError, ValueError):
        column = table.column(spec.name) if spec.name in table.column_names else None
        missing = 0 if column is None else column.null_count
        return ColumnProfile(count=table.num_rows, missing=missing,
                             invalid=table.num_rows - missing,
                             bins=np.zeros(book.n_bins, dtype=np.int64),
                             types=Counter({"other": table.num_rows}))
    if found is None:
        return ColumnProfile()
    matrix = found.matrix
    bins = np.zeros(book.n_bins, dtype=np.int64)
    cp = ColumnProfile(count=found.rows, missing=found.missing, invalid=found.invalid,
                       bins=bins, types=Counter(found.types))
    if matrix.shape[0] and matrix.shape[1] == book.dim:
        assigned, dist = book.assign(matrix)
        cp.bins = np.bincount(assigned, minlength=book.n_bins).astype(np.int64)
        norms = np.linalg.norm(matrix, axis=1)
        cp.moments = Moments.of(norms)
        cp.min, cp.max = float(norms.min()), float(norms.max())
        joint[DISTANCE_TALLY.format(spec.name)] = np.array(
            [float(dist.size), float(dist.sum()), float(np.square(dist).sum())])
    elif matrix.shape[0]:  # vectors of another length than the codebook's
        cp.invalid += matrix.shape[0]
    return cp
