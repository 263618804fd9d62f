"""Turn whatever tabular input a user has into a pyarrow Table.

Accepted: pyarrow Tables and RecordBatches, pandas and polars DataFrames, lists of dict
rows, and paths to parquet, CSV, JSON-lines, Arrow/Feather files. Columns with mixed
Python types (a pandas object column holding numbers and strings) are kept as strings so
nothing is lost; profiling then counts the values that do not fit the schema as invalid.

One rule for missing values, whatever the input: a text cell that is blank (empty or only
spaces) or one of :data:`NA_TEXTS` is missing, exactly as a null or NaN is. A CSV file's
layout (delimiter, header row, comment lines above the data) is guessed from its first
lines and can be given instead (:class:`CsvLayout`); see :func:`read_csv`.
"""

from __future__ import annotations

import csv as pycsv
import difflib
import os
import re
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from watchkeeper.errors import DataError
from watchkeeper.io.delta import is_delta, live_files

#: Text read as a missing value in every input (CSV cells, JSON, pandas/polars/Arrow
#: strings), besides blank text: pandas' default NA spellings plus "?" (UCI data sets).
NA_TEXTS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
            "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?")
_NA_SET = pa.array(NA_TEXTS, type=pa.string())

_READERS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
    # delimited text named otherwise (UCI's adult.data, adult.test): delimiter guessed
    ".data": "csv",
    ".test": "csv",
    ".dat": "csv",
}


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst"):
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in _READERS:
        known = ", ".join(sorted(_READERS))
        raise DataError(f"{path}: unknown file type; expected one of {known} (optionally .gz)")
    return _READERS[suffixes[-1]]


def is_delimited(path: str | os.PathLike[str]) -> bool:
    """Whether a path names a delimited text file, CSV or TSV (read by :func:`read_csv`)."""
    p = Path(path)
    try:
        return p.is_file() and _format_of(p) in ("csv", "tsv")
    except DataError:
        return False


