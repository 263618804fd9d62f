"""One value and one column of the rows an SDK client buffers, to Arrow, counting each
value that had to be touched (the bad values are listed in :mod:`watchkeeper.sdk.rows`);
and the reserved columns (``_ts``, ``_latency_ms``, ``_client``, ``_error``)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchkeeper.io.values import category_label
from watchkeeper.wire import CLIENT, ERROR, LATENCY, TS

MAX_STRING = 10_000  # characters; longer strings are truncated and counted

_INT64 = (-(2**63), 2**63 - 1)
_FALSE_WORDS = frozenset(("", "0", "false", "no", "none", "off", "f", "n"))


@dataclass
class Tally:
    """Bad values found while converting one batch, and a note on the last kind seen."""

    bad: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, n: int, what: str) -> None:
        if n:
            self.bad += n
            self.notes[what] = self.notes.get(what, 0) + n

    def merge(self, other: Tally) -> None:
        self.bad += other.bad
        for what, n in other.notes.items():
            self.notes[what] = self.notes.get(what, 0) + n

    def summary(self) -> str:
        parts = sorted(self.notes.items(), key=lambda kv: -kv[1])[:5]
        return "; ".join(f"{what}: {n}" for what, n in parts)


# -- one value ---------------------------------------------------------------------------------
# kinds of cleaned scalars
_NULL, _BOOL, _INT, _FLOAT, _STR = 0, 1, 2, 3, 4


def _is_missing_marker(v: Any) -> bool:
    """pandas.NA / NaT count as missing, like None (checked by name: no pandas import)."""
    return type(v).__name__ in ("NAType", "NaTType")


def clean_scalar(v: Any, tally: Tally, column: str) -> tuple[int, Any]:
    """(kind, value) of one value, counting it in ``tally`` when it is bad."""
    if v is None:
        return _NULL, None
    if isinstance(v, (bool, np.bool_)):
        return _BOOL, bool(v)
    if isinstance(v, (int, np.integer)):
        i = int(v)
        if _INT64[0] <= i <= _INT64[1]:
            return _INT, i
        tally.add(1, f"{column}: integer outside int64")
        return _NULL, None
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            tally.add(1, f"{column}: NaN or inf")
        return _FLOAT, f
    if isinstance(v, str):
        return _STR, _text(v, tally, column)
    if isinstance(v, Decimal):
        number = _number(v)
        assert number is not None
        if not math.isfinite(number):
            tally.add(1, f"{column}: NaN or inf")
        return _FLOAT, number
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return _STR, v.isoformat()
    if _is_missing_marker(v):
        return _NULL, None
    tally.add(1, f"{column}: {type(v).__name__} is not a scalar")
    return _NULL, None


def _text(v: str, tally: Tally, column: str) -> str:
    """A string as Arrow can hold it: at most MAX_STRING characters, valid UTF-8."""
    if len(v) > MAX_STRING:
        tally.add(1, f"{column}: string over {MAX_STRING} characters (truncated)")
        v = v[:MAX_STRING]
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        tally.add(1, f"{column}: string is not valid Unicode (lone surrogates replaced)")
        return v.encode("utf-8", "replace").decode("utf-8")
    return str(v)


def _label(kind: int, v: Any) -> Any:
    """A cleaned scalar as it is written in a string column."""
    if kind in (_STR, _NULL):
        return v
    if kind == _FLOAT and math.isnan(v):
        return None
    return category_label(v)


def _is_vector(v: Any) -> bool:
    """A list, tuple or 1-D numpy array: a vector (of numbers, when it is a good one)."""
    if isinstance(v, (list, tuple)):
        return True
    return type(v).__module__ == "numpy" and getattr(v, "ndim", 0) == 1


def _vector_value(v: Any, tally: Tally, column: str) -> list[float] | None:
    """One row's vector as floats, None (counted) when it is not a vector of numbers."""
    if v is None or _is_missing_marker(v):
        return None
    if _is_vector(v):
        try:
            x = np.asarray(v, dtype=np.float64)
            if x.ndim == 1:
                return x.tolist()
        except (TypeError, ValueError, OverflowError):
            pass
        tally.add(1, f"{column}: not a vector of numbers")
        return None
    tally.add(1, f"{column}: {type(v).__name__} among vectors")
    return None


def _slow_column(values: list[Any], tally: Tally, column: str) -> pa.Array:
    vectors = sum(1 for v in values if _is_vector(v))
    if vectors and 2 * vectors >= sum(1 for v in values if v is not None):
        out = [_vector_value(v, tally, column) for v in values]
        return check_vectors(pa.array(out, pa.list_(pa.float64())), tally, column)
    cleaned = [clean_scalar(v, tally, column) for v in values]
    kinds = {k for k, _ in cleaned}
    kinds.discard(_NULL)
    if _STR in kinds:
        return pa.array([_label(k, v) for k, v in cleaned], pa.string())
    if _FLOAT in kinds:
        return pa.array([None if k == _NULL else float(v) for k, v in cleaned], pa.float64())
    if _INT in kinds:
        return pa.array([None if k == _NULL else int(v) for k, v in cleaned], pa.int64())
    if _BOOL in kinds:
        return pa.array([v for _, v in cleaned], pa.bool_())
    return pa.nulls(len(values))


