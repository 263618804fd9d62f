"""Column kinds and roles, inferred from reference data and names, each with its binning
plan (:mod:`watchkeeper.baseline.binning`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.binning import (
    DEFAULT_BINS,
    MAX_CODE_LEVELS,
    MAX_SELECTION_DRIFT,
    MIN_LEVEL_ROWS,
    plan_categories,
    plan_numeric,
    selection_drift,
)
from watchkeeper.baseline.expressions import Rule
from watchkeeper.baseline.segments import Segment
from watchkeeper.baseline.task import Task
from watchkeeper.baseline.text import TextPlan, free_text, plan_text
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.names import unknown_column
from watchkeeper.io.pii import Guess, assess, named_kind
from watchkeeper.io.tables import to_table
from watchkeeper.io.values import category_counts, numbers, type_class, whole_levels
from watchkeeper.wire import RESERVED

if TYPE_CHECKING:
    from watchkeeper.baseline.embedding import Codebook
    from watchkeeper.baseline.multivariate import JointModel
    from watchkeeper.baseline.ood import SecurityModel

#: A string column with more distinct values than this share of its rows is an
#: identifier or free text, not a category.
TEXT_DISTINCT_SHARE = 0.5


class Kind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    TEXT = "text"  # identifier or free text: not monitored as a distribution
    EMBEDDING = "embedding"  # fixed-length vectors, monitored by a codebook (embedding.py)


class Role(StrEnum):
    FEATURE = "feature"
    TARGET = "target"
    PREDICTION = "prediction"
    PROBA = "proba"
    ID = "id"
    TIMESTAMP = "timestamp"
    CLIENT = "client"
    IGNORE = "ignore"


_ROLE_NAMES: dict[Role, re.Pattern[str]] = {
    Role.TARGET: re.compile(r"^(target|label|y|y_true|class|outcome|ground_truth|actual)$"),
    Role.PROBA: re.compile(
        r"^(proba|probability|score|y_proba|y_score|pred_proba|prediction_score)$"
        r"|proba|probability|_score$"
    ),
    Role.PREDICTION: re.compile(
        r"^(prediction|predicted|pred|y_pred|y_hat|predicted_(label|class))$"
    ),
    Role.CLIENT: re.compile(r"^(client|client_id|caller|caller_id|tenant|api_key_id)$"),
    Role.ID: re.compile(r"^(id|uuid|request_id|prediction_id|row_id|record_id)$|_id$"),
}
_TIME_INDEX = re.compile(r"^(year|month|week|day|quarter|period|batch|chunk)$")
_SENSITIVE = re.compile(
    r"^(sex|gender|race|rac1p|ethnicity|ethnic|age|agep|age_group|religion|nationality|disability)$"
)


@dataclass
class Column:
    """One column of the schema: what it is, what it is for, and how it is binned."""

    name: str
    kind: Kind
    role: Role = Role.FEATURE
    dtype: str = "numeric"  # the type class seen in the reference (see values.type_class)
    sensitive: bool = False
    edges: list[float] | None = None  # numeric: [min, interior quantiles..., max]
    categories: list[str] | None = None  # categorical/boolean: levels, most frequent first
    truncated: bool = False  # categories hold only the MAX_CATEGORIES most frequent levels
    note: str | None = None  # why the kind or role was chosen, when not obvious
    pii: str | None = None  # personal data: "hash" or "drop" before storage (see pii.py)
    text: TextPlan | None = None  # free text: its descriptors' plan (see text.py)
    #: Embedding (or embedded text): the reference codebook; its code counts are the bins.
    codebook: Codebook | None = None
    members: list[str] | None = None  # an embedding made of these numeric columns

    @property
    def n_bins(self) -> int:
        """Bins in this column's histogram (0 when it has none)."""
        if self.edges is not None:
            return len(self.edges) + 1  # below min, interior bins, above max
        if self.categories is not None:
            return len(self.categories) + 2  # levels, other, unseen
        return 0

    @property
    def monitored(self) -> bool:
        return self.role not in (Role.IGNORE, Role.ID)


