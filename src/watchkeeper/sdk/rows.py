"""Buffered SDK rows to Arrow tables, in the background thread, counting what does not fit.

One bad value never loses a row and one bad row never loses a batch: each value is either
kept, coerced or nulled, and every value that had to be touched is counted as *bad*.

Bad values, by construction:

- a float that is NaN or ±inf (kept as is in a number column, where profiling counts it as
  missing or invalid; nulled in the reserved columns);
- a value that is not a scalar (bytes, dict, set, arbitrary objects, complex) or an integer
  outside int64 (nulled); a list, tuple or 1-D numpy array is a vector (below), nulled only
  where it is not one;
- in a vector column (one list, tuple or 1-D numpy array of numbers a row: an embedding,
  sent as an Arrow list of float64 that the server's embedding monitor reads): a vector
  of another length than the batch's most common one, or holding NaN or ±inf (kept: the
  server's profile counts it as an invalid vector); a vector of non-numbers, or a scalar
  among vectors (nulled); a scalar column's vector, or a vector column's scalar, when the
  two meet in one batch (the fewer of the two are nulled);
- a string longer than :data:`MAX_STRING` characters (truncated), or with lone surrogates
  (not valid UTF-8: replaced);
- a ``features`` argument that is neither a mapping, nor a sequence aligned with the
  client's ``feature_names``, nor None (one bad value; the row is kept without features);
  a sequence of the wrong length (one bad value; the aligned part is kept);
- a feature key that is not a non-empty string of at most :data:`MAX_KEY` characters, that
  names a column the client fills itself (prediction, proba, id, ``_ts`` …), or that is one
  new column too many (:data:`MAX_COLUMNS` per batch): one per row where it occurs;
- a reserved field of the wrong kind: ``ts`` not a number or datetime, ``latency_ms`` not a
  number ≥ 0, ``client`` not a string or integer, ``error`` not a bool, number, string or
  exception (nulled).

Not bad: None (missing), bools, ints and floats in one column (a number column), numbers
and strings in one column (a string column: numbers are written as category labels, and
profiling reads them back as numbers), dates and datetimes (ISO strings), numpy scalars,
decimals (floats).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchkeeper.sdk.values import (
    Tally,
    check_strings,
    check_vectors,
    client_value,
    column_array,
    count_true,
    error_value,
    is_list_type,
    is_text,
    latency_value,
    numbers_within,
    reserved_column,
    ts_value,
)
from watchkeeper.wire import CLIENT, ERROR, LATENCY, TS

MAX_KEY = 1_000  # characters in a feature name
MAX_COLUMNS = 1_000  # feature columns per batch


@dataclass(frozen=True)
class Columns:
    """Column names of the events a client builds."""

    feature_names: tuple[str, ...] | None
    prediction: str
    proba: str | None
    id: str | None

    @property
    def proba_name(self) -> str:
        return self.proba or "proba"

    @property
    def id_name(self) -> str:
        return self.id or "id"

    def taken(self) -> frozenset[str]:
        """Names a feature may not use: the client fills these columns itself."""
        return frozenset((self.prediction, self.proba_name, self.id_name, TS, LATENCY, CLIENT,
                          ERROR))


# -- whole batches ----------------------------------------------------------------------------
_EMPTY: dict[str, Any] = {}


def _features_dict(f: Any, names: tuple[str, ...] | None, tally: Tally) -> dict[Any, Any]:
    """The ``features`` argument of one row as a dict (counting what cannot be one)."""
    if isinstance(f, Mapping):
        try:
            return dict(f)
        except Exception:  # a broken mapping
            tally.add(1, "features: unreadable mapping")
            return _EMPTY
    if isinstance(f, (str, bytes, bytearray, memoryview)):
        tally.add(1, f"features: {type(f).__name__} is not a mapping or a sequence")
        return _EMPTY
    seq: Any = None
    if type(f).__module__.startswith("pandas") and hasattr(f, "items"):  # a pandas Series
        try:
            return dict(f.items())
        except Exception:
            tally.add(1, "features: unreadable Series")
            return _EMPTY
    if type(f).__module__ == "numpy" and hasattr(f, "ndim"):
        if f.ndim == 1:
            seq = f.tolist()
    elif isinstance(f, Sequence):
        seq = f
    if seq is None:
        tally.add(1, f"features: {type(f).__name__} is not a mapping or a sequence")
        return _EMPTY
    if names is None:
        tally.add(1, "features: a sequence needs the client's feature_names")
        return _EMPTY
    try:
        n = len(seq)
        if n != len(names):
            tally.add(1, f"features: {n} values for {len(names)} feature_names")
        return dict(zip(names, seq, strict=False))
    except Exception:
        tally.add(1, "features: unreadable sequence")
        return _EMPTY


def _key_ok(k: Any, taken: frozenset[str]) -> bool:
    if not isinstance(k, str) or not 0 < len(k) <= MAX_KEY or k in taken:
        return False
    try:
        k.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def feature_columns(
    features: Sequence[Any],
    names: tuple[str, ...] | None,
    taken: frozenset[str],
    tally: Tally,
) -> dict[str, list[Any]]:
    """Transpose the rows' features into columns: ``names`` first, then new keys, sorted."""
    dicts: list[dict[Any, Any]] = []
    for f in features:
        if type(f) is dict:
            dicts.append(f)
        elif f is None:
            dicts.append(_EMPTY)
        else:
            dicts.append(_features_dict(f, names, tally))
    if names and len(names) > 1 and set(map(len, dicts)) == {len(names)}:
        # the usual case, every row has exactly the named keys: transposed in C
        try:
            values = zip(*map(itemgetter(*names), dicts), strict=True)
            return {k: list(v) for k, v in zip(names, values, strict=True)}
        except KeyError:
            pass
    keys: set[Any] = set().union(*dicts) if dicts else set()
    known = set(names or ())
    new = sorted(k for k in keys if k not in known and _key_ok(k, taken))
    allowed = known | set(new[:MAX_COLUMNS])
    if len(keys - allowed):
        for d in dicts:
            for k in d:
                if k not in allowed:
                    why = ("new column over the limit" if _key_ok(k, taken) else
                           "reserved or invalid feature name")
                    tally.add(1, f"features: {why}")
    columns = list(names or ()) + new[:MAX_COLUMNS]
    return {k: [d.get(k) for d in dicts] for k in columns}