def read_table(path: str | os.PathLike[str], columns: list[str] | None = None,
               layout: CsvLayout | None = None) -> pa.Table:
    """Read a data file into an Arrow table, with a one-line error when that fails.
    ``layout`` says how a CSV file is laid out (guessed when not given)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    fmt = "parquet" if p.is_dir() else _format_of(p)  # a directory: a parquet data set
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
            _check_columns(columns or [], file.schema_arrow.names, str(p))
            return file.read(columns=columns)
        if fmt in ("csv", "tsv"):
            return read_csv(p, columns, layout or CsvLayout(), tsv=fmt == "tsv").table
        if fmt == "json":
            from pyarrow import json

            table = json.read_json(p)
            if columns:
                _check_columns(columns, table.column_names, str(p))
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
        _check_columns(columns, data.schema.names, str(path))
    return data.to_table(columns=columns)


def _check_unique(names: list[str]) -> None:
    duplicated = sorted(n for n, k in Counter(names).items() if k > 1)
    if duplicated:
        raise DataError(f"duplicate column names: {', '.join(duplicated)}")


def _from_pandas(frame: Any) -> pa.Table:
    _check_unique([str(n) for n in frame.columns])  # pandas allows them, Arrow does not
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
    _check_unique(table.column_names)
    return missing_as_null(table)  # at once when it already went through it (read_csv)


# --- one rule for missing values -----------------------------------------------------


def _is_text(arrow_type: pa.DataType) -> bool:
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
        if not _is_text(chunk.type.value_type):
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


def _mark_clean(table: pa.Table) -> pa.Table:
    key = id(table)
    _CLEAN[key] = weakref.ref(table, lambda _: _CLEAN.pop(key, None))
    return table


def _is_clean(table: pa.Table) -> bool:
    ref = _CLEAN.get(id(table))
    return ref is not None and ref() is table


def rows_of(table: pa.Table, part: pa.Table) -> pa.Table:
    """``part``, some of ``table``'s rows (a slice, filter or take): it needs no pass of
    :func:`missing_as_null` when ``table`` needs none (the windows of ``check``)."""
    return _mark_clean(part) if _is_clean(table) else part


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
        if not (_is_text(t) or (pa.types.is_dictionary(t) and _is_text(t.value_type))):
            continue
        old = column.chunks
        chunks = [_null_where_na(chunk) for chunk in old]
        if any(a is not b for a, b in zip(chunks, old, strict=True)):
            table = table.set_column(i, table.field(i), pa.chunked_array(chunks, t))
    return _mark_clean(table)


# --- column names given by a user -----------------------------------------------------


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """" (did you mean 'x'?)" naming the closest existing names, or "" when none is close.

    >>> did_you_mean("credt", ["credit", "age", "debt"])
    " (did you mean 'credit'?)"
    """
    names = list(names)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not close:  # differing only in case or surrounding spaces
        folded = {n.strip().lower(): n for n in names}
        close = [folded[name.strip().lower()]] if name.strip().lower() in folded else []
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def unknown_column(name: str, names: Iterable[str], where: str = "in the data") -> str:
    """The message for a column name that is not there, with the closest ones.

    >>> unknown_column("incme", ["age", "income"])
    "no column named 'incme' in the data (did you mean 'income'?)"
    """
    names = list(names)
    if len(names) == 1 and any(d in names[0] for d in DELIMITERS):
        return (f"no column named {name!r} {where}, which has one column, {names[0]!r}: "
                "a delimited file read with the wrong delimiter? (give delimiter=)")
    return f"no column named {name!r} {where}{did_you_mean(name, names)}"


def _check_columns(wanted: Iterable[str], names: Sequence[str], source: str) -> None:
    for name in wanted:
        if name not in names:
            raise DataError(f"{source}: {unknown_column(name, names, 'in the file')}")


# --- CSV layout -------------------------------------------------------------------------


#: Delimiters tried, in order of preference when several fit equally well.
DELIMITERS = (",", "\t", ";", "|", " ")
_SAMPLE_BYTES = 1 << 16
#: Lines above the header (titles of a hand export) skipped at most; more, and the file is
#: read from its first line, for the reader to say what is wrong.
_TITLE_LINES = 10
_LINE_END = re.compile(r"\r\n|\r|\n")  # as Arrow's CSV reader ends lines
_NAMES = {"\t": "tab", " ": "space"}


def _delimiter_name(delimiter: str) -> str:
    return _NAMES.get(delimiter, repr(delimiter))


@dataclass(frozen=True)
class CsvLayout:
    """How a delimited text file is laid out. ``None`` means: guess it from the first lines.

    ``names`` are the column names of a file without a header row (``header=False``);
    ``names_if_headerless`` are used only when the file turns out to have none (``check``
    passes the suite's columns, so a headerless file reads as the reference did).
    """

    delimiter: str | None = None
    header: bool | None = None
    names: tuple[str, ...] | None = None
    names_if_headerless: tuple[str, ...] | None = None


@dataclass
class CsvReading:
    """A CSV file read into a table, and what was guessed or changed to read it."""

    table: pa.Table
    layout: CsvLayout
    notes: list[str] = field(default_factory=list)


def _sample_lines(path: Path) -> tuple[list[str], list[int]]:
    """The first non-blank lines of a file, and the number of each among all its lines
    (blank ones too, as Arrow's ``skip_rows`` and Spark's text reader count them)."""
    size = _SAMPLE_BYTES
    with pa.input_stream(str(path), compression="detect") as stream:
        raw = stream.read(size + 1)
        while len(raw) > size and raw.count(b"\n") < 3 and size < 64 * _SAMPLE_BYTES:
            raw += stream.read(size)  # very long lines: read on until a few are whole
            size *= 2
    text = raw[:size].decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = _LINE_END.split(text)
    if len(raw) > size and len(lines) > 1:
        lines = lines[:-1]  # cut off mid-line
    at = [i for i, line in enumerate(lines) if line.strip()]
    return [lines[i] for i in at], at


def _split(lines: list[str], delimiter: str) -> list[list[str]]:
    return list(pycsv.reader(lines, delimiter=delimiter))


def _fit(rows: list[list[str]]) -> tuple[float, int]:
    """Share of rows with the most common field count, and that count; but where those
    rows are title lines above a wider header with fewer rows of data below it (all of one
    count, in a small file), every row fits and the count is the header's."""
    counts = Counter(len(r) for r in rows)
    width, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    below = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if below is not None and below <= _TITLE_LINES:
        rest = {len(r) for r in rows[below:]}
        if len(rest) == 1 and (wider := rest.pop()) > width:
            return 1.0, wider
    return n / len(rows), width


def _guess_delimiter(lines: list[str], preferred: str) -> str | None:
    """The delimiter that splits the most lines into the same number (>1) of fields."""
    order = [preferred, *(d for d in DELIMITERS if d != preferred)]
    best: tuple[float, str] | None = None
    for d in order:
        share, width = _fit(_split(lines, d))
        if width > 1 and (best is None or share > best[0] + 1e-9):
            best = (share, d)
    return best[1] if best else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "infinity")


