"""Batch check: split data into windows, profile each, evaluate the suite, collect results."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from watchkeeper.alerts import Alert, AlertManager, Notification, Rules
from watchkeeper.alerts.advice import incident_view
from watchkeeper.alerts.incidents import Incident
from watchkeeper.alerts.labels import fingerprint
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.display import html_of
from watchkeeper.io.jsonable import RESULT_DIGITS, plain
from watchkeeper.io.missing import rows_of
from watchkeeper.io.names import did_you_mean
from watchkeeper.io.times import from_epoch
from watchkeeper.io.values import epoch_seconds
from watchkeeper.monitors.base import Family, Finding, Monitor, Severity
from watchkeeper.monitors.estimate import (
    BAND_HISTORY,
    LabelledError,
    band_from_history,
    labelled_error,
)
from watchkeeper.profiles.core import Profile

if TYPE_CHECKING:
    from watchkeeper.run.label_join import LabelJoin

#: Window units: seconds per unit for fixed ones; "mo" (calendar months) has none.
UNITS: dict[str, int | None] = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400,
                                "mo": None}
#: Spellings of each unit. "m" stays minutes (``serve --window 5m``); "M" is refused.
_SPELLINGS = {"s": "s", "sec": "s", "second": "s", "seconds": "s",
              "m": "min", "min": "min", "mins": "min", "minute": "min", "minutes": "min",
              "h": "h", "hr": "h", "hour": "h", "hours": "h",
              "d": "d", "day": "d", "days": "d", "w": "w", "week": "w", "weeks": "w",
              "mo": "mo", "month": "mo", "months": "mo"}
_FORMS = "1s, 30s, 1min (or 1m), 1h, 1d, 1w, 1mo"
#: 1970-01-05, the first Monday after the Unix epoch, in days since it: weeks start there.
_FIRST_MONDAY = 4


@dataclass(frozen=True)
class WindowLength:
    """A window length: ``count`` of a ``unit`` (s, min, h, d, w, mo).

    Windows are aligned to calendar boundaries: seconds, minutes and hours to the UTC
    clock; days to midnight, weeks to Monday midnight and months to the 1st, in the time
    zone the check is given (UTC by default).

    >>> WindowLength.parse("1mo"), WindowLength.parse("15m").fixed
    (WindowLength(count=1, unit='mo'), datetime.timedelta(seconds=900))
    """

    count: float
    unit: str

    @classmethod
    def parse(cls, text: str, param: str = "window") -> WindowLength:
        """The length ``text`` spells; errors name ``param``, the argument it came from."""
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", str(text))
        if match and match.group(2) == "M":
            raise DataError(f"{param}: unit M in {text!r} is ambiguous; write "
                            f"{match.group(1)}min for minutes or {match.group(1)}mo for "
                            "calendar months")
        unit = _SPELLINGS.get(match.group(2).lower()) if match else None
        count = float(match.group(1)) if match else 0.0
        if unit is None or count <= 0:
            raise DataError(f"{param}: expected a positive length like {_FORMS}, "
                            f"got {text!r}")
        if unit in ("d", "w", "mo") and not count.is_integer():
            raise DataError(f"{param}: days, weeks and months are counted whole, got "
                            f"{text!r}; use hours for a fraction of a day")
        return cls(int(count) if count.is_integer() else count, unit)

    @property
    def fixed(self) -> timedelta | None:
        """The length as a duration; None for calendar months, whose length varies."""
        seconds = UNITS[self.unit]
        return None if seconds is None else timedelta(seconds=self.count * seconds)

    def __str__(self) -> str:
        return f"{self.count:g}{self.unit}"


def parse_duration(text: str, param: str = "window") -> timedelta:
    """Parse a fixed length such as ``30s``, ``15m`` (or ``15min``), ``6h``, ``1d`` or
    ``2w``; calendar months have no fixed length and are refused here. Errors name
    ``param``, the argument ``text`` came from.

    >>> parse_duration("6h")
    datetime.timedelta(seconds=21600)
    """
    length = WindowLength.parse(text, param)
    if length.fixed is None:
        raise DataError(f"{param}: calendar months have no fixed length here, got {text!r}; "
                        "give days (e.g. 30d), or check a batch with Suite.check(window=)")
    return length.fixed


@dataclass
class Window:
    """A slice of the input to be profiled as one window."""

    label: str
    table: pa.Table
    start: datetime | None = None
    end: datetime | None = None


def row_windows(table: pa.Table, rows: int | None) -> Iterator[Window]:
    """Consecutive windows of ``rows`` rows (the last one may be shorter); all rows if None."""
    if rows is not None and rows < 1:
        raise DataError(f"window_rows: must be a positive integer, got {rows!r}")
    total = table.num_rows
    size = rows or max(total, 1)
    for first in range(0, max(total, 1), size):
        last = min(first + size, total)
        yield Window(f"rows {first}-{max(last - 1, first)}",
                     rows_of(table, table.slice(first, last - first)))


def group_windows(table: pa.Table, column: str) -> Iterator[Window]:
    """One window per distinct value of ``column`` (a batch, partition or year), in sorted
    order; rows where it is missing form a last window of their own."""
    if column not in table.column_names:
        raise DataError(f"window_by: column {column!r} is not in the data"
                        f"{did_you_mean(column, table.column_names)}")
    import pyarrow.compute as pc

    values = table.column(column)
    for value in sorted(v for v in pc.unique(values).to_pylist() if v is not None):
        yield Window(f"{column}={value}",
                     rows_of(table, table.filter(pc.equal(values, pa.scalar(value)))))
    missing = pc.is_null(values)
    if pc.any(missing).as_py():
        yield Window(f"{column} missing", rows_of(table, table.filter(missing)))


def time_windows(table: pa.Table, column: str, length: WindowLength | timedelta,
                 tz: str | None = None) -> Iterator[Window]:
    """Tumbling windows aligned to calendar boundaries (see :class:`WindowLength`), empty
    ones included so gaps are seen.

    The first and last windows are clipped to the data's own first and last timestamp.
    Rows whose timestamp is missing or unreadable form a window of their own, so they are
    still profiled and counted.
    """
    if column not in table.column_names:
        raise DataError(f"timestamp column {column!r} is not in the data"
                        f"{did_you_mean(column, table.column_names)}")
    if isinstance(length, timedelta):
        length = WindowLength(length.total_seconds(), "s")
    calendar = Calendar(length, tz)
    seconds = epoch_seconds(table.column(column))
    known = np.isfinite(seconds)
    if known.any():
        lo, hi = float(seconds[known].min()), float(seconds[known].max())
        keys = calendar.keys(seconds[known])
        order = np.argsort(keys, kind="stable")
        rows = np.flatnonzero(known)[order]
        sorted_keys = keys[order]
        first_key, last_key = int(sorted_keys[0]), int(sorted_keys[-1])
        if last_key - first_key > 100_000:
            raise DataError(
                f"window: {length} over this data's time span makes "
                f"{last_key - first_key + 1} windows; choose a longer window"
            )
        bounds = np.searchsorted(sorted_keys, np.arange(first_key, last_key + 2))
        for i, key in enumerate(range(first_key, last_key + 1)):
            begin, finish = calendar.start(key), calendar.start(key + 1)
            start = max(begin, lo)
            end = min(finish, hi) if key == last_key else finish
            chunk = rows_of(table, table.take(pa.array(rows[bounds[i] : bounds[i + 1]])))
            yield Window(calendar.label(begin, finish), chunk, from_epoch(start), from_epoch(end))
    if not known.all():
        yield Window("missing timestamp", rows_of(table, table.filter(pa.array(~known))))


class Calendar:
    """Window keys of timestamps and the start of each key's window, in a time zone."""

    def __init__(self, length: WindowLength, tz: str | None) -> None:
        self.length, self.zone = length, _zone(tz)

    def keys(self, seconds: np.ndarray) -> np.ndarray:
        """The window number of each timestamp (Unix seconds)."""
        n, fixed = self.length.count, self.length.fixed
        if self.length.unit not in ("d", "w", "mo"):
            assert fixed is not None
            return np.floor(seconds / fixed.total_seconds()).astype(np.int64)
        local = self._local(seconds)
        if self.length.unit == "mo":
            months = local.astype("datetime64[M]").astype(np.int64)
            return np.floor_divide(months, int(n))
        days = local.astype("datetime64[D]").astype(np.int64)
        if self.length.unit == "w":
            return np.floor_divide(days - _FIRST_MONDAY, 7 * int(n))
        return np.floor_divide(days, int(n))

    def start(self, key: int) -> float:
        """Unix seconds at which window ``key`` starts."""
        n, fixed = self.length.count, self.length.fixed
        if self.length.unit not in ("d", "w", "mo"):
            assert fixed is not None
            return key * fixed.total_seconds()
        if self.length.unit == "mo":
            day = np.datetime64(key * int(n), "M").astype("datetime64[D]")
        elif self.length.unit == "w":
            day = np.datetime64(key * 7 * int(n) + _FIRST_MONDAY, "D")
        else:
            day = np.datetime64(key * int(n), "D")
        y, m, d = (int(x) for x in str(day).split("-"))
        return datetime(y, m, d, tzinfo=self.zone).timestamp()

    def label(self, start: float, end: float) -> str:
        return (f"{datetime.fromtimestamp(start, tz=self.zone).isoformat()}/"
                f"{datetime.fromtimestamp(end, tz=self.zone).isoformat()}")

    def _local(self, seconds: np.ndarray) -> np.ndarray:
        """Local wall-clock times (datetime64[s]) of Unix seconds in the zone."""
        whole = np.floor(seconds).astype(np.int64)
        if self.zone is UTC:
            return whole.astype("datetime64[s]")
        import pandas as pd

        try:
            stamps = pd.to_datetime(whole, unit="s", utc=True).tz_convert(self.zone)
        except (OverflowError, pd.errors.OutOfBoundsDatetime):
            raise DataError("tz: timestamps beyond the years 1677-2262 cannot be put in "
                            "local-time windows; drop tz=") from None
        return stamps.tz_localize(None).to_numpy().astype("datetime64[s]")


