"""Finding, Severity and the Monitor base class every monitor family builds on."""

from __future__ import annotations

import copy
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import metadata
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.schema import Column, Schema
from watchkeeper.baseline.task import Task
from watchkeeper.errors import SuiteError
from watchkeeper.io.jsonable import json_number
from watchkeeper.io.names import did_you_mean
from watchkeeper.profiles.core import Profile
from watchkeeper.stats.calibration import rate_threshold


class Family(StrEnum):
    """A monitor's family: what it watches, and the unit the alert budget is shared by.
    Its value is what findings, alerts and the suite file's ``budget`` spell."""

    QUALITY = "quality"
    DRIFT = "drift"
    PERFORMANCE = "performance"
    ESTIMATED_PERFORMANCE = "estimated_performance"
    FAIRNESS = "fairness"
    SERVICE = "service"
    SECURITY = "security"


#: Every family's name, in report order.
FAMILIES: tuple[str, ...] = tuple(f.value for f in Family)


class Severity(StrEnum):
    INFO = "info"  # never alerts
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return ("info", "warning", "critical").index(self.value)


@dataclass
class Finding:
    """What one monitor found in one window."""

    monitor: str
    family: str
    column: str | None
    value: float
    threshold: float
    severity: Severity
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    window: str | None = None
    metric: str | None = None  # what was measured, when a monitor measures several things
    segment: str | None = None  # the group of rows concerned, e.g. "SEX=2 & RAC1P=1"

    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "family": self.family,
            "column": self.column,
            "value": json_number(self.value),
            "threshold": json_number(self.threshold),
            "severity": self.severity.value,
            "message": self.message,
            "evidence": {k: json_number(v) for k, v in self.evidence.items()},
            "window": self.window,
            "metric": self.metric,
            "segment": self.segment,
        }


@dataclass
class ReferenceData:
    """What calibration may look at: the reference rows, their schema and profile."""

    table: pa.Table
    schema: Schema
    profile: Profile
    seed: int = 0

    def rng(self, *key: object) -> np.random.Generator:
        """A generator seeded by the suite seed and a key, so calibration is reproducible."""
        return np.random.default_rng([self.seed, zlib.crc32(repr(key).encode())])


_REGISTRY: dict[str, type[Monitor]] = {}