@dataclass
class Schema:
    columns: dict[str, Column] = field(default_factory=dict)
    task: Task | None = None  # what the model predicts; None without target or prediction
    security: SecurityModel | None = None  # normal inputs, for OOD rows and client abuse
    #: Declarative rules every row should meet, tallied by the profile (see expressions.py).
    rules: list[Rule] = field(default_factory=list)
    #: Slices of rows monitored on their own (see segments.py); each window profile keeps
    #: a sub-profile per segment value.
    segments: list[Segment] = field(default_factory=list)
    #: How the features move together, for multivariate drift (see multivariate.py).
    multivariate: JointModel | None = None
    #: Declared column groups (name → their own model), each judged by its own
    #: ``multivariate_drift`` monitor (see multivariate.py).
    multivariate_groups: dict[str, JointModel] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Column]:
        return iter(self.columns.values())

    def __getitem__(self, name: str) -> Column:
        return self.columns[name]

    def by_role(self, role: Role) -> list[Column]:
        return [c for c in self.columns.values() if c.role == role]

    @property
    def pii(self) -> dict[str, str]:
        """Personal-data columns and what to do with them: column → hash|drop."""
        return {c.name: c.pii for c in self.columns.values() if c.pii}


def _names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _infer_kind(name: str, column: pa.ChunkedArray, rows: int) -> tuple[Kind, str | None]:
    cls = type_class(column.type)
    if cls == "boolean":
        return Kind.BOOLEAN, None
    if cls == "datetime":
        return Kind.DATETIME, None
    if cls == "null":
        return Kind.NUMERIC, "all values missing in the reference"
    if _numeric_lists(column.type):
        return Kind.EMBEDDING, None
    if cls == "numeric":
        values = numbers(column).finite
        if values.size == 0:
            return Kind.NUMERIC, "no finite values in the reference"
        levels = whole_levels(values)
        if levels is not None:
            if levels.size <= MAX_CODE_LEVELS:
                plural = "" if levels.size == 1 else "s"
                return Kind.CATEGORICAL, f"integer codes with {levels.size} level{plural}"
            if levels.size == values.size and values.size >= 50:
                return Kind.TEXT, "unique integers"
        return Kind.NUMERIC, None
    if cls == "string":
        if _looks_like_dates(column):
            return Kind.DATETIME, "strings that parse as dates"
        counts, missing = category_counts(column)
        present = rows - missing
        if present and len(counts) > max(50, TEXT_DISTINCT_SHARE * present):
            return Kind.TEXT, f"{len(counts)} distinct values in {present} rows: identifier or text"
        return Kind.CATEGORICAL, None
    return Kind.TEXT, f"unsupported type {column.type}: only missing values are monitored"


def _numeric_lists(t: pa.DataType) -> bool:
    """Lists (or fixed-size lists) of numbers: vectors."""
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        return False
    return pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)


def _looks_like_dates(column: pa.ChunkedArray) -> bool:
    import pandas as pd

    sample = [v for v in column.slice(0, 200).to_pylist() if v]
    if not sample or not all(re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}", v) for v in sample):
        return False
    try:
        pd.to_datetime(pd.Series(sample), format="ISO8601")
    except (ValueError, TypeError):
        return False
    return True


def _infer_role(name: str, kind: Kind, column: pa.ChunkedArray) -> tuple[Role, str | None]:
    lower = name.lower()
    if kind == Kind.DATETIME:
        return Role.TIMESTAMP, None
    if kind == Kind.EMBEDDING:
        return Role.FEATURE, None
    for role, pattern in _ROLE_NAMES.items():
        if not pattern.search(lower):
            continue
        if role == Role.PROBA and kind != Kind.NUMERIC:
            continue
        article = "an" if role.value[0] in "aeiou" else "a"
        return role, f"named like {article} {role.value} column"
    if _TIME_INDEX.match(lower):
        return Role.IGNORE, "a time index, not a feature (use --timestamp for time windows)"
    if kind == Kind.TEXT and type_class(column.type) == "numeric":
        return Role.ID, None
    return Role.FEATURE, None


