"""One rule for missing values, whatever the input: a text cell that is blank (empty or
only spaces) or one of :data:`NA_TEXTS` is missing, exactly as a null or NaN is."""

from __future__ import annotations

import weakref

import pyarrow as pa
import pyarrow.compute as pc

#: Text read as a missing value in every input (CSV cells, JSON, pandas/polars/Arrow
#: strings), besides blank text: pandas' default NA spellings plus "?" (UCI data sets).
NA_TEXTS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
            "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?")
_NA_SET = pa.array(NA_TEXTS, type=pa.string())


def is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _na_mask(strings: pa.Array) -> pa.Array | None:
    """True where a text value is blank or an NA spelling, False elsewhere (nulls too);
    None when there is no such value (the common case, checked without building a mask)."""
    spelled = pc.is_in(strings, value_set=_NA_SET.cast(strings.type))
    spaces = pc.utf8_is_space(strings)
    has_spelled, has_spaces = pc.any(spelled).as_py(), pc.any(spaces).as_py()
    if not (has_spelled or has_spaces):
        return None
    if not has_spaces:
        return spelled
    return pc.fill_null(pc.or_(spelled, spaces), False)


def _null_where_na(chunk: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(chunk.type):
        if not is_text(chunk.type.value_type):
            return chunk
        na = _na_mask(chunk.dictionary)
        if na is None:
            return chunk
        rows = pc.fill_null(pc.array_take(na, chunk.indices), False)
        indices = pc.if_else(rows, pa.scalar(None, chunk.indices.type), chunk.indices)
        return pa.DictionaryArray.from_arrays(indices, chunk.dictionary)
    na = _na_mask(chunk)
    if na is None:
        return chunk
    return pc.if_else(na, pa.scalar(None, chunk.type), chunk)


#: The tables :func:`missing_as_null` returned (by id, while they live): a Table is
#: immutable, so one of them needs no second pass (``init`` hands its table to the schema,
#: the profile and ``to_table`` in turn; each pass costs ~0.1 s per 1M rows and text column).
_CLEAN: dict[int, weakref.ref[pa.Table]] = {}


def mark_clean(table: pa.Table) -> pa.Table:
    key = id(table)
    _CLEAN[key] = weakref.ref(table, lambda _: _CLEAN.pop(key, None))
    return table


def _is_clean(table: pa.Table) -> bool:
    ref = _CLEAN.get(id(table))
    return ref is not None and ref() is table


def rows_of(table: pa.Table, part: pa.Table) -> pa.Table:
    """``part``, some of ``table``'s rows (a slice, filter or take): it needs no pass of
    :func:`missing_as_null` when ``table`` needs none (the windows of ``check``)."""
    return mark_clean(part) if _is_clean(table) else part


def missing_as_null(table: pa.Table) -> pa.Table:
    """The table with blank text and NA spellings (:data:`NA_TEXTS`) as nulls in its text
    columns, so "" is a missing value in every input, never a category of its own.

    >>> missing_as_null(pa.table({"a": ["x", "", " ", "NA", None]})).column("a").to_pylist()
    ['x', None, None, None, None]
    """
    if _is_clean(table):
        return table
    for i, column in enumerate(table.columns):
        t = column.type
        if not (is_text(t) or (pa.types.is_dictionary(t) and is_text(t.value_type))):
            continue
        old = column.chunks
        chunks = [_null_where_na(chunk) for chunk in old]
        if any(a is not b for a, b in zip(chunks, old, strict=True)):
            table = table.set_column(i, table.field(i), pa.chunked_array(chunks, t))
    return mark_clean(table)
