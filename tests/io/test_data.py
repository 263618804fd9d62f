"""to_table / read_table: every supported input becomes an Arrow table; bad input is a DataError."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from watchkeeper.errors import DataError, WatchkeeperError
from watchkeeper.io.tables import read_table, to_table

EXPECTED = {"x": [1.5, 2.5, None], "c": ["a", "b", "a"], "k": [1, 2, 3]}


def _arrow() -> pa.Table:
    return pa.table(
        {
            "x": pa.array(EXPECTED["x"], pa.float64()),
            "c": pa.array(EXPECTED["c"], pa.string()),
            "k": pa.array(EXPECTED["k"], pa.int64()),
        }
    )


# ---------------------------------------------------------------- in-memory inputs


def test_arrow_table_is_returned_as_is():
    table = _arrow()
    assert to_table(table) is table


def test_record_batch():
    batch = pa.RecordBatch.from_pydict(EXPECTED)
    out = to_table(batch)
    assert isinstance(out, pa.Table)
    assert out.to_pydict() == EXPECTED


def test_pandas_dataframe():
    frame = pd.DataFrame(EXPECTED, index=[10, 20, 30])
    out = to_table(frame)
    assert out.column_names == ["x", "c", "k"]  # the index is not a column
    assert out.to_pydict() == EXPECTED
    assert pa.types.is_floating(out.schema.field("x").type)
    assert pa.types.is_integer(out.schema.field("k").type)


def test_pandas_categorical_becomes_dictionary():
    frame = pd.DataFrame({"c": pd.Categorical(["x", None, "y"])})
    out = to_table(frame)
    assert pa.types.is_dictionary(out.schema.field("c").type)
    assert out.column("c").to_pylist() == ["x", None, "y"]


def test_pandas_object_column_mixing_ints_and_strings_is_not_lost():
    frame = pd.DataFrame({"mixed": [1, "two", 3, None, 4.5], "clean": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = to_table(frame)
    assert out.num_rows == 5
    assert out.column("mixed").to_pylist() == ["1", "two", "3", None, "4.5"]
    # the well-typed neighbour keeps its type
    assert out.column("clean").type == pa.float64()
    assert out.column("clean").to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_pandas_duplicate_column_names():
    frame = pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"])
    with pytest.raises(DataError, match="duplicate column names: a"):
        to_table(frame)


def test_polars_dataframe():
    frame = pl.DataFrame(EXPECTED)
    out = to_table(frame)
    assert out.to_pydict() == EXPECTED


def test_polars_categorical():
    frame = pl.DataFrame({"c": pl.Series(["x", None, "x"], dtype=pl.Categorical)})
    out = to_table(frame)
    assert out.column("c").to_pylist() == ["x", None, "x"]


def test_rows_ragged_keys():
    rows = [{"a": 1, "b": "x"}, {"b": "y", "c": True}, {"a": 3}]
    out = to_table(rows)
    assert out.column_names == ["a", "b", "c"]  # first-seen order
    assert out.to_pydict() == {
        "a": [1, None, 3],
        "b": ["x", "y", None],
        "c": [None, True, None],
    }


def test_rows_int_and_float_become_float():
    out = to_table([{"a": 1}, {"a": 2.5}])
    assert out.column("a").type == pa.float64()
    assert out.column("a").to_pylist() == [1.0, 2.5]


def test_rows_mixed_types_in_a_column_are_kept_as_strings():
    rows = [{"a": 1}, {"a": "x"}, {"a": None}, {"a": 2.5}, {"a": float("nan")}]
    out = to_table(rows)
    assert out.column("a").type == pa.string()
    assert out.column("a").to_pylist() == ["1", "x", None, "2.5", None]


def test_rows_integer_overflow_kept_as_string():
    out = to_table([{"a": 2**70}, {"a": 1}])
    assert out.column("a").to_pylist() == [str(2**70), "1"]


def test_rows_from_a_generator():
    out = to_table({"i": i} for i in range(4))
    assert out.column("i").to_pylist() == [0, 1, 2, 3]


@pytest.mark.parametrize("bad_row", [[1, 2], "ab", 3, None])
def test_rows_that_are_not_mappings(bad_row):
    with pytest.raises(DataError, match="row 1 is a"):
        to_table([{"a": 1}, bad_row])


@pytest.mark.parametrize("data", [42, b"bytes", {"a": [1, 2]}, 3.5])
def test_unsupported_input(data):
    with pytest.raises(DataError, match="cannot use a"):
        to_table(data)


def test_arrow_duplicate_column_names():
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2]), pa.array([3])], ["a", "a", "b"])
    with pytest.raises(DataError, match="duplicate column names: a"):
        to_table(table)


def test_data_error_is_a_value_error_and_a_watchkeeper_error():
    with pytest.raises(ValueError):
        to_table(42)
    with pytest.raises(WatchkeeperError):
        to_table(42)


# ---------------------------------------------------------------- files


def _write(fmt: str, path: Path) -> Path:
    table = _arrow()
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "feather":
        feather.write_feather(table, path)
    elif fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "tsv":
        pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(delimiter="\t"))
    elif fmt == "json":
        table.to_pandas().to_json(path, orient="records", lines=True)
    else:  # pragma: no cover
        raise AssertionError(fmt)
    return path


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("parquet", "data.parquet"),
        ("parquet", "data.pq"),
        ("parquet", "DATA.PARQUET"),
        ("feather", "data.feather"),
        ("feather", "data.arrow"),
        ("csv", "data.csv"),
        ("tsv", "data.tsv"),
        ("json", "data.jsonl"),
        ("json", "data.ndjson"),
        ("json", "data.json"),
    ],
)
def test_read_file(tmp_path, fmt, name):
    path = _write(fmt, tmp_path / name)
    for given in (path, str(path)):
        out = read_table(given)
        assert out.to_pydict() == EXPECTED
        assert to_table(given).to_pydict() == EXPECTED


def test_read_selected_columns(tmp_path):
    for fmt, name in [
        ("parquet", "d.parquet"),
        ("csv", "d.csv"),
        ("json", "d.jsonl"),
        ("feather", "d.feather"),
    ]:
        path = _write(fmt, tmp_path / name)
        assert read_table(path, columns=["k", "c"]).to_pydict() == {
            "k": EXPECTED["k"],
            "c": EXPECTED["c"],
        }, fmt


def test_read_gzipped_csv(tmp_path):
    plain = _write("csv", tmp_path / "data.csv")
    gz = tmp_path / "data.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_table(gz).to_pydict() == EXPECTED


def test_read_parquet_directory(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    pq.write_table(_arrow().slice(0, 2), folder / "part-0.parquet")
    pq.write_table(_arrow().slice(2), folder / "part-1.parquet")
    out = read_table(folder)
    assert sorted(out.column("k").to_pylist()) == [1, 2, 3]


@pytest.mark.parametrize("name", ["data.xlsx", "data", "data.csv.zip", "data.xml.gz"])
def test_unknown_extension_names_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="unknown file type") as info:
        read_table(path)
    assert name in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.parquet"
    with pytest.raises(DataError, match="no such file") as info:
        to_table(path)
    assert "nope.parquet" in str(info.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.parquet", b"this is not parquet at all, just some bytes" * 10),
        ("empty.parquet", b""),
        ("broken.feather", b"ARROW1 garbage garbage garbage"),
        ("broken.jsonl", b'{"a": 1}\n{"a": \n'),
        ("broken.csv.gz", b"not gzip"),
    ],
)
def test_corrupt_file_is_a_one_line_data_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_table(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert "cannot read as" in message


def test_truncated_parquet(tmp_path):
    path = _write("parquet", tmp_path / "cut.parquet")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="cannot read as parquet"):
        read_table(path)


def test_missing_selected_column(tmp_path):
    path = _write("parquet", tmp_path / "d.parquet")
    with pytest.raises(DataError):
        read_table(path, columns=["no_such_column"])


# -- one pass of the missing-value rule per read (issue: the CLI cleaned a CSV 3-4 times) --
def _counted(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(module, name)

    def counted(*args: object) -> object:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(module, name, counted)
    return calls


def _blank_csv(tmp_path: Path, rows: int = 600) -> Path:
    path = tmp_path / "blank.csv"
    body = "".join(f"{i % 7},{['a', 'b', ' ', 'NA'][i % 4]},{'xyz'[i % 3]}\n"
                   for i in range(rows))
    path.write_text("n,c,d\n" + body)
    return path


def test_a_csv_is_sampled_once_and_read_clean(tmp_path, monkeypatch):
    from watchkeeper.io import delimited

    sampled = _counted(monkeypatch, delimited, "_sample_lines")
    reading = delimited.read_csv(_blank_csv(tmp_path))
    assert len(sampled) == 1
    # blank (' ', '') and NA cells are missing straight from read_csv, not a later pass
    assert set(reading.table.column("c").to_pylist()) == {"a", "b", None}
    assert to_table(reading.table) is reading.table


def test_init_and_check_clean_each_text_column_once(tmp_path, monkeypatch):
    import watchkeeper as wk
    from watchkeeper.io import missing

    path = _blank_csv(tmp_path)
    passes = _counted(monkeypatch, missing, "_null_where_na")  # once per text column chunk
    suite = wk.init(path, progress=False)
    assert len(passes) == 2  # c and d, read from the file; not again by schema or profile
    passes.clear()
    result = suite.check(path, window_rows=200)
    assert len(result.windows) == 3 and len(passes) == 2  # the windows are rows of it
    blank = suite.check(pa.table({"n": [1] * 50, "c": [" "] * 50, "d": ["x"] * 50}))
    assert blank.windows[0].profile.columns["c"].missing == 50  # a Table is cleaned too
