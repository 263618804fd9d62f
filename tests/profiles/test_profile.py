"""Profiles: exact, associative merging; bounded size; bad values counted, never raised."""

from __future__ import annotations

import datetime as dt
import json
import math
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.baseline.schema import Kind, Schema, infer_schema
from watchkeeper.profiles.core import (
    ColumnProfile,
    Profile,
    bin_codes,
    merge,
    profile,
    profile_column,
)

NAN = float("nan")
INF = float("inf")
LEVELS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def schema() -> Schema:
    return _schema()


def _schema() -> Schema:
    rng = np.random.default_rng(3)
    n = 500
    reference = pa.table(
        {
            "x": rng.normal(0.0, 2.0, n),
            "c": rng.choice(LEVELS, n, p=[0.4, 0.3, 0.2, 0.1]),
            "k": rng.integers(0, 4, n).astype(float),  # whole floats: category codes
            "flag": rng.random(n) < 0.3,
        }
    )
    s = infer_schema(reference)
    assert [s[c].kind for c in ("x", "c", "k", "flag")] == [
        Kind.NUMERIC,
        Kind.CATEGORICAL,
        Kind.CATEGORICAL,
        Kind.BOOLEAN,
    ]
    return s


SCHEMA = _schema()


def assert_same(p: Profile, q: Profile) -> None:
    """Counts and bins exactly equal, moments equal up to rounding, extremes equal."""
    assert p.rows == q.rows
    assert p.unexpected == q.unexpected
    assert p.start == q.start and p.end == q.end
    assert list(p.columns) == list(q.columns)
    for name, a in p.columns.items():
        b = q.columns[name]
        assert (a.count, a.missing, a.invalid) == (b.count, b.missing, b.invalid), name
        assert a.types == b.types, name
        if a.bins is None or b.bins is None:
            assert a.bins is None and b.bins is None, name
        else:
            assert a.bins.tolist() == b.bins.tolist(), name
        assert a.moments.n == b.moments.n, name
        assert a.moments.mean == pytest.approx(b.moments.mean, rel=1e-9, abs=1e-9), name
        assert a.moments.m2 == pytest.approx(b.moments.m2, rel=1e-9, abs=1e-9), name
        assert (a.min, a.max) == (b.min, b.max), name


# ---------------------------------------------------------------- random tables

numeric_values = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.sampled_from([NAN, INF, -INF, None, 0.0, 50.0, -50.0]),
)
category_values = st.sampled_from([*LEVELS, "a", "b", "never_seen", "zz", None])
code_values = st.sampled_from([0.0, 1.0, 2.0, 3.0, 9.0, None, NAN])
flag_values = st.sampled_from([True, False, None])


@st.composite
def tables(draw, max_rows: int = 60) -> pa.Table:
    n = draw(st.integers(0, max_rows))
    return pa.table(
        {
            "x": pa.array(draw(st.lists(numeric_values, min_size=n, max_size=n)), pa.float64()),
            "c": pa.array(draw(st.lists(category_values, min_size=n, max_size=n)), pa.string()),
            "k": pa.array(draw(st.lists(code_values, min_size=n, max_size=n)), pa.float64()),
            "flag": pa.array(draw(st.lists(flag_values, min_size=n, max_size=n)), pa.bool_()),
        }
    )


@st.composite
def splits(draw) -> tuple[pa.Table, list[int]]:
    table = draw(tables())
    cuts = sorted(draw(st.lists(st.integers(0, table.num_rows), min_size=2, max_size=2)))
    return table, cuts


def _pieces(table: pa.Table, cuts: list[int]) -> list[pa.Table]:
    bounds = [0, *cuts, table.num_rows]
    return [table.slice(lo, hi - lo) for lo, hi in pairwise(bounds)]


@settings(max_examples=250, deadline=None)
@given(case=splits())
def test_profile_of_union_is_merge_of_profiles(case):
    table, cuts = case
    whole = profile(table, SCHEMA)
    for cut in cuts:
        a, b = table.slice(0, cut), table.slice(cut)
        assert_same(whole, merge(profile(a, SCHEMA), profile(b, SCHEMA)))
        assert_same(whole, profile(a, SCHEMA).merge(profile(b, SCHEMA)))
    # several chunks in one column read the same as one
    assert_same(whole, profile(pa.concat_tables(_pieces(table, cuts)), SCHEMA))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.sampled_from(["1.5", "-2", "abc", "", "nan", "NaN", "inf", "-inf", "1e3", None]),
        max_size=40,
    ),
    cut=st.integers(0, 40),
)
def test_union_is_merge_for_numbers_written_as_strings(values, cut):
    # a CSV column read as text: each value must count the same whatever its neighbours
    table = pa.table({"x": pa.array(values, pa.string())})
    cut = min(cut, table.num_rows)
    whole = profile(table, SCHEMA)
    parts = merge(profile(table.slice(0, cut), SCHEMA), profile(table.slice(cut), SCHEMA))
    assert_same(whole, parts)
    x = whole.columns["x"]
    # blank text is missing, as in every input (watchkeeper.io.missing.NA_TEXTS)
    assert x.missing == sum(v is None or v.lower() in ("nan", "") for v in values)
    assert x.invalid == sum(v in ("abc", "inf", "-inf") for v in values)