def _looks_like_header(first: list[str], body: list[list[str]]) -> bool:
    """Whether the first row names the columns: it does when a column of numbers has a
    text in the first row; it does not when a column of numbers has a number there, or
    when most of its values recur below in the same column."""
    header_sign = data_sign = False
    for j, head in enumerate(first):
        below = [r[j].strip() for r in body if j < len(r) and r[j].strip() not in NA_TEXTS]
        if not below or sum(map(_is_number, below)) < 0.8 * len(below):
            continue
        if _is_number(head):
            data_sign = True
        elif head.strip() not in NA_TEXTS:
            header_sign = True
    if header_sign or data_sign:
        return header_sign
    recurring = sum(head.strip() in {r[j].strip() for r in body if j < len(r)}
                    for j, head in enumerate(first) if head.strip())
    return not (body and recurring >= max(1, len(first) / 2))


def _layout_of(path: Path, layout: CsvLayout, tsv: bool) -> tuple[CsvLayout, int, bool,
                                                                   list[str], bool]:
    """The full layout of a file, the number of lines above the data to skip, whether
    fields start with a space after the delimiter, notes on what was guessed, and whether
    any line of data follows the header. The lines to skip count blank lines above the
    data as Arrow's ``skip_rows`` does (a blank line above the header is one)."""
    lines, at = _sample_lines(path)
    if not lines:
        raise DataError(f"{path}: the file is empty")
    notes: list[str] = []
    default = "\t" if tsv else ","
    delimiter = layout.delimiter
    if delimiter is None:
        delimiter = _guess_delimiter(lines, default) or default
        if delimiter != default:
            notes.append(f"delimiter guessed: {_delimiter_name(delimiter)} "
                         "(give delimiter= to change it)")
    rows = _split(lines, delimiter)
    width = _fit(rows)[1]
    if width == 1 and layout.delimiter is None:
        notes.append("one column: no delimiter among "
                     f"{', '.join(map(_delimiter_name, DELIMITERS))} splits the lines alike "
                     "(give delimiter=)")
    skip = next(i for i, r in enumerate(rows) if len(r) == width)
    if 0 < skip <= _TITLE_LINES:
        shown = "; ".join(lines[:skip])
        notes.append(f"skipped {skip} line(s) above the data: {shown[:60]!r}")
    elif skip > _TITLE_LINES:
        skip = 0  # ragged file: let the reader say what is wrong
    data = [r for r in rows[skip + 1: skip + 201] if len(r) == width]
    spaced = width > 1 and sum(
        f.startswith(" ") for r in data for f in r[1:]) >= 0.9 * sum(len(r) - 1 for r in data)
    header = layout.header
    if header is None:
        header = _looks_like_header(rows[skip], data)
    names = layout.names
    if names is not None:
        notes.append("columns named as given, in place of the header row" if header
                     else "no header row: columns named as given")
    elif header:
        raw = rows[skip]
        names = tuple(n.strip() for n in raw)
        changed = [n for n in raw if n != n.strip()]
        if changed:
            notes.append(f"stripped spaces around {len(changed)} column name(s), "
                         f"e.g. {changed[0]!r} → {changed[0].strip()!r}")
    else:
        first = ", ".join(f.strip() for f in rows[skip][:4])
        fallback = layout.names_if_headerless
        if layout.header is False:
            names = tuple(f"column_{j + 1}" for j in range(width))
            notes.append(f"no header row: columns named column_1 … column_{width}")
        elif fallback is not None and len(fallback) == width:
            names = tuple(fallback)
            notes.append(f"no header row (the first row is data: {first}, …): "
                         f"its {width} columns are named as in the suite")
        else:
            raise DataError(
                f"{path}: no header row, the first row looks like data ({first}, …); "
                f"give its {width} column names with names=, or header=True if that "
                "row names the columns")
    assert names is not None
    if len(names) != width:
        raise DataError(f"{path}: {len(names)} column names given, the file has {width} "
                        f"columns (delimiter {_delimiter_name(delimiter)})")
    full = CsvLayout(delimiter=delimiter, header=header, names=names)
    above = skip + (1 if header else 0)  # non-blank lines above the data
    return full, at[skip] + (1 if header else 0), spaced, notes, above < len(lines)