def infer_schema(
    table: pa.Table,
    *,
    target: str | None = None,
    prediction: str | Iterable[str] | None = None,
    proba: str | Iterable[str] | None = None,
    id: str | None = None,
    timestamp: str | None = None,
    client: str | None = None,
    sensitive: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    pii: str | Iterable[str] | None = None,
    not_pii: str | Iterable[str] | None = None,
    bins: int = DEFAULT_BINS,
) -> Schema:
    """Infer kinds, roles and the binning plan of every column of a reference table.

    Explicit arguments override what names and data suggest: ``pii`` columns are personal
    data whatever their values, ``not_pii`` columns are monitored whatever their name.

    >>> t = pa.table({"age": [20.5, 30.1, 40.7] * 20, "SEX": ["1", "2", "1"] * 20,
    ...               "y": [0, 1, 0] * 20})
    >>> s = infer_schema(t)
    >>> [(c.name, c.kind.value, c.role.value, c.sensitive)
    ...  for c in s]  # doctest: +NORMALIZE_WHITESPACE
    [('age', 'numeric', 'feature', True), ('SEX', 'categorical', 'feature', True),
     ('y', 'categorical', 'target', False)]
    """
    table = to_table(table)  # checks column names are unique
    if table.num_rows == 0:
        raise DataError("the reference data has no rows")
    if table.num_columns == 0:
        raise DataError("the reference data has no columns")
    if bins < 2:
        raise SuiteError("bins", f"must be at least 2, got {bins}")
    explicit: dict[str, Role] = {}
    for role, given in (
        (Role.TARGET, target),
        (Role.PREDICTION, prediction),
        (Role.PROBA, proba),
        (Role.ID, id),
        (Role.TIMESTAMP, timestamp),
        (Role.CLIENT, client),
        (Role.IGNORE, ignore),
    ):
        for name in _names(given):
            if name not in table.column_names:
                raise SuiteError(role.value,
                                 unknown_column(name, table.column_names, "in the reference"))
            if name in explicit:
                raise SuiteError(role.value, f"{name!r} is already given as "
                                 f"{explicit[name].value}=; give each column one role")
            explicit[name] = role
    pii_names, not_pii_names = set(_names(pii)), set(_names(not_pii))
    sensitive_names = set(_names(sensitive))
    for option, names in (("pii", pii_names), ("not_pii", not_pii_names),
                          ("sensitive", sensitive_names)):
        for name in sorted(names - set(table.column_names)):
            raise SuiteError(option, unknown_column(name, table.column_names, "in the reference"))
    for name in sorted(pii_names & not_pii_names):
        raise SuiteError("not_pii", f"{name!r} is also given as pii=; give it in one of them")

    schema = Schema()
    for name in table.column_names:
        if name in RESERVED:
            continue  # service signals (latency, errors, caller, time): see service.py
        column = table.column(name)
        kind, kind_note = _infer_kind(name, column, table.num_rows)
        role_note: str | None
        if name in explicit:
            role, role_note = explicit[name], "given"
            if role == Role.TIMESTAMP and kind != Kind.DATETIME:
                kind, kind_note = Kind.DATETIME, "given as timestamp"
        else:
            role, role_note = _infer_role(name, kind, column)
        is_sensitive = name in sensitive_names or (
            not sensitive_names and sensitive is None and bool(_SENSITIVE.match(name.lower()))
        )
        spec = Column(
            name=name,
            kind=kind,
            role=role,
            dtype=type_class(column.type),
            sensitive=is_sensitive,
            note="; ".join(n for n in (kind_note, role_note if role_note != "given" else None) if n)
            or None,
        )
        if name in pii_names:
            guess: Guess | None = Guess(True, "given")
        elif name in not_pii_names:
            guess = Guess(False, "given")
        else:
            guess = None if name in explicit else _pii_guess(name, column)
        if guess is not None and guess.personal:
            # kept as text: no value of a personal-data column is stored, not even a level
            spec.pii, spec.kind = "hash", Kind.TEXT
            spec.note = "personal data" + ("" if guess.reason == "given" else
                                           f" ({guess.reason})") + \
                "; hashed with HMAC-SHA256 before storage (or set pii: drop)"
        elif guess is not None:
            spec.note = "; ".join(n for n in (spec.note, f"not personal data: {guess.reason}")
                                  if n)
        if role != Role.IGNORE:
            _plan(spec, column, bins)
        schema.columns[name] = spec
    return schema