@settings(max_examples=200, deadline=None)
@given(case=splits())
def test_merge_is_associative(case):
    table, cuts = case
    a, b, c = (profile(t, SCHEMA) for t in _pieces(table, cuts))
    left = merge(merge(a, b), c)
    right = merge(a, merge(b, c))
    assert_same(left, right)
    assert_same(left, merge(a, b, c))
    assert_same(left, profile(table, SCHEMA))


@settings(max_examples=200, deadline=None)
@given(table=tables())
def test_counts_add_up(table):
    p = profile(table, SCHEMA)
    assert p.rows == table.num_rows
    for name, cp in p.columns.items():
        spec = SCHEMA[name]
        assert cp.count == table.num_rows
        assert 0 <= cp.valid <= cp.count
        assert cp.bins is not None and len(cp.bins) == spec.n_bins
        # every valid value lands in exactly one bin
        assert int(cp.bins.sum()) == cp.valid, name
        # and bin_codes (used for calibration) puts each value in the same bin
        codes = bin_codes(table.column(name), spec)
        assert np.bincount(codes, minlength=spec.n_bins).tolist() == cp.bins.tolist(), name
    x = table.column("x").to_pylist()
    finite = [v for v in x if v is not None and math.isfinite(v)]
    assert p.columns["x"].missing == sum(v is None or math.isnan(v) for v in x)
    assert p.columns["x"].invalid == sum(v is not None and math.isinf(v) for v in x)
    assert p.columns["x"].moments.n == len(finite)
    if finite:
        assert p.columns["x"].min == min(finite) and p.columns["x"].max == max(finite)
        assert p.columns["x"].moments.mean == pytest.approx(np.mean(finite), rel=1e-9, abs=1e-9)
    c = table.column("c").to_pylist()
    unseen = sum(v is not None and v not in LEVELS for v in c)
    assert p.columns["c"].missing == c.count(None)
    assert p.columns["c"].bins[-1] == unseen  # the "unseen" bin
    k = table.column("k").to_pylist()
    assert p.columns["k"].missing == sum(v is None or math.isnan(v) for v in k)


@settings(max_examples=200, deadline=None)
@given(table=tables())
def test_empty_profile_is_the_identity(table):
    p = profile(table, SCHEMA)
    assert_same(merge(Profile(), p), p)
    assert_same(p.merge(Profile()), p)
    assert_same(merge(p), p)


@settings(max_examples=200, deadline=None)
@given(table=tables())
def test_dict_round_trip(table):
    p = profile(table, SCHEMA)
    p.start = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    p.end = dt.datetime(2024, 5, 2, 12, 0, tzinfo=dt.UTC)
    text = json.dumps(p.to_dict(), allow_nan=False)  # plain JSON, no NaN/inf
    back = Profile.from_dict(json.loads(text))
    assert back.to_dict() == p.to_dict()
    assert_same(back, p)
    # moments survive exactly, not only approximately
    for name, cp in p.columns.items():
        assert back.columns[name].moments == cp.moments


def test_merge_keeps_the_time_span():
    a = Profile(rows=1, start=dt.datetime(2024, 1, 2), end=dt.datetime(2024, 1, 3))
    b = Profile(rows=2, start=dt.datetime(2024, 1, 1), end=dt.datetime(2024, 1, 2))
    m = merge(a, b)
    assert (m.rows, m.start, m.end) == (3, dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 3))


def test_merge_of_nothing_is_empty():
    assert merge().rows == 0 and merge().columns == {}


def test_merge_does_not_alias_bins(schema):
    table = pa.table({"x": [0.0, 1.0], "c": ["a", "b"], "k": [0.0, 1.0], "flag": [True, False]})
    p = profile(table, schema)
    m = merge(p, Profile())
    m.columns["x"].bins[0] += 100
    assert p.columns["x"].bins[0] != m.columns["x"].bins[0]


# ---------------------------------------------------------------- size


def _random_batch(n: int, rng: np.random.Generator) -> pa.Table:
    return pa.table(
        {
            "x": rng.normal(0.0, 2.0, n),
            "c": rng.choice([*LEVELS, "new"], n),
            "k": rng.integers(0, 6, n).astype(float),
            "flag": rng.random(n) < 0.5,
        }
    )


def test_profile_size_does_not_grow_with_rows(schema):
    rng = np.random.default_rng(11)
    small = profile(_random_batch(1_000, rng), schema).to_dict()
    large = profile(_random_batch(200_000, rng), schema).to_dict()
    for name in schema.columns:
        assert len(small["columns"][name]["bins"]) == len(large["columns"][name]["bins"])
        assert small["columns"][name].keys() == large["columns"][name].keys()
    small_len, large_len = len(json.dumps(small)), len(json.dumps(large))
    # 200 times the rows: only the counts get a few more digits
    assert large_len <= 1.25 * small_len, (small_len, large_len)
    assert large_len - small_len < 200


# ---------------------------------------------------------------- bad input


