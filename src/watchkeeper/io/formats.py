"""Data files by name: the reader a file's suffix calls for, and the delimiters of
delimited text."""

from __future__ import annotations

import os
from pathlib import Path

from watchkeeper.errors import DataError

#: Delimiters tried, in order of preference when several fit equally well.
DELIMITERS = (",", "\t", ";", "|", " ")

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


def format_of(path: Path) -> str:
    """The reader a file's suffix calls for (parquet, csv, tsv, json or ipc), a compression
    suffix aside; a :class:`DataError` for any other suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst"):
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in _READERS:
        known = ", ".join(sorted(_READERS))
        raise DataError(f"{path}: unknown file type; expected one of {known} (optionally .gz)")
    return _READERS[suffixes[-1]]


def is_delimited(path: str | os.PathLike[str]) -> bool:
    """Whether a path names a delimited text file, CSV or TSV (read by
    :func:`~watchkeeper.io.delimited.read_csv`)."""
    p = Path(path)
    try:
        return p.is_file() and format_of(p) in ("csv", "tsv")
    except DataError:
        return False