def _any_value(values: Sequence[Any]) -> bool:
    # no ``count(None)``: that compares with ==, which numpy arrays answer elementwise
    return any(v is not None for v in values)


def events_table(rows: Sequence[tuple[Any, ...]], spec: Columns, tally: Tally) -> pa.Table:
    """Rows as the client buffers them, ``(features, prediction, proba, id, latency_ms,
    client, ts, error)``, to one Arrow table."""
    features, preds, probas, ids, latencies, clients, stamps, errors = zip(*rows, strict=True)
    arrays: dict[str, pa.Array] = {}
    for name, values in feature_columns(features, spec.feature_names, spec.taken(),
                                        tally).items():
        arrays[name] = column_array(values, tally, name)
    arrays[spec.prediction] = column_array(list(preds), tally, spec.prediction)
    if spec.proba is not None or _any_value(probas):
        arrays[spec.proba_name] = column_array(list(probas), tally, spec.proba_name)
    if spec.id is not None or _any_value(ids):
        arrays[spec.id_name] = column_array(list(ids), tally, spec.id_name)
    arrays[TS] = reserved_column(stamps, pa.float64(), ts_value, tally)
    if _any_value(latencies):
        arrays[LATENCY] = reserved_column(latencies, pa.float64(), latency_value, tally)
    if _any_value(clients):
        arrays[CLIENT] = reserved_column(clients, pa.string(), client_value, tally)
    if _any_value(errors):
        arrays[ERROR] = reserved_column(errors, pa.bool_(), error_value, tally)
    return pa.table(arrays)