class Monitor:
    """A monitor answers one question about a window and returns Findings.

    Subclasses set ``type`` and ``family``, list their tunable ``params`` with defaults,
    implement :meth:`evaluate`, and, when their threshold is calibrated, :meth:`calibrate`,
    which stores what it learned in ``self.calibration`` (saved in the suite file).
    """

    type: ClassVar[str]
    family: ClassVar[Family]
    #: Whether the monitor can raise false alerts and so takes a share of the alert budget.
    calibrated: ClassVar[bool] = True
    #: Tunable parameters and their defaults; saved in the suite file.
    params: ClassVar[dict[str, Any]] = {}
    #: Whether the monitor reads the suite's task (target, prediction, score): binding it
    #: to a schema without one is an error.
    needs_task: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            register_monitor(cls)

    def __init__(
        self,
        column: str | None = None,
        *,
        alpha: float = 0.01,
        enabled: bool = True,
        calibration: dict[str, Any] | None = None,
        **params: Any,
    ) -> None:
        unknown = set(params) - set(self.params)
        if unknown:
            raise SuiteError(f"{self.type}.{sorted(unknown)[0]}", "unknown parameter; known: "
                             f"{', '.join(self.params) or 'none'}")
        self.column = column
        self.alpha = alpha
        self.enabled = enabled
        self.calibration: dict[str, Any] = dict(calibration or {})
        self.settings: dict[str, Any] = {**self.params, **params}
        self.schema: Schema | None = None

    def bind(self, schema: Schema) -> None:
        """Attach the suite's schema; a monitor of a column the schema lacks, or of a task
        it does not have, is an error."""
        if self.column is not None and not self.knows_column(schema, self.column):
            raise SuiteError(f"{self.id}.column", f"no column {self.column!r} in the schema"
                             f"{did_you_mean(self.column, schema.columns)}")
        if self.needs_task and schema.task is None:
            raise SuiteError(self.id, "needs the suite's task (its target, prediction or "
                                      "score columns), and the suite has none; remove the "
                                      "monitor, or re-run init() with target= or prediction=")
        self.schema = schema

    @classmethod
    def knows_column(cls, schema: Schema, name: str) -> bool:
        """Whether ``name`` is something this type of monitor can watch in ``schema``: a
        column (a monitor of a declared group of columns says so by overriding this)."""
        return name in schema.columns

    def bound_schema(self) -> Schema:
        """The schema :meth:`bind` attached; an error on a monitor not bound yet."""
        if self.schema is None:
            raise SuiteError(self.id, "the monitor is not bound to a schema; put it in a "
                                      "Suite, or call bind(schema) first")
        return self.schema

    def bound_task(self) -> Task:
        """The task of the schema :meth:`bind` attached (see :attr:`needs_task`)."""
        task = self.bound_schema().task
        if task is None:
            raise SuiteError(self.id, "needs the suite's task (its target, prediction or "
                                      "score columns), and the suite has none")
        return task

    @property
    def spec(self) -> Column:
        """The schema's spec of this monitor's column."""
        schema = self.bound_schema()
        if self.column is None:
            raise SuiteError(self.id, "the monitor has no column; give one")
        return schema.columns[self.column]

    @property
    def column_name(self) -> str:
        """The column of a monitor of one column (drift, quality…; not the model's)."""
        assert self.column is not None, f"{self.type} monitors a column"
        return self.column

    @property
    def id(self) -> str:
        return f"{self.type}:{self.column}" if self.column else self.type

    def calibrate(self, reference: ReferenceData) -> None:
        """Learn what "no change" looks like from the reference. Default: nothing to learn."""

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        raise NotImplementedError

    def measure(self, window: Profile) -> dict[str, Any]:
        """Values worth reporting for every window, alert or not (e.g. metrics)."""
        return {}

    def not_evaluated(self, window: Profile) -> str | None:
        """Why this monitor cannot judge ``window`` (``"n < 100"``: too few rows), or None
        when it can. A monitor that returns no finding for a window it could not judge
        says so here, so the window is not reported as "ok"."""
        return None

    def assess(self, window: Profile, reference: Profile) -> tuple[list[Finding], dict[str, Any]]:
        """Findings and measures of a window in one call. By default :meth:`evaluate` and
        :meth:`measure`; a monitor whose measures come out of its evaluation (drift: the
        distance and threshold of every window) overrides it to compute them once."""
        found = [] if self.not_evaluated(window) else self.evaluate(window, reference)
        return found, self.measure(window)

    def evaluate_sequence(self, windows: list[Profile]) -> list[list[Finding]] | None:
        """Findings per window for monitors that judge a run of windows (throughput, label
        coverage); None for monitors that judge each window alone."""
        return None

    def finding(
        self,
        value: float,
        threshold: float,
        severity: Severity,
        message: str,
        *,
        monitor: str | None = None,
        **evidence: Any,
    ) -> Finding:
        return Finding(
            monitor=monitor or self.type,
            family=str(self.family),  # a plain str (also for a subclass that sets one)
            column=self.column,
            value=float(value),
            threshold=float(threshold),
            severity=severity,
            message=message,
            evidence=evidence,
        )

    def rate_lines(self, k_ref: int, n_ref: int, n: int,
                   alpha: float | None = None) -> tuple[float, float, float]:
        """For a rate over ``n`` rows, against ``k_ref`` events in ``n_ref`` reference rows:
        the reference rate, and the warning and critical lines (the rate the reference
        exceeds with probability α, resp. α/100, and at least the reference rate plus
        ``min_effect``, resp. ``critical_effect``; critical never below warning).
        ``alpha`` is the monitor's α unless given (a share of it, for one of several
        rates the monitor tests)."""
        alpha = self.alpha if alpha is None else alpha
        base = k_ref / n_ref if n_ref else 0.0
        warning = max(rate_threshold(k_ref, n_ref, n, alpha),
                      base + self.settings["min_effect"])
        critical = max(rate_threshold(k_ref, n_ref, n, alpha / 100),
                       base + self.settings["critical_effect"], warning)
        return base, warning, critical

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.column is not None:
            out["column"] = self.column
        if not self.enabled:
            out["enabled"] = False
        if self.calibrated:
            out["alpha"] = self.alpha
        for key, default in self.params.items():
            out[key] = copy.deepcopy(self.settings.get(key, default))
        if self.calibration:  # a copy: editing the document must not edit the monitor
            out["calibration"] = copy.deepcopy(self.calibration)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.column!r})"


#: The entry point group a package declares its monitors in (name: the monitor's type).
ENTRY_POINT_GROUP = "watchkeeper.monitors"
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*")
#: Entry points that failed to load, by name, with the reason (named when asked for).
_BROKEN: dict[str, str] = {}
_entry_points_loaded = False


def _builtin(cls: type) -> bool:
    return cls.__module__.startswith("watchkeeper.monitors.")


