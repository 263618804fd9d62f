"""A suite file's parts as objects and back: columns, the label and loss models, monitors,
the reference profile, the budget's weights and the alert rules (the YAML itself is
:mod:`watchkeeper.suite.file`; the whole suite, :meth:`Suite.from_dict
<watchkeeper.suite.core.Suite.from_dict>`)."""

from __future__ import annotations

from typing import Any

from watchkeeper.alerts import Rules
from watchkeeper.baseline.schema import Column, Kind, Role, Schema
from watchkeeper.baseline.task import Task
from watchkeeper.baseline.text import TextPlan
from watchkeeper.errors import SuiteError
from watchkeeper.io.names import did_you_mean
from watchkeeper.io.pii import MODES
from watchkeeper.monitors import (
    Monitor,
    monitor_class,
)
from watchkeeper.profiles.column import ColumnProfile
from watchkeeper.profiles.core import Profile
from watchkeeper.suite import file as suitefile
from watchkeeper.suite.embeddings import (
    bins_of,
    codebook_from_fields,
)
from watchkeeper.suite.generate import family_weights


def column_to_dict(c: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": c.kind.value, "role": c.role.value, "dtype": c.dtype}
    if c.sensitive:
        out["sensitive"] = True
    if c.edges is not None:
        out["edges"] = c.edges
    if c.categories is not None:
        out["categories"] = c.categories
        if c.truncated:
            out["truncated"] = True
    if c.pii:
        out["pii"] = c.pii
    if c.text is not None:
        out["text"] = c.text.to_dict()
    if c.codebook is not None:
        out["codebook"] = c.codebook.to_dict()
    if c.note:
        out["note"] = c.note
    return out


def column_from_fields(f: suitefile.Fields, name: str) -> Column:
    column = Column(
        name=name,
        kind=Kind(f.choice("kind", [k.value for k in Kind])),
        role=Role(f.choice("role", [r.value for r in Role], Role.FEATURE.value)),
        dtype=f.text("dtype", "numeric"),
        sensitive=f.flag("sensitive", False),
        edges=f.numbers("edges", None),
        categories=None,
        truncated=f.flag("truncated", False),
        note=f.text("note", None),
        pii=f.choice("pii", list(MODES), None),
    )
    if column.edges is not None:
        if len(column.edges) < 2:
            raise f.error("edges", "needs at least the reference min and max")
        if any(b < a for a, b in zip(column.edges, column.edges[1:], strict=False)):
            raise f.error("edges", "must be in increasing order")
    if "text" in f.data:
        try:
            column.text = TextPlan.from_dict(f.mapping("text").data)
        except (ValueError, TypeError) as exc:
            raise f.error("text", str(exc)) from None
    if f.data.get("codebook") is not None:
        column.codebook = codebook_from_fields(f)
    cats = f.items("categories", None)
    if cats is not None:
        column.categories = [str(c) for c in cats]
        if len(set(column.categories)) != len(column.categories):
            raise f.error("categories", "has duplicates")
    return column


def weights_from_fields(top: suitefile.Fields) -> dict[str, float]:
    try:
        return family_weights(top.mapping("budget", {}).data, "budget")
    except SuiteError as exc:
        raise SuiteError(exc.field, exc.problem, top.source) from None


def rules_from_fields(top: suitefile.Fields) -> Rules:
    if "alerts" not in top.data:
        return Rules()
    try:
        return Rules.from_dict(top.mapping("alerts").data)
    except (ValueError, KeyError, TypeError) as exc:
        raise top.error("alerts", str(exc)) from None


def task_from_fields(f: suitefile.Fields, schema: Schema) -> Task:
    try:
        task = Task.from_dict(f.data, f.path)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SuiteError):
            raise SuiteError(exc.field, exc.problem, f.source) from None
        raise f.error("sensitive", f"malformed ({exc})") from None
    for key in ("target", "prediction", "proba", "id"):
        name = getattr(task, key)
        if name is not None and name not in schema.columns:
            raise f.error(key, f"no column {name!r} in columns"
                                 f"{did_you_mean(name, schema.columns)}")
    for a in task.attributes:
        if a.column not in schema.columns:
            raise f.error(f"sensitive.{a.column}", "no such column in columns")
    return task


def monitor_from_fields(f: suitefile.Fields, schema: Schema) -> Monitor:
    try:
        cls = monitor_class(f.text("type"))
    except SuiteError as exc:
        raise f.error("type", exc.problem) from None
    column = f.text("column", None)
    if column is not None and not cls.knows_column(schema, column):
        raise f.error("column", f"no column {column!r} in columns"
                               f"{did_you_mean(column, schema.columns)}")
    params = {}
    for key, default in cls.params.items():
        params[key] = type(default)(f.number(key, default, lo=0.0))
    unknown = set(f.data) - {"type", "column", "alpha", "enabled", "calibration", *cls.params}
    if unknown:
        raise f.error(sorted(unknown)[0], f"unknown field for a {cls.type} monitor")
    monitor = cls(
        column,
        alpha=f.number("alpha", 0.01, 0.0, 1.0, open_interval=True),
        enabled=f.flag("enabled", True),
        calibration=f.mapping("calibration", {}).data,
        **params,
    )
    try:
        monitor.bind(schema)  # a monitor of a task the suite lacks, say
    except SuiteError as exc:
        raise SuiteError(f.path, f"{monitor.id} {exc.problem}", f.source) from None
    return monitor


def profile_from_fields(f: suitefile.Fields, schema: Schema) -> Profile:
    try:
        reference = Profile.from_dict(f.data)
    except (KeyError, TypeError, ValueError) as exc:
        raise f.error("columns", f"malformed profile ({exc})") from None
    for name, cp in reference.columns.items():
        spec = schema.columns.get(name)
        if spec is None:
            raise f.error(f"columns.{name}", "column is not in the suite's columns")
        if cp.bins is not None and len(cp.bins) != bins_of(spec):
            raise f.error(f"columns.{name}.bins",
                          f"has {len(cp.bins)} bins, the column's plan has {bins_of(spec)}")
    for spec in schema:
        if spec.role != Role.IGNORE and spec.name not in reference.columns:
            reference.columns[spec.name] = ColumnProfile()
    return reference