def test_strings_in_a_numeric_column_are_invalid(schema):
    batch = pa.table({"x": ["1.5", "abc", None, "inf", "2", "nan"]})
    cp = profile(batch, schema).columns["x"]
    assert (cp.count, cp.missing, cp.invalid) == (6, 2, 2)
    assert int(cp.bins.sum()) == 2
    assert (cp.min, cp.max) == (1.5, 2.0)
    assert cp.types == {"string": 6}


def test_inf_is_invalid(schema):
    cp = profile(pa.table({"x": [INF, -INF, 1.0]}), schema).columns["x"]
    assert (cp.missing, cp.invalid, cp.moments.n) == (0, 2, 1)
    assert int(cp.bins.sum()) == 1


def test_out_of_range_values_go_to_the_tails(schema):
    lo, hi = schema["x"].edges[0], schema["x"].edges[-1]
    cp = profile(pa.table({"x": [lo - 1, lo, hi, hi + 1]}), schema).columns["x"]
    assert cp.bins[0] == 1 and cp.bins[-1] == 1
    assert cp.bins[1] == 1 and cp.bins[-2] == 1  # the reference extremes are inside


def test_a_column_missing_from_the_batch_counts_zero(schema):
    p = profile(pa.table({"x": [1.0, 2.0]}), schema)
    assert p.rows == 2
    assert set(p.columns) == {"x", "c", "k", "flag"}
    for name in ("c", "k", "flag"):
        assert p.columns[name].count == 0
        assert p.columns[name].bins is None
    # and merging it with a full batch counts only the rows that had the column
    full = profile(pa.table({"c": ["a", "b", "a"]}), schema)
    m = merge(p, full)
    assert m.rows == 5
    assert m.columns["c"].count == 3
    assert m.columns["c"].bins.tolist() == full.columns["c"].bins.tolist()
    assert m.columns["x"].count == 2


def test_an_extra_column_is_unexpected(schema):
    p = profile(pa.table({"x": [1.0, 2.0, 3.0], "surprise": ["a", "b", "c"]}), schema)
    assert p.unexpected == {"surprise": 3}
    assert "surprise" not in p.columns
    assert merge(p, p).unexpected == {"surprise": 6}


def test_ignored_columns_are_not_profiled():
    s = infer_schema(pa.table({"x": [1.0, 2.0, 3.5], "year": [2020, 2020, 2021]}))
    p = profile(pa.table({"x": [1.0], "year": [2022]}), s)
    assert "year" not in p.columns
    assert not p.unexpected


def test_nested_values_do_not_raise(schema):
    batch = pa.table(
        {
            "x": pa.array([[1.0, 2.0], None, [3.0]]),
            "c": pa.array([["a"], ["b", "c"], None]),
            "k": pa.array([{"a": 1}, {"a": 2}, None]),
            "flag": pa.array([[True], [False], [True]]),
        }
    )
    p = profile(batch, schema)
    for name, cp in p.columns.items():
        assert cp.count == 3, name
        assert cp.missing + cp.invalid + int(cp.bins.sum()) == 3, name
        assert cp.types == {"other": 3}, name
    assert (p.columns["x"].missing, p.columns["x"].invalid) == (1, 2)


def test_nested_values_in_rows_do_not_raise(schema):
    rows = [{"x": [1, 2], "c": {"nested": True}}, {"x": 3.0, "c": "a"}, {"x": None, "c": ["b"]}]
    p = profile(rows, schema)
    assert p.columns["x"].count == 3
    assert p.columns["x"].invalid == 1  # "[1, 2]" is not a number
    assert p.columns["x"].moments.n == 1
    assert p.columns["c"].count == 3


def test_float_codes_with_missing_values_count_missing(schema):
    # pandas integer codes with a gap arrive as floats with nulls
    import pandas as pd

    frame = pd.DataFrame({"k": [0, 1, None, 2, None, 9]})
    cp = profile(frame, schema).columns["k"]
    assert (cp.count, cp.missing, cp.invalid) == (6, 2, 0)
    assert int(cp.bins.sum()) == 4
    assert cp.bins[-1] == 1  # 9 was never seen


def test_dictionary_columns_profile_like_plain_ones(schema):
    plain = pa.table({"c": pa.array(["a", None, "zz", "b", "a"])})
    encoded = pa.table({"c": plain.column("c").combine_chunks().dictionary_encode()})
    a, b = profile(plain, schema).columns["c"], profile(encoded, schema).columns["c"]
    assert a.bins.tolist() == b.bins.tolist()
    assert (a.count, a.missing) == (b.count, b.missing) == (5, 1)


def test_profile_column_of_a_plain_array(schema):
    cp = profile_column(pa.array([1.0, None, 3.0]), schema["x"])
    assert isinstance(cp, ColumnProfile)
    assert (cp.count, cp.missing, cp.valid) == (3, 1, 2)


def test_duplicate_column_names_are_a_data_error(schema):
    from watchkeeper.errors import DataError

    table = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], ["x", "x"])
    with pytest.raises(DataError, match="duplicate column names: x"):
        profile(table, schema)