def _pii_guess(name: str, column: pa.ChunkedArray) -> Guess | None:
    """Personal data guessed from a column's name and values (numbers only by name)."""
    cls = type_class(column.type)
    if cls not in ("string", "numeric") or (cls == "numeric" and named_kind(name) is None):
        return None
    import pyarrow.compute as pc

    return assess(name, pc.drop_null(column).slice(0, 200).to_pylist())


def _plan(spec: Column, column: pa.ChunkedArray, bins: int) -> None:
    if spec.kind == Kind.NUMERIC:
        finite = numbers(column).finite
        if finite.size:
            spec.edges = plan_numeric(finite, bins)
    elif spec.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
        counts, _ = category_counts(column)
        if spec.kind == Kind.BOOLEAN:
            counts.update({"false": 0, "true": 0})
        spec.categories, spec.truncated = plan_categories(counts)
        if spec.truncated:
            _keep_frequent_levels(spec, column, counts)
    if spec.kind == Kind.TEXT and spec.dtype == "string" and spec.pii is None and \
            spec.role in (Role.FEATURE, Role.PREDICTION) and free_text(column):
        spec.text = plan_text(column, bins)
        spec.note = "; ".join(n for n in (spec.note, "monitored by its descriptors (length, "
                              "tokens, non-ASCII share, out-of-vocabulary rate, empty)") if n)


def _keep_frequent_levels(spec: Column, column: pa.ChunkedArray, counts: dict[str, int]) -> None:
    """A code with many levels: monitored on its levels seen MIN_LEVEL_ROWS times, as many
    as :func:`selection_drift` allows, the rest sharing the "other" bin; left out (as
    text) when no level qualifies."""
    levels = [c for c in spec.categories or () if counts[c] >= MIN_LEVEL_ROWS]
    halves = _halves(column) if levels else None
    while levels and halves and selection_drift(*halves, len(levels)) > MAX_SELECTION_DRIFT:
        levels = levels[: len(levels) * 2 // 3]
    total = sum(counts.values())
    other = 1 - sum(counts[c] for c in levels) / total if total else 1.0
    if not levels:
        spec.kind, spec.categories, spec.truncated = Kind.TEXT, None, False
        note = (f"{len(counts)} levels, none frequent enough in the reference to tell from "
                "chance: not monitored as a distribution (only missing values)")
    else:
        spec.categories = levels
        note = (f"{len(counts)} levels: monitored on the {len(levels)} most frequent "
                f"(seen at least {MIN_LEVEL_ROWS} times), the other "
                f"{len(counts) - len(levels)} ({other:.0%} of rows) as one share")
    spec.note = "; ".join(n for n in (spec.note, note) if n)


def _halves(column: pa.ChunkedArray) -> tuple[dict[str, int], dict[str, int]]:
    """Level counts of the even and the odd reference rows."""
    import pyarrow.compute as pc

    odd = np.arange(len(column)) % 2 == 1
    return (dict(category_counts(pc.filter(column, pa.array(~odd)))[0]),
            dict(category_counts(pc.filter(column, pa.array(odd)))[0]))
