"""Turn whatever tabular input a user has into a pyarrow Table.

Accepted: pyarrow Tables and RecordBatches, pandas and polars DataFrames, lists of dict
rows, and paths to parquet, CSV, JSON-lines, Arrow/Feather files. Columns with mixed
Python types (a pandas object column holding numbers and strings) are kept as strings so
nothing is lost; profiling then counts the values that do not fit the schema as invalid.

One rule for missing values, whatever the input (:mod:`watchkeeper.io.missing`). A CSV
file's layout is guessed from its first lines or given (:mod:`watchkeeper.io.delimited`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from watchkeeper.errors import DataError
from watchkeeper.io.delimited import CsvLayout, read_csv
from watchkeeper.io.delta import is_delta, live_files
from watchkeeper.io.formats import format_of
from watchkeeper.io.missing import missing_as_null
from watchkeeper.io.names import check_columns, check_unique


def read_table(path: str | os.PathLike[str], columns: list[str] | None = None,
               layout: CsvLayout | None = None) -> pa.Table:
    """Read a data file into an Arrow table, with a one-line error when that fails.
    ``layout`` says how a CSV file is laid out (guessed when not given)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    fmt = "parquet" if p.is_dir() else format_of(p)  # a directory: a parquet data set
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            if p.is_dir() and is_delta(p):  # the live files of a Delta table, alone
                return _read_delta(p, columns)
            if p.is_dir():
                return pq.read_table(p, columns=columns)
            # one file: ParquetFile skips the dataset layer, whose import (pandas with it)
            # costs more than reading a million rows
            file = pq.ParquetFile(p)
            check_columns(columns or [], file.schema_arrow.names, str(p))
            return file.read(columns=columns)
        if fmt in ("csv", "tsv"):
            return read_csv(p, columns, layout or CsvLayout(), tsv=fmt == "tsv").table
        if fmt == "json":
            from pyarrow import json

            table = json.read_json(p)
            if columns:
                check_columns(columns, table.column_names, str(p))
            return table.select(columns) if columns else table
        from pyarrow import feather

        return feather.read_table(p, columns=columns)
    except DataError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, KeyError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{p}: cannot read as {fmt}: {first_line}") from exc


def _read_delta(path: Path, columns: list[str] | None) -> pa.Table:
    """The rows of a Delta table's live files (see :mod:`watchkeeper.io.delta`), with the
    columns of its ``column=value`` directories."""
    import pyarrow.dataset as ds

    files = live_files(path)
    if not files:
        raise DataError(f"{path}: the Delta table has no data files at its latest version")
    data = ds.dataset([str(f) for f in files], format="parquet", partitioning="hive",
                      partition_base_dir=str(path))
    if columns:
        check_columns(columns, data.schema.names, str(path))
    return data.to_table(columns=columns)


def _from_pandas(frame: Any) -> pa.Table:
    check_unique([str(n) for n in frame.columns])  # pandas allows them, Arrow does not
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    # Some object column mixes types. Convert column by column; the ones Arrow refuses
    # become strings (missing values stay missing) and are profiled as such.
    arrays = {}
    for name in frame.columns:
        series = frame[name]
        try:
            arrays[str(name)] = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            values = [None if _is_missing(v) else str(v) for v in series.tolist()]
            arrays[str(name)] = pa.array(values, type=pa.string())
    return pa.table(arrays)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _from_rows(rows: list[Mapping[str, Any]]) -> pa.Table:
    if rows and isinstance(rows[0], dict):
        first = rows[0].keys()
        if all(type(r) is dict and r.keys() == first for r in rows):
            try:  # every row has the same keys: Arrow's own conversion, ~4x faster
                return pa.Table.from_pylist(rows)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
                    OverflowError):
                pass  # mixed types in a column: column by column below
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(
                f"row {i} is a {type(row).__name__}, expected a mapping of column → value"
            )
        names.update(dict.fromkeys(map(str, row)))
    arrays = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            arrays[name] = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            arrays[name] = pa.array(
                [None if _is_missing(v) else str(v) for v in values], type=pa.string()
            )
    return pa.table(arrays)


def to_table(data: Any, param: str = "data") -> pa.Table:
    """Convert supported tabular input to a pyarrow Table; errors name ``param``, the
    argument ``data`` came from.

    >>> to_table([{"a": 1, "b": "x"}, {"a": 2.5}]).to_pydict()
    {'a': [1.0, 2.5], 'b': ['x', None]}
    """
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif isinstance(data, (str, os.PathLike)):
        table = read_table(data)
    elif type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        table = _from_pandas(data)
    elif type(data).__module__.startswith("polars") and hasattr(data, "to_arrow"):
        table = data.to_arrow()
    elif isinstance(data, list):
        table = _from_rows(data)
    elif isinstance(data, Iterable) and not isinstance(data, (bytes, Mapping)):
        table = _from_rows(list(data))
    else:
        raise DataError(
            f"{param}: cannot use a {type(data).__name__} as data; pass a pandas or polars "
            "DataFrame, a pyarrow Table, a list of dict rows, or a path to a parquet/CSV/JSON "
            "file"
        )
    check_unique(table.column_names)
    return missing_as_null(table)  # at once when it already went through it (read_csv)
