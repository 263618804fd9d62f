"""Read one Arrow column as numbers or as category labels, counting what does not fit.

Shared by schema inference and profiling so both see values the same way:
NaN and null are *missing*; ±inf and strings that are not numbers are *invalid*.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def type_class(arrow_type: pa.DataType) -> str:
    """Coarse physical type of a column: numeric, string, boolean, datetime, null or other."""
    if pa.types.is_dictionary(arrow_type):
        return type_class(arrow_type.value_type)
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "numeric"
    if pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if pa.types.is_null(arrow_type):
        return "null"
    return "other"


@dataclass(frozen=True)
class Numbers:
    """Finite values of a column plus the counts of missing and invalid entries."""

    finite: np.ndarray
    missing: int
    invalid: int
    values: np.ndarray | None = None  # every row in order, NaN where not a finite number


def _as_chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


_NAN = r"^\s*[+-]?nan(\(.*\))?\s*$"


def _chunk_to_float(chunk: pa.Array) -> tuple[np.ndarray, int]:
    """Float64 values (NaN for null) and the number of non-null entries that are not numbers."""
    kind = type_class(chunk.type)
    if pa.types.is_dictionary(chunk.type):
        chunk = chunk.dictionary_decode()
    if kind in ("numeric", "boolean"):  # (integers past 2**53 are rounded, not refused)
        return pc.cast(chunk, pa.float64(), safe=False).to_numpy(zero_copy_only=False), 0
    if kind == "null":
        return np.full(len(chunk), np.nan), 0
    if kind == "string":
        try:
            return pc.cast(chunk, pa.float64()).to_numpy(zero_copy_only=False), 0
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            import pandas as pd

            raw = chunk.to_pandas()
            parsed = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            # "nan" spelled out is missing, as when the whole chunk casts (above)
            spelled_nan = pc.match_substring_regex(chunk, _NAN, ignore_case=True)
            spelled_nan = pc.fill_null(spelled_nan, True).to_numpy(zero_copy_only=False)
            unparsable = np.isnan(parsed) & ~spelled_nan
            return parsed, int(unparsable.sum())
    # datetime, nested, binary: not numbers at all
    values = np.full(len(chunk), np.nan)
    return values, len(chunk) - chunk.null_count


def numbers(column: pa.ChunkedArray | pa.Array) -> Numbers:
    """Split a column into finite floats, missing (null/NaN) and invalid (±inf, non-numeric).

    >>> n = numbers(pa.array([1.0, None, float("nan"), float("inf"), 2.0]))
    >>> n.finite.tolist(), n.missing, n.invalid
    ([1.0, 2.0], 2, 1)
    """
    parts = []
    not_numbers = 0
    for chunk in _as_chunks(column):
        values, bad = _chunk_to_float(chunk)
        parts.append(values)
        not_numbers += bad
    if not parts:  # a chunked array with no chunks
        return Numbers(np.zeros(0), 0, 0)
    values = np.concatenate(parts) if len(parts) != 1 else parts[0]
    finite_mask = np.isfinite(values)
    n_finite = int(np.count_nonzero(finite_mask))
    if n_finite == values.size:
        return Numbers(values, 0, 0, values)
    n_nan = int(np.count_nonzero(np.isnan(values)))
    infinite = values.size - n_finite - n_nan
    aligned = np.where(finite_mask, values, np.nan)
    return Numbers(values[finite_mask], n_nan - not_numbers, infinite + not_numbers, aligned)


def whole_levels(finite: np.ndarray) -> np.ndarray | None:
    """The distinct values of finite numbers when all are whole (integer codes), else None.

    >>> whole_levels(np.array([1.0, 2.0, 1.0])).tolist(), whole_levels(np.array([0.5]))
    ([1.0, 2.0], None)
    """
    return np.unique(finite) if np.all(np.mod(finite, 1.0) == 0.0) else None


def category_label(value: object) -> str:
    """The category label of a Python value: whole floats as integers, booleans lowercase."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def category_counts(column: pa.ChunkedArray | pa.Array) -> tuple[Counter[str], int]:
    """Counts of each value as a category label, and the number of missing values.

    Labels are strings, whole floats are written as integers, so ``3``, ``3.0`` and
    ``"3"`` are the same category.

    >>> counts, missing = category_counts(pa.array(["a", "b", "a", None]))
    >>> dict(counts), missing
    ({'a': 2, 'b': 1}, 1)
    """
    counts: Counter[str] = Counter()
    missing = 0
    for chunk in _as_chunks(column):
        if pa.types.is_dictionary(chunk.type):
            indices = chunk.indices
            missing += chunk.null_count
            valid = pc.drop_null(indices).to_numpy(zero_copy_only=False)
            tally = np.bincount(valid.astype(np.int64), minlength=len(chunk.dictionary))
            for value, n in zip(chunk.dictionary.to_pylist(), tally.tolist(), strict=True):
                if n and _is_missing(value):  # a null or NaN in the dictionary itself
                    missing += n
                elif n:
                    counts[category_label(value)] += n
            continue
        if pa.types.is_floating(chunk.type):
            nan = pc.is_nan(chunk)
            missing += int(pc.sum(pc.fill_null(nan, False)).as_py() or 0)
            chunk = pc.filter(chunk, pc.invert(pc.fill_null(nan, False)))
        missing += chunk.null_count
        if type_class(chunk.type) == "other":
            chunk = pc.cast(chunk, pa.string()) if _castable(chunk) else chunk
        tally = pc.value_counts(chunk)
        for value, n in zip(
            tally.field("values").to_pylist(), tally.field("counts").to_pylist(), strict=True
        ):
            if value is not None:
                counts[category_label(value)] += n
    return counts, missing


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _castable(chunk: pa.Array) -> bool:
    try:
        pc.cast(chunk.slice(0, 1), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def epoch_seconds(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Seconds since the Unix epoch (UTC) of a timestamp, date or ISO-string column; NaN
    where missing or unparsable. Numbers are taken as seconds already.

    >>> epoch_seconds(pa.array(["1970-01-02T00:00:00", None])).tolist()
    [86400.0, nan]
    """
    import pandas as pd

    cls = type_class(column.type)
    if cls == "numeric":
        return numbers_with_nan(column)
    if cls == "datetime":
        series = column.to_pandas()
    else:
        series = pd.to_datetime(
            pd.Series(column.to_pylist(), dtype=object), errors="coerce", utc=True,
            format="ISO8601",
        )
    stamps = pd.Series(pd.to_datetime(series, utc=True)).dt.as_unit("us")
    epoch = pd.Timestamp(0, tz="UTC").as_unit("us")  # nanoseconds end in 2262: not any year
    return (stamps - epoch).dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)


def numbers_with_nan(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Float values in row order, NaN where missing or not a number."""
    parts = [_chunk_to_float(chunk)[0] for chunk in _as_chunks(column)]
    return np.concatenate(parts) if parts else np.zeros(0)


def label_codes(column: pa.ChunkedArray | pa.Array, levels: list[str]) -> np.ndarray:
    """Index of each value's label in ``levels``; len(levels) for anything else or missing."""
    index = {lab: i for i, lab in enumerate(levels)}
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = []
    for chunk in chunks:
        encoded = chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode()
        mapping = np.array(
            [index.get(category_label(v), len(levels)) if v is not None and v == v
             else len(levels) for v in encoded.dictionary.to_pylist()] + [len(levels)],
            dtype=np.int64,
        )
        idx = encoded.indices.to_numpy(zero_copy_only=False)
        idx = np.where(np.isnan(idx), len(mapping) - 1, idx) if idx.dtype.kind == "f" else idx
        out.append(mapping[idx.astype(np.int64)])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