def unify(tables: list[pa.Table], tally: Tally | None = None) -> pa.Table:
    """Tables of consecutive parts of a batch as one, their column types unified as within a
    part: numbers and strings give strings, ints and floats give floats; vectors and scalars
    give vectors when more rows are vectors, else scalars (the others nulled, counted in
    ``tally``)."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, set()).add(f.type)
    target = {name: _common_type(found) for name, found in types.items()}
    for name, found in types.items():
        if any(is_list_type(t) for t in found) and not all(
                is_list_type(t) or pa.types.is_null(t) for t in found):
            listed = sum(t.num_rows - t.column(name).null_count for t in tables
                         if name in t.column_names and is_list_type(t.schema.field(name).type))
            values = sum(t.num_rows - t.column(name).null_count for t in tables
                         if name in t.column_names)
            target[name] = (pa.list_(pa.float64()) if 2 * listed >= values
                            else _common_type({t for t in found if not is_list_type(t)}))
    fixed = []
    for t in tables:
        for i, f in enumerate(t.schema):
            want = target[f.name]
            if f.type == want:
                continue
            if is_list_type(f.type) == is_list_type(want) or pa.types.is_null(f.type):
                column = t.column(i).cast(want)
            else:  # a vector among scalars or a scalar among vectors
                if tally is not None:
                    tally.add(t.num_rows - t.column(i).null_count,
                              f"{f.name}: {f.type} among {want} in one batch")
                column = pa.chunked_array([pa.nulls(t.num_rows, want)])
            t = t.set_column(i, f.name, column)
        fixed.append(t)
    return pa.concat_tables(fixed, promote_options="permissive")


def _common_type(found: set[pa.DataType]) -> pa.DataType:
    kinds = {t for t in found if not pa.types.is_null(t)}
    if len(kinds) <= 1:
        return next(iter(kinds), pa.null())
    if all(is_list_type(t) for t in kinds):
        return pa.list_(pa.float64())
    if any(is_text(t) for t in kinds):
        return pa.string()
    if any(pa.types.is_floating(t) for t in kinds):
        return pa.float64()
    if any(pa.types.is_integer(t) for t in kinds):
        return pa.int64()
    return pa.string()


def labels_table(ids: list[Any], labels: list[Any], id_name: str, target: str,
                 tally: Tally) -> pa.Table:
    """Late labels: an id column and a target column (lengths already matched)."""
    return pa.table({id_name: column_array(ids, tally, id_name),
                     target: column_array(labels, tally, target)})


_KEEP_TYPES = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_null,
               pa.types.is_timestamp, pa.types.is_date, pa.types.is_decimal,
               pa.types.is_dictionary, pa.types.is_time, pa.types.is_duration)


def clean_frame(table: pa.Table, tally: Tally) -> pa.Table:
    """A batch handed over whole: count NaN/inf, truncate long strings, check vector columns
    (lists of numbers), null other nested and binary columns (counting their values)."""
    for i, name in enumerate(table.column_names):
        column = table.column(i).combine_chunks() if table.num_rows else table.column(i)
        if isinstance(column, pa.ChunkedArray):
            continue  # no rows
        t = column.type
        if pa.types.is_floating(t):
            tally.add(count_true(pc.invert(pc.is_finite(column))), f"{name}: NaN or inf")
        elif is_text(t):
            table = table.set_column(i, name, check_strings(column, tally, name))
        elif is_list_type(t) and not numbers_within(t):
            tally.add(len(column) - column.null_count, f"{name}: {t} values are not scalars")
            table = table.set_column(i, name, pa.nulls(len(column)))
        elif is_list_type(t):
            table = table.set_column(i, name, check_vectors(column, tally, name))
        elif not any(check(t) for check in _KEEP_TYPES):
            tally.add(len(column) - column.null_count, f"{name}: {t} values are not scalars")
            table = table.set_column(i, name, pa.nulls(len(column)))
    return table


def frame_table(frame: Any, logged_at: float, tally: Tally) -> pa.Table:
    """A batch handed to ``log_batch`` as one table, with ``_ts`` (the time it was handed
    over) added when it has none. Lists of dict rows are read value by value, like
    ``log()`` rows; data frames and Arrow tables column by column (:func:`clean_frame`)."""
    if isinstance(frame, (list, tuple)):
        columns = feature_columns(frame, None, frozenset(), tally)
        arrays = {k: column_array(v, tally, k) for k, v in columns.items()}
        rows = len(frame)
    else:
        from watchkeeper.io.tables import to_table

        table = clean_frame(to_table(frame), tally)
        arrays = dict(zip(table.column_names, table.columns, strict=True))
        rows = table.num_rows
    if TS not in arrays:
        arrays[TS] = pa.array(np.full(rows, logged_at, dtype=np.float64))
    return pa.table(arrays)


def is_batch(x: Any) -> bool:
    """Whether ``x`` is a batch of rows, as scikit-learn-style ``predict`` takes: a 2-D
    array, a data frame, an Arrow table or batch, or a list of dict or sequence rows."""
    if isinstance(x, (pa.Table, pa.RecordBatch)):
        return True
    module = type(x).__module__
    if module == "numpy":
        return getattr(x, "ndim", 0) == 2
    if module.startswith(("pandas", "polars")):
        return hasattr(x, "columns")
    if isinstance(x, list) and x:
        first = x[0]
        return isinstance(first, Mapping) or (
            isinstance(first, Sequence) and not isinstance(first, (str, bytes)))
    return False


def batch_rows(x: Any) -> int:
    """Rows in a batch handed to ``log_batch`` (a 1-D array is one row)."""
    if hasattr(x, "num_rows"):
        return int(x.num_rows)
    shape = getattr(x, "shape", None)
    if type(x).__module__ == "numpy" and shape is not None:
        return 1 if len(shape) == 1 else int(shape[0])
    return len(x)


def _matrix_table(x: Any, names: tuple[str, ...] | None, tally: Tally) -> pa.Table:
    """A 2-D numpy array (a 1-D one is one row) as a table, its columns named by
    ``names`` when they fit, else ``x0``, ``x1``, …"""
    matrix = np.asarray(x)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise ValueError(f"a {matrix.ndim}-D array is not a batch of rows")
    width = matrix.shape[1]
    if names is None or len(names) != width:
        if names is not None:
            tally.add(1, f"log_batch: {width} columns for {len(names)} feature_names")
        names = tuple(f"x{j}" for j in range(width))
    if matrix.dtype == object:
        return pa.table({n: column_array(matrix[:, j].tolist(), tally, n)
                         for j, n in enumerate(names)})
    return pa.table({n: pa.array(matrix[:, j]) for j, n in enumerate(names)})


def _column_values(values: Any) -> Any:
    """Predictions or ids as a 1-D sequence (an (n, 1) array is squeezed)."""
    if type(values).__module__.startswith(("pandas", "polars")) and hasattr(values, "columns"):
        values = values.to_numpy()
    if type(values).__module__ == "numpy" and getattr(values, "ndim", 1) == 2 \
            and values.shape[1] == 1:
        values = values[:, 0]
    return values


def proba_values(probas: Any) -> Any:
    """A classifier's scores as one per row: ``predict_proba``'s (n, 2) output gives the
    positive class's column, an (n, k) one the top class's probability."""
    if type(probas).__module__.startswith(("pandas", "polars")) and hasattr(probas, "columns"):
        probas = probas.to_numpy()
    if isinstance(probas, list) and probas and isinstance(probas[0], (list, tuple)):
        probas = np.asarray(probas, dtype=float)
    if type(probas).__module__ == "numpy" and getattr(probas, "ndim", 1) == 2:
        width = probas.shape[1]
        return probas[:, 0] if width == 1 else probas[:, 1] if width == 2 else probas.max(1)
    return probas


def _fitted(values: Any, rows: int, tally: Tally, name: str) -> list[Any]:
    """A per-row column of length ``rows`` (a scalar is repeated; a wrong length is cut or
    padded with nulls and counted once)."""
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        return [values] * rows
    out = as_list(values)
    if len(out) != rows:
        tally.add(1, f"log_batch: {len(out)} {name} for {rows} rows")
        out = out[:rows] + [None] * (rows - len(out))
    return out


def batch_table(x: Any, extra: dict[str, Any], spec: Columns, logged_at: float,
                tally: Tally) -> pa.Table:
    """A batch handed to ``log_batch``: its features (``x``) with the predictions, scores,
    ids and service fields given alongside (``extra``, by column name) as columns."""
    if type(x).__module__ == "numpy":
        table = clean_frame(_matrix_table(x, spec.feature_names, tally), tally)
    elif isinstance(x, list) and x and not isinstance(x[0], Mapping):
        columns = feature_columns(x, spec.feature_names, spec.taken(), tally)
        table = pa.table({k: column_array(v, tally, k) for k, v in columns.items()})
    else:
        table = frame_table(x, logged_at, tally)
    rows = table.num_rows
    readers = {LATENCY: (pa.float64(), latency_value), CLIENT: (pa.string(), client_value),
               ERROR: (pa.bool_(), error_value), TS: (pa.float64(), ts_value)}
    for name, values in extra.items():
        if values is None and (name != TS or TS in table.column_names):
            continue
        if name in readers:
            kind, one = readers[name]
            value = logged_at if name == TS and values is None else values
            column = reserved_column(_fitted(value, rows, tally, name), kind, one, tally)
        else:
            column = column_array(_fitted(_column_values(values), rows, tally, name), tally,
                                  name)
        where = table.schema.get_field_index(name)
        table = (table.set_column(where, name, column) if where >= 0
                 else table.append_column(name, column))
    return table


def as_list(values: Any) -> list[Any]:
    """A column-like argument (list, tuple, numpy, pandas, polars, Arrow) as a Python list."""
    if isinstance(values, list):
        return values
    for attr in ("to_pylist", "tolist", "to_list"):
        method = getattr(values, attr, None)
        if callable(method):
            out = method()
            if isinstance(out, list):
                return out
    return list(values)
