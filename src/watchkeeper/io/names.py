"""Column names given by a user: checked against the data, with the closest names
suggested when one is not there."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Sequence

from watchkeeper.errors import DataError
from watchkeeper.io.formats import DELIMITERS


def check_unique(names: list[str]) -> None:
    """A :class:`DataError` naming the column names given more than once, if any."""
    duplicated = sorted(n for n, k in Counter(names).items() if k > 1)
    if duplicated:
        raise DataError(f"duplicate column names: {', '.join(duplicated)}")


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


def check_columns(wanted: Iterable[str], names: Sequence[str], source: str) -> None:
    """A :class:`DataError` for the first wanted column that is not among ``names`` (the
    columns of the file ``source``)."""
    for name in wanted:
        if name not in names:
            raise DataError(f"{source}: {unknown_column(name, names, 'in the file')}")