def register_monitor(cls: type[Monitor]) -> type[Monitor]:
    """Make a monitor class of your own known by its ``type``, so a suite file can name it
    (returns the class: usable as a decorator). Checked here, so a mistake surfaces when
    the class is registered rather than in a check: a :class:`Monitor` subclass; ``type``
    in lower case letters, digits and ``_``, not a built-in type; ``family`` one of
    :data:`FAMILIES` (its share of the alert budget); numeric ``params`` (the suite file
    holds numbers); and an ``evaluate`` (or ``evaluate_sequence``) of its own.

    A subclass that sets ``type`` is registered (and so checked) when it is defined. Packages
    declare theirs in the ``watchkeeper.monitors`` entry point group instead
    (``too_many_zeros = "my_package.monitors:TooManyZeros"``), loaded when a suite names a
    type not known yet. Run :func:`watchkeeper.monitors.contract.check_monitor` on it too.

    >>> class Negative(Monitor):
    ...     type = "negative"
    ...     family = "quality"
    ...     params = {"max_share": "a lot"}
    ...     def evaluate(self, window, reference): return []
    Traceback (most recent call last):
    ...
    watchkeeper.errors.SuiteError: Negative.params.max_share: must be a number (the suite \
file holds numbers), got 'a lot'
    """
    name = getattr(cls, "__name__", repr(cls))
    if not isinstance(cls, type) or not issubclass(cls, Monitor):
        raise SuiteError("monitor", f"expected a subclass of watchkeeper.Monitor, got {name}")
    kind = cls.__dict__.get("type")
    if not isinstance(kind, str) or not _TYPE_NAME.fullmatch(kind):
        raise SuiteError(f"{name}.type", "set type to the name suite files give the monitor "
                         f"(lower case letters, digits and _), got {kind!r}")
    family = getattr(cls, "family", None)
    if str(family) not in FAMILIES:
        raise SuiteError(f"{name}.family", f"must be one of {', '.join(FAMILIES)}, got "
                                           f"{family!r}")
    params = cls.params
    if not isinstance(params, dict):
        raise SuiteError(f"{name}.params", f"expected a mapping of parameter to default, "
                                           f"got {params!r}")
    for key, default in params.items():
        if not isinstance(default, (int, float)) or isinstance(default, bool) or \
                not math.isfinite(default):
            raise SuiteError(f"{name}.params.{key}", f"must be a number (the suite file holds "
                                                      f"numbers), got {default!r}")
    if cls.evaluate is Monitor.evaluate and cls.evaluate_sequence is Monitor.evaluate_sequence:
        raise SuiteError(f"{name}.evaluate", "a monitor implements evaluate(window, reference)")
    taken = _REGISTRY.get(kind)
    if taken is not None and taken is not cls and _builtin(taken):
        raise SuiteError(f"{name}.type", f"{kind!r} is a built-in monitor type; give your "
                                         "monitor another")
    _REGISTRY[kind] = cls
    return cls


def _load_entry_points() -> None:
    """Register the monitors packages declare in :data:`ENTRY_POINT_GROUP` (once)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            register_monitor(cls)
            if cls.type != ep.name:
                raise SuiteError(ep.name, f"names a monitor of type {cls.type!r}")
        except Exception as exc:  # a broken plugin must not stop the others
            _BROKEN[ep.name] = f"{ep.value}: {exc}"


def installed() -> str:
    """The monitor types a suite may name, built-in then plugins (for error messages)."""
    builtin = sorted(t for t, c in _REGISTRY.items() if _builtin(c))
    plugins = sorted(t for t, c in _REGISTRY.items() if not _builtin(c))
    return (f"built-in: {', '.join(builtin)}; plugins: {', '.join(plugins) or 'none'}")


def monitor_class(type_name: str) -> type[Monitor]:
    """The class of a monitor type: built-in, registered, or declared by an installed
    package in the ``watchkeeper.monitors`` entry point group."""
    if type_name not in _REGISTRY:
        _load_entry_points()
    try:
        return _REGISTRY[type_name]
    except KeyError:
        if type_name in _BROKEN:
            raise SuiteError("type", f"monitor type {type_name!r}: its plugin failed to "
                                     f"load ({_BROKEN[type_name]})") from None
        raise SuiteError("type", f"unknown monitor type {type_name!r} (installed: "
                         f"{installed()}); install the package that provides it (entry "
                         f"point group {ENTRY_POINT_GROUP}), or register its class with "
                         "watchkeeper.register_monitor") from None


def monitor_types() -> dict[str, type[Monitor]]:
    """Every monitor type known: built-in, registered and from entry points."""
    _load_entry_points()
    return dict(_REGISTRY)


def absent(window: Profile, columns: Sequence[str | None]) -> list[str]:
    """The named columns that no row of a non-empty window carries (a model output that
    went missing: what is computed from it cannot be judged)."""
    return [c for c in columns if c and window.rows
            and (c not in window.columns or window.columns[c].count == 0)]


def severity_for(value: float, warning: float, critical: float) -> Severity | None:
    """Severity of a statistic that alerts when it exceeds its thresholds."""
    if value > critical:
        return Severity.CRITICAL
    if value > warning:
        return Severity.WARNING
    return None
