"""Delimited text (CSV, TSV and the like): its layout (delimiter, header row, title
lines above the data) guessed from its first lines or given (:class:`CsvLayout`), read
whole (:func:`read_csv`), block by block (:func:`csv_blocks`), or parsed elsewhere
(Spark) as here (:func:`csv_parse`). Blank cells and :data:`~watchkeeper.io.missing.NA_TEXTS`
are missing, and ``a, b`` is trimmed."""

from __future__ import annotations

import csv as pycsv
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from watchkeeper.errors import DataError
from watchkeeper.io.formats import DELIMITERS, format_of
from watchkeeper.io.missing import NA_TEXTS, is_text, mark_clean, missing_as_null
from watchkeeper.io.names import check_columns, check_unique

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
    tsv = format_of(p) == "tsv" if tsv is None else tsv
    full, skip, spaced, notes, has_rows = _layout_of(p, layout or CsvLayout(), tsv)
    names = list(full.names or ())
    check_unique(names)
    if columns:
        check_columns(columns, names, str(p))
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
        return CsvReading(mark_clean(_typed(_trimmed(table))), full, notes)
    return CsvReading(missing_as_null(table), full, notes)  # blank text: ' ' too


def _trimmed(table: pa.Table) -> pa.Table:
    """Text columns without the spaces around each value."""
    for i, column in enumerate(table.columns):
        if is_text(column.type):
            table = table.set_column(i, table.field(i), pc.utf8_trim_whitespace(column))
    return missing_as_null(table)


def _typed(table: pa.Table) -> pa.Table:
    """Text columns whose every value is a whole number or a number, cast to it."""
    for i, column in enumerate(table.columns):
        if not is_text(column.type) or column.null_count == len(column):
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
    tsv = format_of(p) == "tsv"
    full, skip, spaced, notes, has_rows = _layout_of(p, layout or CsvLayout(), tsv)
    names = list(full.names or ())
    check_unique(names)

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
                    table = mark_clean(table)
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
    full, skip, spaced, _, _ = _layout_of(p, layout or CsvLayout(), format_of(p) == "tsv")
    blocks, _, _ = csv_blocks(p, full)
    first = next(iter(blocks), None)
    names = tuple(full.names or ())
    types = (pa.schema([(n, pa.string()) for n in names]) if first is None
             else first.table.schema.remove_metadata())
    return CsvParse(str(p), names, full.delimiter or ",", skip, spaced, types)
