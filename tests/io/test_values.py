"""values: how a column reads as numbers, as category labels and as times."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from watchkeeper.io.values import (
    category_counts,
    category_label,
    epoch_seconds,
    numbers,
    numbers_with_nan,
    type_class,
)

INF = float("inf")
NAN = float("nan")


def _dictionary(indices: list[int | None], dictionary: list) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(dictionary))


# ---------------------------------------------------------------- numbers


def test_numbers_null_and_nan_are_missing_inf_is_invalid():
    n = numbers(pa.array([1.0, None, NAN, INF, -INF, 2.0, -0.5]))
    assert n.finite.tolist() == [1.0, 2.0, -0.5]
    assert (n.missing, n.invalid) == (2, 2)


def test_numbers_all_finite_has_no_missing_or_invalid():
    n = numbers(pa.array([3, 1, 2], pa.int8()))
    assert n.finite.dtype == np.float64
    assert n.finite.tolist() == [3.0, 1.0, 2.0]
    assert (n.missing, n.invalid) == (0, 0)


def test_numbers_integers_with_nulls():
    n = numbers(pa.array([1, None, 3], pa.int64()))
    assert n.finite.tolist() == [1.0, 3.0]
    assert (n.missing, n.invalid) == (1, 0)


def test_numbers_numeric_strings_parse():
    n = numbers(pa.array(["1", "2.5", "-3e2", None]))
    assert n.finite.tolist() == [1.0, 2.5, -300.0]
    assert (n.missing, n.invalid) == (1, 0)


def test_numbers_non_numeric_strings_are_invalid():
    n = numbers(pa.array(["1", "abc", None, "inf", "2", "", "-Infinity"]))
    assert n.finite.tolist() == [1.0, 2.0]
    # "abc", "" and the two infinities are invalid; None is missing
    assert (n.missing, n.invalid) == (1, 4)


@pytest.mark.parametrize("spelling", ["nan", "NaN", "-nan"])
def test_numbers_spelled_nan_is_missing_whatever_its_neighbours(spelling):
    # the same value must count the same way whether or not the rest of the chunk parses
    alone = numbers(pa.array([spelling, "1"]))
    with_text = numbers(pa.array([spelling, "1", "abc"]))
    assert (alone.missing, alone.invalid) == (1, 0)
    assert (with_text.missing, with_text.invalid) == (1, 1)


def test_numbers_booleans_are_zero_and_one():
    n = numbers(pa.array([True, False, None, True]))
    assert n.finite.tolist() == [1.0, 0.0, 1.0]
    assert (n.missing, n.invalid) == (1, 0)


def test_numbers_dictionary_of_numeric_strings():
    column = _dictionary([0, 1, None, 0, 2], ["1.5", "7", "oops"])
    n = numbers(column)
    assert n.finite.tolist() == [1.5, 7.0, 1.5]
    assert (n.missing, n.invalid) == (1, 1)


def test_numbers_dictionary_of_floats():
    column = _dictionary([0, 1, 1, None], [2.0, INF])
    n = numbers(column)
    assert n.finite.tolist() == [2.0]
    assert (n.missing, n.invalid) == (1, 2)


def test_numbers_chunked_array_with_several_chunks_keeps_order():
    column = pa.chunked_array([[1.0, None], [INF], [], [2.0, NAN, 3.0]])
    n = numbers(column)
    assert n.finite.tolist() == [1.0, 2.0, 3.0]
    assert (n.missing, n.invalid) == (2, 1)


def test_numbers_chunks_of_mixed_quality():
    column = pa.chunked_array([["1", "x"], ["2", "3"], [None, "nan"]])
    n = numbers(column)
    assert n.finite.tolist() == [1.0, 2.0, 3.0]
    assert (n.missing, n.invalid) == (2, 1)


def test_numbers_of_a_chunked_array_without_chunks():
    n = numbers(pa.chunked_array([], type=pa.float64()))
    assert n.finite.size == 0
    assert (n.missing, n.invalid) == (0, 0)


def test_numbers_null_type_is_all_missing():
    n = numbers(pa.nulls(4))
    assert n.finite.size == 0
    assert (n.missing, n.invalid) == (4, 0)


def test_numbers_of_non_numbers_are_invalid():
    stamps = pa.array([dt.datetime(2020, 1, 1), None], pa.timestamp("s"))
    assert (numbers(stamps).missing, numbers(stamps).invalid) == (1, 1)
    nested = pa.array([[1, 2], None, [3]])
    n = numbers(nested)
    assert n.finite.size == 0
    assert (n.missing, n.invalid) == (1, 2)


def test_numbers_with_nan_keeps_row_order():
    column = pa.chunked_array([["1", "x"], [None, "2"]])
    out = numbers_with_nan(column)
    assert out.shape == (4,)
    assert out[0] == 1.0 and out[3] == 2.0
    assert math.isnan(out[1]) and math.isnan(out[2])


# ---------------------------------------------------------------- categories


def test_category_label():
    assert category_label(3) == "3"
    assert category_label(3.0) == "3"
    assert category_label("3") == "3"
    assert category_label(2.5) == "2.5"
    assert category_label(True) == "true"
    assert category_label(False) == "false"


def test_three_spellings_of_three_are_one_category():
    for column in (
        pa.array([3, 3]),
        pa.array([3, 3], pa.int8()),
        pa.array([3.0, 3.0]),
        pa.array(["3", "3"]),
        pa.array(["3", "3"]).dictionary_encode(),
        pa.chunked_array([[3.0], [3.0]]),
    ):
        counts, missing = category_counts(column)
        assert counts == Counter({"3": 2}), column.type
        assert missing == 0


def test_category_counts_strings_with_nulls():
    counts, missing = category_counts(pa.array(["a", None, "b", "a", None]))
    assert counts == Counter({"a": 2, "b": 1})
    assert missing == 2


def test_category_counts_nan_in_float_columns_is_missing():
    counts, missing = category_counts(pa.array([1.0, NAN, None, 2.5, 1.0]))
    assert counts == Counter({"1": 2, "2.5": 1})
    assert missing == 2
    assert "nan" not in counts


def test_category_counts_nulls_in_float_columns_are_missing():
    # pandas integer codes with a missing value arrive as float64 with nulls
    counts, missing = category_counts(pa.array([1.0, None, 2.0, None]))
    assert counts == Counter({"1": 1, "2": 1})
    assert missing == 2


def test_category_counts_booleans():
    counts, missing = category_counts(pa.array([True, False, True, None]))
    assert counts == Counter({"true": 2, "false": 1})
    assert missing == 1


def test_category_counts_dictionary_with_null_indices():
    column = _dictionary([0, 1, None, 0, None], ["a", "b", "never used"])
    counts, missing = category_counts(column)
    assert counts == Counter({"a": 2, "b": 1})  # unused dictionary entries are not levels
    assert missing == 2


def test_category_counts_dictionary_with_null_in_the_dictionary():
    column = _dictionary([0, 1, None, 0], ["a", None])
    counts, missing = category_counts(column)
    assert counts == Counter({"a": 2})
    assert missing == 2  # every row is counted once: as a level or as missing
    assert sum(counts.values()) + missing == len(column)


def test_category_counts_dictionary_of_floats():
    column = _dictionary([0, 1, 2, 0], [3.0, NAN, 0.5])
    counts, missing = category_counts(column)
    assert counts == Counter({"3": 2, "0.5": 1})
    assert missing == 1


def test_category_counts_dictionary_agrees_with_plain():
    plain = pa.array(["x", "y", None, "x", "z"])
    assert category_counts(plain.dictionary_encode()) == category_counts(plain)


def test_category_counts_chunked():
    column = pa.chunked_array([["a", None], [], ["a", "b"]])
    assert category_counts(column) == (Counter({"a": 2, "b": 1}), 1)


def test_category_counts_of_dates_are_labels():
    column = pa.array([dt.date(2020, 1, 1), dt.date(2020, 1, 1), None])
    counts, missing = category_counts(column)
    assert counts == Counter({"2020-01-01": 2})
    assert missing == 1


# ---------------------------------------------------------------- epoch seconds


def test_epoch_seconds_iso_strings():
    column = pa.array(
        [
            "1970-01-02T00:00:00",
            "1970-01-01T01:00:00+01:00",
            "1970-01-01T00:00:10Z",
            None,
            "garbage",
        ]
    )
    out = epoch_seconds(column)
    assert out[:3].tolist() == [86400.0, 0.0, 10.0]
    assert math.isnan(out[3]) and math.isnan(out[4])


def test_epoch_seconds_date_only_strings():
    assert epoch_seconds(pa.array(["1970-01-03"])).tolist() == [2 * 86400.0]


def test_epoch_seconds_timestamps():
    naive = pa.array([dt.datetime(1970, 1, 1, 1), None], pa.timestamp("ms"))
    out = epoch_seconds(naive)
    assert out[0] == 3600.0 and math.isnan(out[1])
    aware = pa.array([dt.datetime(1970, 1, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC"))
    assert epoch_seconds(aware).tolist() == [3600.0]
    paris = pa.array([0], pa.timestamp("s", tz="Europe/Paris"))  # stored as UTC instants
    assert epoch_seconds(paris).tolist() == [0.0]


def test_epoch_seconds_dates():
    out = epoch_seconds(pa.array([dt.date(1970, 1, 2), None]))
    assert out[0] == 86400.0 and math.isnan(out[1])


def test_epoch_seconds_numbers_are_seconds():
    out = epoch_seconds(pa.array([5, None, 2]))
    assert out[0] == 5.0 and math.isnan(out[1]) and out[2] == 2.0


def test_epoch_seconds_chunked():
    column = pa.chunked_array([["1970-01-01T00:00:01"], ["1970-01-01T00:00:02", None]])
    out = epoch_seconds(column)
    assert out[:2].tolist() == [1.0, 2.0] and math.isnan(out[2])


# ---------------------------------------------------------------- type classes


@pytest.mark.parametrize(
    ("arrow_type", "expected"),
    [
        (pa.int8(), "numeric"),
        (pa.uint64(), "numeric"),
        (pa.float32(), "numeric"),
        (pa.float64(), "numeric"),
        (pa.decimal128(10, 2), "numeric"),
        (pa.string(), "string"),
        (pa.large_string(), "string"),
        (pa.bool_(), "boolean"),
        (pa.timestamp("ns"), "datetime"),
        (pa.timestamp("s", tz="UTC"), "datetime"),
        (pa.date32(), "datetime"),
        (pa.null(), "null"),
        (pa.dictionary(pa.int8(), pa.string()), "string"),
        (pa.dictionary(pa.int32(), pa.int64()), "numeric"),
        (pa.list_(pa.int64()), "other"),
        (pa.struct([("a", pa.int64())]), "other"),
        (pa.binary(), "other"),
    ],
)
def test_type_class(arrow_type, expected):
    assert type_class(arrow_type) == expected