def count_true(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _check_floats(arr: pa.Array, tally: Tally, column: str) -> pa.Array:
    arr = arr.cast(pa.float64())
    non_finite = count_true(pc.invert(pc.is_finite(arr)))
    tally.add(non_finite, f"{column}: NaN or inf")
    return arr


def is_text(t: pa.DataType) -> bool:
    view = getattr(pa.types, "is_string_view", None)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or bool(view and view(t))


def is_list_type(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def numbers_within(t: pa.DataType) -> bool:
    """A list type whose values are numbers (or all null): a vector column."""
    v = t.value_type
    return pa.types.is_integer(v) or pa.types.is_floating(v) or pa.types.is_boolean(v) or \
        pa.types.is_null(v)


def check_vectors(arr: pa.Array, tally: Tally, column: str) -> pa.Array:
    """A list column of numbers as list<float64>, counting the vectors of another length
    than the batch's most common one (an empty one too) and those holding NaN or ±inf;
    they are kept as they are, for the server's profile counts them as invalid vectors."""
    if not numbers_within(arr.type):
        tally.add(len(arr) - arr.null_count, f"{column}: {arr.type} is not a vector of numbers")
        return pa.nulls(len(arr), pa.list_(pa.float64()))
    arr = arr.cast(pa.list_(pa.float64()))
    if len(arr) == arr.null_count:
        return arr
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    present = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    seen = lengths[present].astype(np.int64)
    common = int(np.bincount(seen).argmax())
    other = int(np.count_nonzero(seen != common)) + (int(seen.size) if common == 0 else 0)
    tally.add(other, f"{column}: vectors of a length other than {common}")
    flat = pc.list_flatten(arr)
    bad = pc.invert(pc.fill_null(pc.is_finite(flat), False))
    if count_true(bad):
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        where = np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool)
        tally.add(int(np.unique(parents[where]).size), f"{column}: vectors with NaN or inf")
    return arr


def check_strings(arr: pa.Array, tally: Tally, column: str) -> pa.Array:
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    long = pc.greater(pc.utf8_length(arr), MAX_STRING)
    n = count_true(long)
    if n:
        tally.add(n, f"{column}: string over {MAX_STRING} characters (truncated)")
        arr = pc.if_else(long, pc.utf8_slice_codeunits(arr, 0, MAX_STRING), arr)
    return arr


def column_array(values: list[Any], tally: Tally, column: str) -> pa.Array:
    """One feature-like column: Arrow's own conversion when the values are plain, else value
    by value (:func:`clean_scalar`). Both count the same values as bad."""
    try:
        arr = pa.array(values, from_pandas=False)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return _slow_column(values, tally, column)
    t = arr.type
    if pa.types.is_floating(t):
        return _check_floats(arr, tally, column)
    if pa.types.is_integer(t):
        try:
            return arr.cast(pa.int64())  # uint64 beyond int64 raises: value by value
        except pa.ArrowInvalid:
            return _slow_column(values, tally, column)
    if pa.types.is_boolean(t) or pa.types.is_null(t):
        return arr
    if is_text(t):
        return check_strings(arr, tally, column)
    if is_list_type(t) and all(v is None or _is_vector(v) for v in values):
        return check_vectors(arr, tally, column)  # (Arrow takes a set for a list too)
    return _slow_column(values, tally, column)


# -- reserved columns ----------------------------------------------------------------------------
def _number(v: Any) -> float | None:
    """A plain or numpy number as float, else None (bools are numbers, as in Python)."""
    if isinstance(v, (int, float, Decimal, np.number, np.bool_)) and not isinstance(
            v, np.complexfloating):
        try:
            return float(v)
        except OverflowError:
            return math.inf
        except ValueError:  # a signalling NaN decimal
            return math.nan
    return None


def ts_value(v: Any, tally: Tally) -> float | None:
    if v is None or _is_missing_marker(v):
        return None
    if isinstance(v, dt.datetime):
        try:
            return v.timestamp()  # naive datetimes are local time, as in Python
        except (OverflowError, OSError, ValueError):
            tally.add(1, f"{TS}: datetime out of range")
            return None
    x = _number(v)
    if x is None or not math.isfinite(x):
        tally.add(1, f"{TS}: not a finite number of seconds or a datetime")
        return None
    return x


def latency_value(v: Any, tally: Tally) -> float | None:
    if v is None or _is_missing_marker(v):
        return None
    x = _number(v)
    if x is None or not math.isfinite(x) or x < 0:
        tally.add(1, f"{LATENCY}: not a finite number ≥ 0")
        return None
    return x


def client_value(v: Any, tally: Tally) -> str | None:
    if v is None or _is_missing_marker(v):
        return None
    if isinstance(v, str):
        return _text(v, tally, CLIENT)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    tally.add(1, f"{CLIENT}: not a string or an integer")
    return None


def error_value(v: Any, tally: Tally) -> bool | None:
    if v is None or _is_missing_marker(v):
        return None
    if isinstance(v, BaseException) or (isinstance(v, type) and issubclass(v, BaseException)):
        return True
    if isinstance(v, str):
        return v.strip().lower() not in _FALSE_WORDS
    x = _number(v)
    if x is None or math.isnan(x):
        tally.add(1, f"{ERROR}: not a bool, number, string or exception")
        return None
    return x != 0


def reserved_column(values: Sequence[Any], kind: pa.DataType, one: Any, tally: Tally) -> pa.Array:
    """A reserved column: Arrow's conversion for plain values, else value by value."""
    try:
        arr = pa.array(values, from_pandas=False)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return pa.array([one(v, tally) for v in values], kind)
    t = arr.type
    if pa.types.is_null(t):
        return arr.cast(kind)
    if kind == pa.bool_() and pa.types.is_boolean(t):
        return arr
    if kind == pa.string() and pa.types.is_string(t):
        return check_strings(arr, tally, CLIENT)
    if kind == pa.float64() and (pa.types.is_floating(t) or pa.types.is_integer(t)):
        arr = arr.cast(pa.float64())
        ok = pc.is_finite(arr)
        if one is latency_value:
            ok = pc.and_(ok, pc.greater_equal(arr, 0.0))
        if count_true(pc.invert(ok)) == 0:
            return arr
    return pa.array([one(v, tally) for v in values], kind)