def _zone(tz: str | None) -> tzinfo:
    """The named time zone (IANA, e.g. Europe/Paris); UTC when None."""
    if tz is None or tz.upper() == "UTC":
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataError(f"tz: {tz!r} is not a known time zone; give an IANA name such as "
                        "UTC, Europe/Paris or America/New_York") from None


def _coverage(w: WindowResult) -> float:
    realised = w.metrics.get("realised", {})
    return realised.get("labeled", 0.0) / w.rows if w.rows else 0.0


class WindowStatus(StrEnum):
    """A window's verdict, as the JSON result's ``windows[].status`` spells it."""

    OK = "ok"  # every monitor judged it and none alerted
    ALERT = "alert"  # a warning or critical finding
    NOT_EVALUATED = "not_evaluated"  # no statistical monitor could judge it
    PARTLY_EVALUATED = "partly_evaluated"  # some monitors could not judge it


@dataclass
class Unjudged:
    """A monitor that could not judge a window (too few rows, groups or labels)."""

    monitor: str
    column: str | None
    reason: str
    segment: str | None = None  # a segment value too small to judge (monitor "segment")

    def to_dict(self) -> dict[str, Any]:
        out = {"monitor": self.monitor, "column": self.column,
               "status": WindowStatus.NOT_EVALUATED.value,
               "reason": self.reason}
        if self.segment is not None:
            out["segment"] = self.segment
        return out