def read_csv(path: str | os.PathLike[str], columns: list[str] | None = None,
             layout: CsvLayout | None = None, *, tsv: bool | None = None) -> CsvReading:
    """Read a delimited text file, guessing what ``layout`` leaves open.

    Blank cells and :data:`NA_TEXTS` are missing in every column; when every delimiter is
    followed by a space (``a, b, c``), that space is not part of the value.
    """
    from pyarrow import csv

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    tsv = _format_of(p) == "tsv" if tsv is None else tsv
    full, skip, spaced, notes, has_rows = _layout_of(p, layout or CsvLayout(), tsv)
    names = list(full.names or ())
    _check_unique(names)
    if columns:
        _check_columns(columns, names, str(p))
    if not has_rows:  # a header and no rows
        return CsvReading(pa.table({n: pa.nulls(0) for n in columns or names}), full, notes)
    read = csv.ReadOptions(skip_rows=skip, column_names=names)
    parse = csv.ParseOptions(delimiter=full.delimiter or ",")
    convert = csv.ConvertOptions(
        null_values=list(NA_TEXTS), strings_can_be_null=True, include_columns=columns or [],
        column_types={n: pa.string() for n in names} if spaced else None)
    try:
        table = csv.read_csv(p, read_options=read, parse_options=parse,
                             convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise DataError(f"{p}: cannot read as CSV with delimiter "
                        f"{_delimiter_name(full.delimiter or ',')}: {first_line}") from exc
    if spaced:  # trimmed, then NA spellings are missing, then columns of numbers cast
        return CsvReading(_mark_clean(_typed(_trimmed(table))), full, notes)
    return CsvReading(missing_as_null(table), full, notes)  # blank text: ' ' too


def _trimmed(table: pa.Table) -> pa.Table:
    """Text columns without the spaces around each value."""
    for i, column in enumerate(table.columns):
        if _is_text(column.type):
            table = table.set_column(i, table.field(i), pc.utf8_trim_whitespace(column))
    return missing_as_null(table)


def _typed(table: pa.Table) -> pa.Table:
    """Text columns whose every value is a whole number or a number, cast to it."""
    for i, column in enumerate(table.columns):
        if not _is_text(column.type) or column.null_count == len(column):
            continue
        for to in (pa.int64(), pa.float64()):
            try:
                cast = pc.cast(column, to)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            table = table.set_column(i, pa.field(table.field(i).name, to), cast)
            break
    return table


# --- delimited text, block by block -----------------------------------------------------


@dataclass
class CsvBlock:
    """Rows of a delimited file read as one block: the table, the first row's number
    (0 = the first row of data) and the bytes of the file read so far."""

    table: pa.Table
    first_row: int
    bytes_read: int


def csv_blocks(path: str | os.PathLike[str], layout: CsvLayout | None = None, *,
               block_bytes: int = 1 << 20) -> tuple[Iterator[CsvBlock], CsvLayout, list[str]]:
    """Read a delimited text file block by block, each cleaned as :func:`read_csv` cleans a
    whole file (blank cells and :data:`NA_TEXTS` missing; ``a, b`` trimmed). Column types
    are inferred from the first block, as Arrow's reader does for a whole file; a later
    value that does not fit is a :class:`DataError` naming the file and the rows.

    Returns the blocks (read lazily), the full layout and the notes on what was guessed.
    """
    from pyarrow import csv

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    tsv = _format_of(p) == "tsv"
    full, skip, spaced, notes, has_rows = _layout_of(p, layout or CsvLayout(), tsv)
    names = list(full.names or ())
    _check_unique(names)

    def blocks() -> Iterator[CsvBlock]:
        if not has_rows:
            return
        read = csv.ReadOptions(skip_rows=skip, column_names=names, block_size=block_bytes,
                               use_threads=True)
        parse = csv.ParseOptions(delimiter=full.delimiter or ",")
        convert = csv.ConvertOptions(
            null_values=list(NA_TEXTS), strings_can_be_null=True,
            column_types={n: pa.string() for n in names} if spaced else None)
        raw = pa.OSFile(str(p), "rb")  # its position: the bytes read, compressed or not
        codec = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}.get(p.suffix.lower())
        stream = pa.CompressedInputStream(raw, codec) if codec else raw
        done, types = 0, None
        with raw, stream:
            try:
                reader = csv.open_csv(stream, read_options=read, parse_options=parse,
                                      convert_options=convert)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise _csv_error(p, full, exc, done) from exc
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise _csv_error(p, full, exc, done) from exc
                table = pa.Table.from_batches([batch])
                if spaced:  # as read_csv: trimmed, NA spellings missing, numbers cast
                    table = _trimmed(table)
                    if types is None:
                        table = _typed(table)
                        types = table.schema
                    else:
                        table = _cast_like(table, types, p, done)
                    table = _mark_clean(table)
                else:
                    table = missing_as_null(table)
                yield CsvBlock(table, done, raw.tell())
                done += table.num_rows

    return blocks(), full, notes


