"""The contract every monitor keeps, as functions you can run on your own monitor.

Each property is a function ``prop(monitor, case)`` that returns nothing when the monitor
keeps it and raises :class:`AssertionError` naming the monitor and the property when it does
not; :data:`PROPERTIES` lists them by name. Watchkeeper's own tests run every property on
every monitor type (``tests/monitors/test_monitor_contract.py``, ids such as
``feature_drift-merge_equals_union``).

- ``merge_equals_union``: a window's findings from two merged profiles equal the findings
  on the concatenated rows (profiles roll up from minutes to days, across workers);
- ``profile_round_trip``: a window profile restored from its dict gives the same findings
  (the server stores profiles, not rows);
- ``suite_file_round_trip``: the monitor rebuilt from its suite-file entry has the same
  entry and gives the same findings;
- ``deterministic``: judging a window twice gives the same findings, and judging mutates
  neither the window nor the reference;
- ``empty_window``: a window of no rows (and a sequence of them) is judged without error;
- ``missing_columns``: a window that carries only some of the suite's columns is judged
  without error;
- ``bad_values_do_not_raise``: rows of wrong types, NaN, ±inf and unknown columns are
  counted by the profile, never raised by the monitor;
- ``well_formed_findings``: findings carry the monitor's family, a severity and a
  JSON-serialisable ``to_dict()``;
- ``within_budget``: on windows drawn from the reference distribution the monitor alerts
  in no more windows than its α allows (skipped when the case has no such windows).

Checking your own monitor
-------------------------
A monitor defined in your code registers itself by its ``type`` (that is how a suite file
finds it). Give :func:`check_monitor` the reference rows and a batch of rows to judge; it
binds and calibrates the monitor and runs every property::

    from typing import Any, ClassVar

    import numpy as np
    import pyarrow as pa
    from watchkeeper.monitors import Monitor, Severity
    from watchkeeper.monitors.contract import check_monitor

    class TooManyZeros(Monitor):
        type = "too_many_zeros"
        family = "quality"
        calibrated = False
        params: ClassVar[dict[str, Any]] = {"max_share": 0.5}

        def evaluate(self, window, reference):
            col = window.columns.get(self.column)
            if col is None or not col.count or col.bins is None:
                return []
            zero_bin = int(np.searchsorted(self.spec.edges, 0.0, side="right"))
            share = col.bins[zero_bin] / col.count
            if share <= self.settings["max_share"]:
                return []
            return [self.finding(share, self.settings["max_share"], Severity.WARNING,
                                 f"{share:.0%} of {self.column} near zero")]

    rng = np.random.default_rng(0)
    reference = pa.table({"x": rng.normal(5.0, 1.0, 5_000)})
    data = pa.table({"x": rng.normal(5.0, 1.0, 2_000)})
    check_monitor(TooManyZeros("x"), reference, data)  # raises AssertionError on a breach

For a monitor that reads the task (labels, predictions) or the OOD model, pass the schema
of a fitted suite: ``check_monitor(m, reference, data, schema=wk.init(reference).schema)``.
Pass ``windows=`` (profiles of reference-like windows) to check the alert budget too.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from watchkeeper.baseline.schema import Schema, infer_schema
from watchkeeper.monitors.base import Finding, Monitor, ReferenceData, Severity, monitor_class
from watchkeeper.profiles.core import Profile, merge, profile

#: Rows of the wrong types for every column (used when a case names no bad rows).
BAD_VALUES: tuple[Any, ...] = ("not a number", float("inf"), None, -1e300, 7, float("nan"),
                               "purple", True, [1, 2])


@dataclass
class Case:
    """What the properties judge a monitor on.

    ``schema`` and ``reference`` are the suite's (the monitor is bound and calibrated
    against them); ``data`` is a batch of rows to judge, split in two for the merge
    property; ``windows`` are profiles of windows drawn from the reference distribution
    (for ``within_budget``; empty: not checked); ``bad_rows`` are malformed rows (default:
    :data:`BAD_VALUES` in every column, plus an unknown column); ``span`` is the
    (start, end) given to the windows judged, for monitors that read time.
    """

    schema: Schema
    reference: Profile
    data: pa.Table
    windows: Sequence[Profile] = ()
    bad_rows: list[dict[str, Any]] | None = None
    span: tuple[datetime, datetime] | None = None
    #: Windows with an alert allowed on ``windows``; None: a Poisson bound from the α.
    allowed_alerts: int | None = None
    split: int | None = None  # where ``data`` is cut for the merge property (None: half)
    _profiles: dict[str, Profile] = field(default_factory=dict, init=False, repr=False)

    def window(self, data: Any, name: str | None = None) -> Profile:
        """Profile rows as a window of this case (with the case's time span). A ``name``
        profiles them once: later calls get a fresh copy of that profile."""
        if name is None:
            return self.timed(profile(data, self.schema))
        if name not in self._profiles:
            self._profiles[name] = self.timed(profile(data, self.schema))
        return copy.deepcopy(self._profiles[name])

    def timed(self, p: Profile) -> Profile:
        if self.span is not None:
            p.start, p.end = self.span
        return p

    def malformed(self) -> list[dict[str, Any]]:
        if self.bad_rows is not None:
            return self.bad_rows
        names = list(self.schema.columns)
        return [{**{n: BAD_VALUES[(i + j) % len(BAD_VALUES)] for j, n in enumerate(names)},
                 "surprise_column": i} for i in range(3 * len(BAD_VALUES))]


Key = tuple[str, str | None, str | None, str | None, float, str]


def key(findings: list[Finding]) -> list[Key]:
    """Findings as comparable tuples (values rounded to 9 decimals), sorted."""
    return sorted((f.monitor, f.column, f.metric, f.segment, round(f.value, 9),
                   f.severity.value) for f in findings)


def _fail(monitor: Monitor, prop: str, detail: str) -> AssertionError:
    return AssertionError(f"{monitor.id} ({type(monitor).__name__}) breaks {prop}: {detail}")


def _judge(monitor: Monitor, window: Profile, reference: Profile, prop: str) -> list[Finding]:
    try:
        return monitor.evaluate(window, reference)
    except Exception as exc:
        raise _fail(monitor, prop, f"evaluate raised {type(exc).__name__}: {exc}") from exc


# -- properties ---------------------------------------------------------------------------
def merge_equals_union(monitor: Monitor, case: Case) -> None:
    """Findings on merge(profile(a), profile(b)) equal those on profile(a + b)."""
    cut = case.data.num_rows // 2 if case.split is None else case.split
    a, b = case.data.slice(0, cut), case.data.slice(cut)
    merged = case.timed(merge(case.window(a, "first part"), case.window(b, "second part")))
    union = case.window(case.data, "data")
    got = key(_judge(monitor, merged, case.reference, "merge_equals_union"))
    want = key(_judge(monitor, union, case.reference, "merge_equals_union"))
    if got != want:
        raise _fail(monitor, "merge_equals_union",
                    f"merged profiles give {got}, the concatenated rows {want}")


def profile_round_trip(monitor: Monitor, case: Case) -> None:
    """A window restored from ``Profile.to_dict`` (through JSON) is judged the same."""
    window = case.window(case.data, "data")
    restored = Profile.from_dict(json.loads(json.dumps(window.to_dict())))
    got = key(_judge(monitor, restored, case.reference, "profile_round_trip"))
    want = key(_judge(monitor, window, case.reference, "profile_round_trip"))
    if got != want:
        raise _fail(monitor, "profile_round_trip",
                    f"the restored profile gives {got}, the original {want}")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as the suite file writes them (Python numbers and lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def rebuild(monitor: Monitor) -> Monitor:
    """The monitor as a suite file loads it: its entry through YAML, the class found by
    ``type`` in the registry, bound to the same schema."""
    entry = yaml.safe_load(yaml.safe_dump(_plain(monitor.to_dict()), sort_keys=False))
    cls = monitor_class(entry.pop("type"))
    column = entry.pop("column", None)
    calibration = entry.pop("calibration", None)
    alpha = entry.pop("alpha", 0.01)
    enabled = entry.pop("enabled", True)
    params = {k: type(cls.params[k])(v) if k in cls.params else v for k, v in entry.items()}
    out = cls(column, alpha=alpha, enabled=enabled, calibration=calibration, **params)
    if monitor.schema is not None:
        out.bind(monitor.schema)
    return out


def suite_file_round_trip(monitor: Monitor, case: Case) -> None:
    """The monitor rebuilt from its suite-file entry has the same entry and findings."""
    try:
        loaded = rebuild(monitor)
    except Exception as exc:
        raise _fail(monitor, "suite_file_round_trip",
                    f"rebuilding from {monitor.to_dict()!r} raised {exc!r}") from exc
    before, after = _plain(monitor.to_dict()), _plain(loaded.to_dict())
    if before != after:
        raise _fail(monitor, "suite_file_round_trip", f"entry {before} came back as {after}")
    window = case.window(case.data, "data")
    got = key(_judge(loaded, window, case.reference, "suite_file_round_trip"))
    want = key(_judge(monitor, window, case.reference, "suite_file_round_trip"))
    if got != want:
        raise _fail(monitor, "suite_file_round_trip",
                    f"the reloaded monitor finds {got}, the original {want}")


def deterministic(monitor: Monitor, case: Case) -> None:
    """Judging a window twice gives the same findings; it mutates neither profile."""
    window = case.window(case.data, "data")
    seen_window, seen_reference = window.to_dict(), case.reference.to_dict()
    first = key(_judge(monitor, window, case.reference, "deterministic"))
    second = key(_judge(monitor, window, case.reference, "deterministic"))
    if first != second:
        raise _fail(monitor, "deterministic", f"first {first}, then {second}")
    if window.to_dict() != seen_window:
        raise _fail(monitor, "deterministic", "evaluate changed the window profile")
    if case.reference.to_dict() != seen_reference:
        raise _fail(monitor, "deterministic", "evaluate changed the reference profile")


def empty_window(monitor: Monitor, case: Case) -> None:
    """A window of no rows, and the bare empty profile, are judged without error."""
    for name, window in (("a window of no rows", case.window(case.data.slice(0, 0), "empty")),
                         ("Profile()", case.timed(Profile()))):
        try:
            monitor.not_evaluated(window)
            monitor.evaluate(window, case.reference)
            monitor.measure(window)
            monitor.evaluate_sequence([window, window])
        except Exception as exc:
            raise _fail(monitor, "empty_window",
                        f"{name} raised {type(exc).__name__}: {exc}") from exc


def missing_columns(monitor: Monitor, case: Case) -> None:
    """A window that carries only one of the suite's columns is judged without error."""
    for name in case.data.column_names:
        window = case.window(case.data.select([name]), f"only {name}")
        try:
            monitor.assess(window, case.reference)
        except Exception as exc:
            raise _fail(monitor, "missing_columns", f"a window of only {name!r} raised "
                                                    f"{type(exc).__name__}: {exc}") from exc


def bad_values_do_not_raise(monitor: Monitor, case: Case) -> None:
    """Malformed rows are counted by the profile and judged without error."""
    rows = case.malformed()
    try:
        window = case.window(rows, "bad rows")
    except Exception as exc:  # the profile's job, but a breach all the same
        raise _fail(monitor, "bad_values_do_not_raise",
                    f"profiling the rows raised {type(exc).__name__}: {exc}") from exc
    try:
        monitor.assess(window, case.reference)
    except Exception as exc:
        raise _fail(monitor, "bad_values_do_not_raise",
                    f"judging them raised {type(exc).__name__}: {exc}") from exc


def well_formed_findings(monitor: Monitor, case: Case) -> None:
    """Findings on the data and on bad rows name the monitor's family, carry a Severity
    and serialise to strict JSON."""
    for window in (case.window(case.data, "data"), case.window(case.malformed(), "bad rows")):
        for f in _judge(monitor, window, case.reference, "well_formed_findings"):
            if f.family != monitor.family or not isinstance(f.severity, Severity):
                raise _fail(monitor, "well_formed_findings",
                            f"finding {f.monitor} has family {f.family!r} and severity "
                            f"{f.severity!r}")
            try:
                json.dumps(f.to_dict(), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise _fail(monitor, "well_formed_findings",
                            f"{f.to_dict()} is not JSON ({exc})") from exc


def poisson_bound(mean: float, tail: float = 1e-3) -> int:
    """The smallest k with P(X > k) ≤ tail for X ~ Poisson(mean).

    >>> poisson_bound(0.0), poisson_bound(0.05), poisson_bound(1.0)
    (0, 2, 5)
    """
    k, term = 0, math.exp(-mean)
    cdf = term
    while 1.0 - cdf > tail:
        k += 1
        term *= mean / k
        cdf += term
    return k


def within_budget(monitor: Monitor, case: Case) -> None:
    """On reference-like windows, the monitor alerts (warning or critical) in at most the
    case's ``allowed_alerts`` windows; by default the 99.9% Poisson bound of α × windows
    (0 for a monitor that is not calibrated: it must not alert on clean data)."""
    windows = list(case.windows)
    if not windows or not monitor.enabled:
        return
    per_window = monitor.evaluate_sequence(windows)
    if per_window is None:  # as a check judges them: not the windows it cannot judge
        per_window = [[] if monitor.not_evaluated(w) else monitor.evaluate(w, case.reference)
                      for w in windows]
    alerting = [i for i, found in enumerate(per_window)
                if any(f.severity.rank >= 1 for f in found)]
    allowed = case.allowed_alerts
    if allowed is None:
        allowed = poisson_bound(monitor.alpha * len(windows) if monitor.calibrated else 0.0)
    if len(alerting) > allowed:
        raise _fail(monitor, "within_budget",
                    f"alerts in {len(alerting)} of {len(windows)} reference-like windows "
                    f"({alerting[:10]}), at most {allowed} allowed (α = {monitor.alpha:g})")


#: Every property by name, in the order :func:`check_monitor` runs them.
PROPERTIES: dict[str, Callable[[Monitor, Case], None]] = {
    "merge_equals_union": merge_equals_union,
    "profile_round_trip": profile_round_trip,
    "suite_file_round_trip": suite_file_round_trip,
    "deterministic": deterministic,
    "empty_window": empty_window,
    "missing_columns": missing_columns,
    "bad_values_do_not_raise": bad_values_do_not_raise,
    "well_formed_findings": well_formed_findings,
    "within_budget": within_budget,
}


@dataclass
class Report:
    """Which properties a monitor kept (returned by :func:`check_monitor`)."""

    monitor: str
    passed: list[str] = field(default_factory=list)


def check_monitor(
    monitor: Monitor,
    reference: pa.Table,
    data: pa.Table,
    *,
    schema: Schema | None = None,
    windows: Sequence[pa.Table] = (),
    calibrate: bool = True,
    seed: int = 0,
    properties: Sequence[str] | None = None,
) -> Report:
    """Bind ``monitor`` to ``schema`` (default: inferred from ``reference``), calibrate it on
    ``reference`` and check every property (or those named) on ``data``; ``windows`` are
    tables drawn from the reference distribution, for the alert budget. Raises
    :class:`AssertionError` at the first property the monitor breaks.
    """
    schema = schema if schema is not None else infer_schema(reference)
    ref_profile = profile(reference, schema)
    monitor.bind(schema)
    if calibrate:
        monitor.calibrate(ReferenceData(reference, schema, ref_profile, seed))
    case = Case(schema, ref_profile, data, windows=[profile(w, schema) for w in windows])
    names = list(PROPERTIES) if properties is None else list(properties)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; known: {', '.join(PROPERTIES)}")
    report = Report(monitor.id)
    for name in names:
        PROPERTIES[name](monitor, case)
        report.passed.append(name)
    return report
