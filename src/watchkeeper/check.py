"""Batch check: split data into windows, profile each, evaluate the suite, collect results."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from watchkeeper.data import did_you_mean
from watchkeeper.errors import DataError
from watchkeeper.monitors.base import Finding, Severity
from watchkeeper.profile import Profile
from watchkeeper.report.html import window_label
from watchkeeper.values import epoch_seconds

if TYPE_CHECKING:
    from watchkeeper.labels import LabelJoin

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """Parse a window length such as ``30s``, ``15m``, ``6h``, ``1d`` or ``2w``.

    >>> parse_duration("6h")
    datetime.timedelta(seconds=21600)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text).lower())
    if not match or float(match.group(1)) <= 0:
        raise DataError(f"window {text!r}: expected a positive length like 30s, 15m, 6h, 1d or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


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
        raise DataError(f"--window-rows must be a positive integer, got {rows}")
    total = table.num_rows
    size = rows or max(total, 1)
    for first in range(0, max(total, 1), size):
        last = min(first + size, total)
        yield Window(f"rows {first}-{max(last - 1, first)}", table.slice(first, last - first))


def group_windows(table: pa.Table, column: str) -> Iterator[Window]:
    """One window per distinct value of ``column`` (a batch, partition or year), in sorted
    order; rows where it is missing form a last window of their own."""
    if column not in table.column_names:
        raise DataError(f"--window-by column {column!r} is not in the data"
                        f"{did_you_mean(column, table.column_names)}")
    import pyarrow.compute as pc

    values = table.column(column)
    for value in sorted(v for v in pc.unique(values).to_pylist() if v is not None):
        yield Window(f"{column}={value}", table.filter(pc.equal(values, pa.scalar(value))))
    missing = pc.is_null(values)
    if pc.any(missing).as_py():
        yield Window(f"{column} missing", table.filter(missing))


def time_windows(table: pa.Table, column: str, length: timedelta) -> Iterator[Window]:
    """Tumbling windows aligned to the Unix epoch, empty ones included so gaps are seen.

    The first and last windows are clipped to the data's own first and last timestamp.
    Rows whose timestamp is missing or unreadable form a window of their own, so they are
    still profiled and counted.
    """
    if column not in table.column_names:
        raise DataError(f"timestamp column {column!r} is not in the data"
                        f"{did_you_mean(column, table.column_names)}")
    seconds = epoch_seconds(table.column(column))
    known = np.isfinite(seconds)
    step = length.total_seconds()
    if known.any():
        lo, hi = float(seconds[known].min()), float(seconds[known].max())
        keys = np.floor(seconds[known] / step).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        rows = np.flatnonzero(known)[order]
        sorted_keys = keys[order]
        first_key, last_key = int(sorted_keys[0]), int(sorted_keys[-1])
        if last_key - first_key > 100_000:
            raise DataError(
                f"--window {length} over this data's time span makes "
                f"{last_key - first_key + 1} windows; choose a longer window"
            )
        bounds = np.searchsorted(sorted_keys, np.arange(first_key, last_key + 2))
        for i, key in enumerate(range(first_key, last_key + 1)):
            start = max(key * step, lo)
            end = min((key + 1) * step, hi) if key == last_key else (key + 1) * step
            chunk = table.take(pa.array(rows[bounds[i] : bounds[i + 1]]))
            yield Window(
                _time_label(key * step, (key + 1) * step), chunk, _utc(start), _utc(end)
            )
    if not known.all():
        yield Window("missing timestamp", table.filter(pa.array(~known)))


def _coverage(w: WindowResult) -> float:
    realised = w.metrics.get("realised", {})
    return realised.get("labeled", 0.0) / w.rows if w.rows else 0.0


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _time_label(start: float, end: float) -> str:
    return f"{_utc(start).isoformat()}/{_utc(end).isoformat()}"


@dataclass
class WindowResult:
    """Findings of one window, with the profile they were computed from."""

    label: str
    rows: int
    findings: list[Finding]
    profile: Profile
    start: datetime | None = None
    end: datetime | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "window": self.label,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "rows": self.rows,
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.metrics:
            out["metrics"] = _plain(self.metrics)
        return out


def _plain(value: Any) -> Any:
    """JSON-ready copy: rounded floats, NaN as null, tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(f"{float(value):.6g}")
    if isinstance(value, np.integer):
        return int(value)
    return value


class Evaluator(Protocol):
    def evaluate(self, window: Profile) -> list[Finding]: ...
    def measure(self, window: Profile) -> dict[str, Any]: ...
    def assess(self, window: Profile) -> tuple[list[Finding], dict[str, Any]]: ...
    def evaluate_sequence(self, result: CheckResult) -> None: ...


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
        assert self.evaluator is not None
        w = self.windows[index]
        w.findings, w.metrics = self.evaluator.assess(w.profile)
        for f in w.findings:
            f.window = w.label
        if w.profile.joint:
            w.metrics["label_coverage"] = _coverage(w)

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

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"suite": self.suite, "windows": [w.to_dict() for w in self.windows]}
        if self.unmatched_labels:
            out["unmatched_labels"] = self.unmatched_labels
        return out

    def to_text(self) -> str:
        """A table a person can read: one line per finding, windows without any said so."""
        header = ("window", "rows", "monitor", "column/group", "value", "threshold", "severity")
        lines: list[tuple[str, ...]] = []
        for w in self.windows:
            label = window_label(w.label)[0]  # time ranges as dates and clocks
            if not w.findings:
                lines.append((label, str(w.rows), "-", "-", "-", "-", "ok"))
            for f in sorted(w.findings, key=lambda f: (-f.severity.rank, f.family, f.column or "")):
                monitor = f"{f.monitor}:{f.metric}" if f.metric else f.monitor
                lines.append((label, str(w.rows), monitor, f.segment or f.column or "-",
                              f"{f.value:.4g}", f"{f.threshold:.4g}", f.severity.value))
        widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
        out = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip()
               for r in [header, *lines]]
        counts = {s: sum(f.severity == s for f in self.findings) for s in Severity}
        performance = self._performance_lines()
        if performance:
            out += ["", *performance]
        out.append("")
        out.append(
            f"{len(self.windows)} window(s), {len(self.findings)} finding(s): "
            f"{counts[Severity.CRITICAL]} critical, {counts[Severity.WARNING]} warning, "
            f"{counts[Severity.INFO]} info"
        )
        if self.unmatched_labels:
            out.append(f"{self.unmatched_labels} label(s) matched no prediction id")
        return "\n".join(out)

    def _performance_lines(self) -> list[str]:
        rows = []
        for w in self.windows:
            m = w.metrics
            if not m.get("realised") and not m.get("estimated"):
                continue
            realised, estimated = m.get("realised", {}), m.get("estimated", {})
            cells = [window_label(w.label)[0], f"{m.get('label_coverage', 0.0):.0%}"]
            for name in ("accuracy", "roc_auc", "f1", "mae", "rmse"):
                if name in realised or name in estimated:
                    r = realised.get(name, float("nan"))
                    e = estimated.get(name)
                    text = "-" if not np.isfinite(r) else f"{r:.3f}"
                    cells.append(f"{name} {text}" + (f" (est. {e:.3f})" if e is not None else ""))
            rows.append(cells)
        if not rows:
            return []
        header = ["window", "labeled", "metrics (realised, estimated without labels)"]
        width = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
        return [f"{r[0].ljust(width[0])}  {r[1].ljust(width[1])}  {'  '.join(r[2:])}".rstrip()
                for r in [header, *rows]]
