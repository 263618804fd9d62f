"""infer_schema: kinds, roles, sensitivity and the binning plan from reference data."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.baseline.binning import (
    DEFAULT_BINS,
    MAX_CATEGORIES,
    MAX_CODE_LEVELS,
    plan_numeric,
)
from watchkeeper.baseline.schema import Kind, Role, infer_schema
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.profiles.core import profile

N = 300


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table(
        {
            "code": rng.integers(1, 25, N),  # 24 integer levels
            "float_code": rng.integers(0, 5, N).astype(float),  # whole floats, 5 levels
            "x": rng.normal(size=N),
            "wide_ints": rng.integers(0, 1000, N),  # integers, many levels, not unique
            "uid": rng.permutation(N) + 10_000,
            "words": [f"w{i}" for i in range(N)],
            "colour": rng.choice(["red", "green", "blue"], N),
            "when": [f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:00:00" for i in range(N)],
            "flag": rng.random(N) < 0.3,
            "label": rng.integers(0, 2, N),
            "y_pred": rng.integers(0, 2, N),
            "score": rng.random(N),
            "request_id": [f"r{i}" for i in range(N)],
            "client_id": rng.choice(["a", "b", "c"], N),
            "year": np.full(N, 2020),
            "Sex": rng.choice(["m", "f"], N),
            "race": rng.choice(["1", "2", "3"], N),
            "age": rng.integers(18, 90, N).astype(float) + 0.5,
        }
    )


@pytest.fixture(scope="module")
def schema(table):
    return infer_schema(table)


@pytest.mark.parametrize(
    ("name", "kind", "role"),
    [
        ("code", Kind.CATEGORICAL, Role.FEATURE),
        ("float_code", Kind.CATEGORICAL, Role.FEATURE),
        ("x", Kind.NUMERIC, Role.FEATURE),
        ("wide_ints", Kind.NUMERIC, Role.FEATURE),
        ("uid", Kind.TEXT, Role.ID),
        ("words", Kind.TEXT, Role.FEATURE),
        ("colour", Kind.CATEGORICAL, Role.FEATURE),
        ("when", Kind.DATETIME, Role.TIMESTAMP),
        ("flag", Kind.BOOLEAN, Role.FEATURE),
        ("label", Kind.CATEGORICAL, Role.TARGET),
        ("y_pred", Kind.CATEGORICAL, Role.PREDICTION),
        ("score", Kind.NUMERIC, Role.PROBA),
        ("request_id", Kind.TEXT, Role.ID),
        ("client_id", Kind.CATEGORICAL, Role.CLIENT),
        ("year", Kind.CATEGORICAL, Role.IGNORE),
    ],
)
def test_kind_and_role(schema, name, kind, role):
    column = schema[name]
    assert (column.kind, column.role) == (kind, role)


def test_every_column_is_in_the_schema_in_order(table, schema):
    assert list(schema.columns) == table.column_names
    assert [c.name for c in schema] == table.column_names


def test_integer_codes_plan_their_levels(schema):
    code = schema["code"]
    assert code.edges is None
    assert sorted(code.categories, key=int) == [str(i) for i in range(1, 25)]
    assert code.n_bins == 24 + 2  # levels, other, unseen
    assert schema["float_code"].categories is not None
    assert set(schema["float_code"].categories) == {"0", "1", "2", "3", "4"}  # not "0.0"


def test_code_level_limit():
    few = pa.table({"c": np.arange(N) % MAX_CODE_LEVELS})
    many = pa.table({"c": np.arange(N) % (MAX_CODE_LEVELS + 1)})
    assert infer_schema(few)["c"].kind == Kind.CATEGORICAL
    assert infer_schema(many)["c"].kind == Kind.NUMERIC


def test_numeric_has_quantile_edges(table, schema):
    x = schema["x"]
    values = table.column("x").to_numpy()
    assert x.categories is None
    assert x.edges[0] == values.min() and x.edges[-1] == values.max()
    assert np.all(np.diff(x.edges) > 0)
    assert len(x.edges) == DEFAULT_BINS + 1
    assert x.n_bins == DEFAULT_BINS + 2


def test_text_and_ids_get_no_bins(schema):
    for name in ("uid", "words", "request_id", "when"):
        assert schema[name].n_bins == 0, name
    assert not schema["uid"].monitored
    assert not schema["request_id"].monitored
    assert schema["words"].monitored


def test_few_unique_integers_are_not_ids():
    # fewer than 50 rows of unique integers: not enough evidence for an identifier
    schema = infer_schema(pa.table({"n": np.arange(40) * 3}))
    assert schema["n"].kind == Kind.NUMERIC
    assert schema["n"].role == Role.FEATURE


def test_boolean_plan_has_both_levels_even_when_one_is_absent():
    schema = infer_schema(pa.table({"flag": [True] * 10}))
    assert schema["flag"].kind == Kind.BOOLEAN
    assert schema["flag"].categories == ["true", "false"]


def test_dtype_records_the_physical_type(schema):
    assert schema["code"].dtype == "numeric"
    assert schema["colour"].dtype == "string"
    assert schema["flag"].dtype == "boolean"


def test_sensitive_names_are_flagged(schema):
    flagged = {c.name for c in schema if c.sensitive}
    assert flagged == {"Sex", "race", "age"}


def test_sensitive_name_spellings():
    names = ["sex", "gender", "race", "RAC1P", "ethnicity", "AGEP", "age_group", "disability"]
    table = pa.table({n: ["a", "b"] * 10 for n in [*names, "agent", "sexy", "page"]})
    schema = infer_schema(table)
    assert {c.name for c in schema if c.sensitive} == set(names)


def test_explicit_sensitive_replaces_name_guess(table):
    schema = infer_schema(table, sensitive=["colour"])
    assert {c.name for c in schema if c.sensitive} == {"colour"}
    assert {c.name for c in infer_schema(table, sensitive=[]) if c.sensitive} == set()
    assert {c.name for c in infer_schema(table, sensitive="colour, x") if c.sensitive} == {
        "colour",
        "x",
    }


def test_explicit_roles_win(table):
    schema = infer_schema(
        table,
        target="colour",
        prediction="code",
        proba=["x"],
        id="words",
        client="Sex",
        ignore="label,score",
        timestamp="wide_ints",
    )
    assert schema["colour"].role == Role.TARGET
    assert schema["code"].role == Role.PREDICTION
    assert schema["x"].role == Role.PROBA
    assert schema["words"].role == Role.ID
    assert schema["Sex"].role == Role.CLIENT
    assert schema["label"].role == Role.IGNORE
    assert schema["score"].role == Role.IGNORE
    assert schema["wide_ints"].role == Role.TIMESTAMP
    assert schema["wide_ints"].kind == Kind.DATETIME
    # ignored columns are not planned
    assert schema["label"].n_bins == 0 and schema["score"].n_bins == 0
    # a column not given keeps its inferred role
    assert schema["y_pred"].role == Role.PREDICTION


@pytest.mark.parametrize(
    "option", ["target", "prediction", "proba", "id", "timestamp", "client", "ignore",
               "sensitive", "pii", "not_pii"],
)
def test_unknown_column_in_an_option_names_the_parameter(table, option):
    with pytest.raises(SuiteError) as info:
        infer_schema(table, **{option: "no_such_column"})
    assert info.value.field == option
    assert "no_such_column" in str(info.value)
    assert str(info.value).startswith(f"{option}: ")


def test_a_column_given_two_roles(table):
    with pytest.raises(SuiteError) as info:
        infer_schema(table, target="label", ignore=["x", "label"])
    assert info.value.field == "ignore"
    assert "'label'" in str(info.value) and "target=" in str(info.value)


def test_empty_table():
    with pytest.raises(DataError, match="no rows"):
        infer_schema(pa.table({"x": pa.array([], pa.float64())}))
    with pytest.raises(DataError):
        infer_schema(pa.table({}))


def test_too_few_bins(table):
    with pytest.raises(SuiteError) as info:
        infer_schema(table, bins=1)
    assert info.value.field == "bins"


def test_all_missing_columns_do_not_crash_and_get_no_bins():
    table = pa.table(
        {
            "nan": np.full(20, np.nan),
            "nulls": pa.nulls(20),
            "float_nulls": pa.array([None] * 20, pa.float64()),
            "inf": np.full(20, np.inf),
            "ok": np.arange(20.0) + 0.5,
        }
    )
    schema = infer_schema(table)
    for name in ("nan", "nulls", "float_nulls", "inf"):
        assert schema[name].kind == Kind.NUMERIC, name
        assert schema[name].edges is None, name
        assert schema[name].n_bins == 0, name
        assert schema[name].note, name
    # and profiling the reference against it works and counts them
    p = profile(table, schema)
    assert p.columns["nan"].missing == 20
    assert p.columns["nulls"].missing == 20
    assert p.columns["inf"].invalid == 20
    assert p.columns["nan"].bins is None


def test_more_than_max_categories_are_truncated():
    levels = [f"level{i:03d}" for i in range(MAX_CATEGORIES + 50)]
    rng = np.random.default_rng(1)
    # level i appears about (i + 1) times as rarely as level 0: frequency order is known
    weights = 1.0 / np.arange(1, len(levels) + 1)
    values = rng.choice(levels, size=20_000, p=weights / weights.sum())
    values[: len(levels)] = levels  # every level occurs at least once
    schema = infer_schema(pa.table({"c": values}))
    column = schema["c"]
    assert column.kind == Kind.CATEGORICAL
    assert column.truncated
    # at most MAX_CATEGORIES, and only levels frequent enough to tell from chance
    assert 0 < len(column.categories) <= MAX_CATEGORIES
    assert column.categories[0] == "level000"
    assert "level149" not in column.categories
    # the kept levels are the most frequent ones
    counts = {lv: int((values == lv).sum()) for lv in levels}
    kept = min(counts[c] for c in column.categories)
    dropped = max(counts[lv] for lv in levels if lv not in column.categories)
    assert kept >= dropped


def test_untruncated_categories_are_all_kept_most_frequent_first():
    values = ["b"] * 5 + ["a"] * 3 + ["c"] * 3 + [None] * 2
    column = infer_schema(pa.table({"c": values}))["c"]
    assert column.categories == ["b", "a", "c"]  # ties broken by label
    assert not column.truncated


def test_iso_dates_only():
    dates = infer_schema(pa.table({"d": ["2024-03-01", "2024-03-02", None] * 10}))["d"]
    assert (dates.kind, dates.role) == (Kind.DATETIME, Role.TIMESTAMP)
    not_dates = infer_schema(pa.table({"d": ["2024-99-99", "x"] * 10}))["d"]
    assert not_dates.kind == Kind.CATEGORICAL


def test_native_timestamps():
    stamps = pa.array(np.arange(10) * 10**9, pa.timestamp("ns"))
    column = infer_schema(pa.table({"t": stamps}))["t"]
    assert (column.kind, column.role) == (Kind.DATETIME, Role.TIMESTAMP)


def test_proba_name_needs_numbers():
    table = pa.table({"probability": ["high", "low"] * 10})
    assert infer_schema(table)["probability"].role == Role.FEATURE


@pytest.mark.parametrize("name", ["year", "month", "week", "batch", "Quarter"])
def test_time_index_names_are_ignored(name):
    column = infer_schema(pa.table({name: np.arange(60) % 3}))[name]
    assert column.role == Role.IGNORE
    assert not column.monitored


def test_constant_numeric_column():
    column = infer_schema(pa.table({"x": [2.5] * 10}))["x"]
    assert column.kind == Kind.NUMERIC
    assert column.edges == [2.5, 2.5]
    assert profile(
        pa.table({"x": [1.0, 2.5, 3.0]}), infer_schema(pa.table({"x": [2.5] * 10}))
    ).columns["x"].bins.tolist() == [1, 1, 1]


# ---------------------------------------------------------------- plan_numeric


def test_plan_numeric_discrete_edges_are_deduplicated():
    values = np.array([0.5] * 70 + [1.5] * 20 + [2.5] * 9 + [10.5])
    edges = plan_numeric(values, bins=20)
    assert edges == [0.5, 1.5, 2.5, 10.5]


def test_plan_numeric_empty():
    assert plan_numeric(np.zeros(0)) == []


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.integers(-5, 5).map(float),
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        ),
        min_size=2,
        max_size=300,
    ),
    bins=st.integers(2, 40),
)
def test_plan_numeric_edges_increase(values, bins):
    array = np.asarray(values)
    if np.unique(array).size < 2:
        return
    edges = plan_numeric(array, bins)
    assert edges[0] == array.min() and edges[-1] == array.max()
    assert all(a < b for a, b in pairwise(edges))
    assert len(edges) <= bins + 1
    assert set(edges) <= set(array.tolist())  # quantiles among observed values


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def acs_schema(acs_reference_path):
    return infer_schema(pq.read_table(acs_reference_path), target="employed")


def test_acs_reference(acs_schema):
    s = acs_schema
    for name in ("SCHL", "MAR", "RELP", "DIS", "CIT", "SEX", "RAC1P"):
        assert s[name].kind == Kind.CATEGORICAL, name
        assert s[name].role == Role.FEATURE, name
        assert s[name].categories, name
    assert (s["AGEP"].kind, s["AGEP"].role) == (Kind.NUMERIC, Role.FEATURE)
    assert s["AGEP"].sensitive and s["SEX"].sensitive and s["RAC1P"].sensitive
    assert not s["SCHL"].sensitive
    assert (s["id"].kind, s["id"].role) == (Kind.TEXT, Role.ID)
    assert (s["employed"].kind, s["employed"].role) == (Kind.CATEGORICAL, Role.TARGET)
    assert set(s["employed"].categories) == {"0", "1"}
    assert s["employed"].note and "given" not in s["employed"].note
    assert s["prediction"].role == Role.PREDICTION
    assert (s["predicted_probability"].kind, s["predicted_probability"].role) == (
        Kind.NUMERIC,
        Role.PROBA,
    )
    assert s["year"].role == Role.IGNORE
    assert s["year"].n_bins == 0


def test_acs_numeric_plan(acs_schema):
    edges = acs_schema["AGEP"].edges
    assert np.all(np.diff(edges) > 0)
    assert 10 <= len(edges) <= DEFAULT_BINS + 1
    proba = acs_schema["predicted_probability"].edges
    assert 0.0 <= proba[0] < proba[-1] <= 1.0


def test_duplicate_column_names():
    table = pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array(["a", "b"])], ["x", "x"])
    with pytest.raises(DataError, match="duplicate column names: x"):
        infer_schema(table)