def unjudged_segments(metrics: dict[str, Any]) -> list[Unjudged]:
    """The segment values a window's measures say were not evaluated (too few rows)."""
    return [Unjudged("segment", None, f"{label}: {e.get('reason', '')}", label)
            for label, e in (metrics.get("segments") or {}).items()
            if e.get("status") == WindowStatus.NOT_EVALUATED.value]


#: Families whose monitors judge a window statistically, and so need enough rows.
STATISTICAL = (Family.DRIFT, Family.PERFORMANCE, Family.ESTIMATED_PERFORMANCE, Family.FAIRNESS)


def unjudged(monitors: list[Monitor], window: Profile) -> tuple[list[Unjudged], bool]:
    """The enabled monitors that could not judge ``window``, with the reason; and whether
    none of the statistical ones could (the window as a whole is not evaluated)."""
    out, statistical, judged = [], 0, 0
    for m in monitors:
        if not m.enabled:
            continue
        reason = m.not_evaluated(window)
        if reason:
            out.append(Unjudged(m.type, m.column, reason))
        if m.family in STATISTICAL and m.calibrated:
            statistical += 1
            judged += not reason
    return out, bool(out) and judged == 0 and statistical > 0


@dataclass
class WindowResult:
    """Findings of one window, with the profile they were computed from, and the monitors
    that could not judge it (``not_evaluated``: a quiet window is "ok" only when every
    monitor judged it)."""

    label: str
    rows: int
    findings: list[Finding]
    profile: Profile
    start: datetime | None = None
    end: datetime | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    not_evaluated: list[Unjudged] = field(default_factory=list)
    unevaluated: bool = False  # no statistical monitor could judge this window

    @property
    def status(self) -> WindowStatus:
        """``alert`` (a warning or critical finding); else ``not_evaluated`` (no drift,
        performance or fairness monitor could judge it, e.g. too few rows),
        ``partly_evaluated`` (some could not: see ``not_evaluated``) or ``ok`` (every
        monitor judged it and none alerted)."""
        if any(f.severity.rank >= Severity.WARNING.rank for f in self.findings):
            return WindowStatus.ALERT
        if self.unevaluated:
            return WindowStatus.NOT_EVALUATED
        return WindowStatus.PARTLY_EVALUATED if self.not_evaluated else WindowStatus.OK

    def to_dict(self) -> dict[str, Any]:
        out = {
            "window": self.label,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "rows": self.rows,
            "status": self.status.value,
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.not_evaluated:
            out["not_evaluated"] = [u.to_dict() for u in self.not_evaluated]
        if self.metrics:
            out["metrics"] = plain(self.metrics, digits=RESULT_DIGITS)
        return out

    def unjudged_text(self) -> str:
        """``drift ×3 (n < 30); performance (labeled n < 100)``: who could not judge, why."""
        groups: dict[str, list[Unjudged]] = {}
        for u in self.not_evaluated:
            groups.setdefault(u.reason, []).append(u)
        parts = []
        for reason, items in groups.items():
            kinds: dict[str, int] = {}
            for u in items:
                kinds[u.monitor] = kinds.get(u.monitor, 0) + 1
            names = ", ".join(k if n == 1 else f"{k} ×{n}" for k, n in kinds.items())
            parts.append(f"{names} ({reason})")
        return "; ".join(parts)


class Evaluator(Protocol):
    name: str
    monitors: list[Monitor]
    rules: Rules
    importance: dict[str, float]

    def evaluate(self, window: Profile) -> list[Finding]: ...
    def measure(self, window: Profile) -> dict[str, Any]: ...
    def assess(self, window: Profile) -> tuple[list[Finding], dict[str, Any]]: ...
    def evaluate_sequence(self, result: CheckResult) -> None: ...


#: Model name of the alerts and incidents of a batch check (they are kept by no server).
BATCH_MODEL = "batch"


@dataclass
class Tracked:
    """The windows of a check run through the server's alert lifecycle: incidents with
    their advice, and for every alerting finding the alert episode it belongs to."""

    manager: AlertManager
    views: list[dict[str, Any]]  # as the server's incident API returns them
    #: per window: fingerprint → (its alert episode, its state and inhibition then)
    episodes: list[dict[str, tuple[Alert, str, str | None]]]
    #: what a server would have notified, in order (incident transitions)
    notifications: list[Notification] = field(default_factory=list)

    @property
    def incidents(self) -> list[Incident]:
        """The incidents, newest first (each renders itself in Jupyter)."""
        return sorted(self.manager.incidents.values(), key=lambda i: i.opened_at,
                      reverse=True)

    def alert_of(self, index: int, f: Finding) -> dict[str, Any] | None:
        """What became of finding ``f`` of window ``index``: its alert's state in that
        window, the incident the alert joined (if it ever fired) and what inhibited it;
        None for info findings, which never alert."""
        if f.severity.rank < Severity.WARNING.rank:
            return None
        key = fingerprint(self.manager.model, f.monitor, f.column, f.segment, f.metric)
        found = self.episodes[index].get(key)
        if found is None:
            return None
        alert, state, inhibited_by = found
        return {"state": state, "incident": alert.incident, "inhibited_by": inhibited_by}


def track(windows: list[WindowResult], evaluator: Evaluator | None) -> Tracked:
    """Run windows in order through the alert lifecycle, inhibition, grouping and advice
    that a server applies (the suite's rules), with no notifier: ``for`` windows before
    an alert fires, inhibition by cause, related alerts grouped into incidents."""
    rules = getattr(evaluator, "rules", None)
    manager = AlertManager(BATCH_MODEL, rules, keep_resolved=max(len(windows), 1000))
    episodes: list[dict[str, tuple[Alert, str, str | None]]] = []
    timed = _timed(windows)
    notifications: list[Notification] = []
    for w, at in zip(windows, timed or _positions(len(windows)), strict=True):
        notifications += manager.process(w.label, at, w.findings)
        keys = {fingerprint(BATCH_MODEL, f.monitor, f.column, f.segment, f.metric)
                for f in w.findings}
        episodes.append({k: (a, a.state, a.inhibited_by) for k in keys
                         if (a := manager.alerts.get(k)) is not None})
    weights = getattr(evaluator, "importance", None) or {}
    ordered = sorted(manager.incidents.values(), key=lambda i: (i.opened_at, i.id))
    views = [incident_view(i, weights) for i in ordered]
    if timed is None:  # positions, not times: say nothing about when
        views = [_untimed(v) for v in views]
    return Tracked(manager, views, episodes, notifications)


def _timed(windows: list[WindowResult]) -> list[datetime] | None:
    """The windows' start times when every window has one and they increase."""
    starts = [w.start for w in windows]
    if any(s is None for s in starts):
        return None
    known = [s for s in starts if s is not None]
    if any(b <= a for a, b in pairwise(known)):
        return None
    return known


def _positions(n: int) -> list[datetime]:
    """Stand-in times for windows cut by rows or by a column: their order, one second apart."""
    return [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(n)]


def _untimed(view: dict[str, Any]) -> dict[str, Any]:
    """An incident view without the stand-in times of windows that have no time."""
    out = {k: (None if k.endswith("_at") else v) for k, v in view.items()}
    out["alerts"] = [{k: (None if k.endswith("_at") else v) for k, v in a.items()}
                     for a in view.get("alerts", [])]
    return out


@dataclass
class CheckResult:
    """Findings per window, in the JSON shape shared by the CLI, the API and webhooks."""

    suite: str
    windows: list[WindowResult] = field(default_factory=list)
    evaluator: Evaluator | None = field(default=None, repr=False)
    label_join: LabelJoin | None = field(default=None, repr=False)
    unmatched_labels: int = 0  # labels whose id matched no prediction (reported, not lost)

    def refresh(self, index: int) -> None:
        """Re-evaluate one window from its profile (after it was built or got labels)."""
        if self.evaluator is None:
            raise SuiteError("evaluator", "this result has no suite to evaluate its windows "
                                          "with; get results from Suite.check()")
        w = self.windows[index]
        w.findings, w.metrics = self.evaluator.assess(w.profile)
        w.not_evaluated, w.unevaluated = unjudged(self.evaluator.monitors, w.profile)
        w.not_evaluated += unjudged_segments(w.metrics)
        if w.profile.joint:
            w.metrics["label_coverage"] = _coverage(w)
        self._band_from_history(index)

    def _band_from_history(self, index: int) -> None:
        """Widen window ``index``'s estimated-performance band by the errors of the labelled
        windows before it, and only those (see :func:`~watchkeeper.monitors.estimate.
        history_band`)."""
        assert self.evaluator is not None
        w = self.windows[index]
        if "estimated_band" in w.metrics:
            earlier: list[LabelledError] = []
            for x in reversed(self.windows[:index]):  # the latest BAND_HISTORY suffice
                if len(earlier) == BAND_HISTORY:
                    break
                if (e := labelled_error(x.metrics, x.rows)) is not None:
                    earlier.insert(0, e)
            w.findings = band_from_history(self.evaluator.monitors, w.profile, w.findings,
                                           w.metrics, earlier)
        for f in w.findings:
            f.window = w.label

    def add_labels(self, labels: Any) -> int:
        """Join labels that arrived late (a table with the id and target columns) to the
        windows of their predictions, and re-evaluate those windows. Returns how many
        labels matched no prediction; they are also added to ``unmatched_labels``."""
        if self.label_join is None or self.evaluator is None:
            raise DataError("this result kept no prediction ids to join labels to "
                            "(the suite needs an id column, the data that id)")
        changed, unmatched = self.label_join.apply(labels, [w.profile for w in self.windows])
        for i in sorted(changed):
            self.refresh(i)
        for i in range(min(changed, default=len(self.windows)) + 1, len(self.windows)):
            if i not in changed:  # earlier windows' new labels widen its band
                self._band_from_history(i)
        self.evaluator.evaluate_sequence(self)
        self.unmatched_labels += unmatched
        return unmatched

    @property
    def findings(self) -> list[Finding]:
        return [f for w in self.windows for f in w.findings]

    def alerts(self, at_least: Severity = Severity.WARNING) -> list[Finding]:
        """Findings at or above a severity (info never alerts)."""
        floor = max(at_least.rank, Severity.WARNING.rank)
        return [f for f in self.findings if f.severity.rank >= floor]

    def track(self) -> Tracked:
        """Alerts and incidents of these windows, as a server would have raised them."""
        return track(self.windows, self.evaluator)

    def incidents(self) -> list[dict[str, Any]]:
        """Incidents with their diagnosis, ranked causes and actions, in the shape of the
        server's incident API (``GET /v1/models/{model}/incidents``), oldest first."""
        return self.track().views

    def _repr_html_(self) -> str | None:
        """The HTML report of the result (in Jupyter; see :mod:`watchkeeper.report`)."""
        return html_of(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON result: windows with their findings (each alerting finding with its
        ``alert`` state: the incident it belongs to, or what inhibited it) and the
        ``incidents`` those findings form."""
        tracked = self.track()
        windows = []
        for i, w in enumerate(self.windows):
            doc = w.to_dict()
            for f, finding in zip(w.findings, doc["findings"], strict=True):
                alert = tracked.alert_of(i, f)
                if alert is not None:
                    finding["alert"] = alert
            windows.append(doc)
        # numbers to six digits, as everywhere in the result: the same whatever the batches
        # a streamed check merged (means and variances differ in the 15th digit)
        out: dict[str, Any] = {"suite": self.suite, "windows": windows,
                               "incidents": plain(tracked.views, digits=RESULT_DIGITS)}
        if self.unmatched_labels:
            out["unmatched_labels"] = self.unmatched_labels
        return out