def _csv_error(path: Path, layout: CsvLayout, exc: Exception, first_row: int) -> DataError:
    import re

    first_line = str(exc).strip().splitlines()[0]
    names = layout.names or ()
    first_line = re.sub(r"In CSV column #(\d+)", lambda m: f"column {names[int(m[1])]!r}"
                        if int(m[1]) < len(names) else m[0], first_line)
    return DataError(f"{path}: rows from {first_row}: cannot read as CSV with delimiter "
                     f"{_delimiter_name(layout.delimiter or ',')}: {first_line} (column "
                     "types come from the first block of rows)")


def _cast_like(table: pa.Table, schema: pa.Schema, path: Path, first_row: int) -> pa.Table:
    """A later block of a file with spaces after its delimiters, cast to the first one's
    column types."""
    for i, field_ in enumerate(schema):
        column = table.column(i)
        if column.type == field_.type:
            continue
        try:
            table = table.set_column(i, field_, pc.cast(column, field_.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(
                f"{path}: rows {first_row}-{first_row + table.num_rows - 1}: column "
                f"{field_.name!r} holds values that are not {field_.type} as in the rows "
                f"above ({str(exc).splitlines()[0]})") from exc
    return table


# --- delimited text parsed elsewhere (Spark) as here -----------------------------------


@dataclass(frozen=True)
class CsvParse:
    """How :func:`csv_blocks` reads a delimited file, for lines read elsewhere (by Spark, a
    split of the file at a time): the lines above the data to drop at the start of each
    file (comments, the header), the column names and delimiter, whether values are
    trimmed (``a, b``), and the column types of the file's first block. :meth:`parse` turns
    lines into the table the local reader makes of them: the same parser, NA spellings and
    types, so a check on Spark equals the local one."""

    path: str
    names: tuple[str, ...]
    delimiter: str
    skip: int  # lines above the data (comments, blank lines, then the header)
    spaced: bool
    types: pa.Schema

    def parse(self, lines: list[str], first_row: int = 0) -> pa.Table:
        """The rows of ``lines`` (lines of data, without their line ends), cleaned as
        :func:`csv_blocks` cleans a block; a value that does not fit its column's type is a
        DataError naming the column (``first_row``: the first line's row, for errors)."""
        from pyarrow import csv

        if not lines:
            return self.types.empty_table()
        read = csv.ReadOptions(column_names=list(self.names), use_threads=False)
        parse = csv.ParseOptions(delimiter=self.delimiter)
        types = ({n: pa.string() for n in self.names} if self.spaced
                 else {f.name: f.type for f in self.types})
        convert = csv.ConvertOptions(null_values=list(NA_TEXTS), strings_can_be_null=True,
                                     column_types=types)
        layout = CsvLayout(delimiter=self.delimiter, names=self.names)
        try:
            table = csv.read_csv(pa.py_buffer("\n".join(lines).encode("utf-8")),
                                 read_options=read, parse_options=parse,
                                 convert_options=convert)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _csv_error(Path(self.path), layout, exc, first_row) from exc
        if self.spaced:
            return _cast_like(_trimmed(table), self.types, Path(self.path), first_row)
        return missing_as_null(table)


def csv_parse(path: str | os.PathLike[str], layout: CsvLayout | None = None) -> CsvParse:
    """How :func:`csv_blocks` reads ``path`` (layout guessed from its first lines, types
    from its first block of rows), for :meth:`CsvParse.parse`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    full, skip, spaced, _, _ = _layout_of(p, layout or CsvLayout(), _format_of(p) == "tsv")
    blocks, _, _ = csv_blocks(p, full)
    first = next(iter(blocks), None)
    names = tuple(full.names or ())
    types = (pa.schema([(n, pa.string()) for n in names]) if first is None
             else first.table.schema.remove_metadata())
    return CsvParse(str(p), names, full.delimiter or ",", skip, spaced, types)
