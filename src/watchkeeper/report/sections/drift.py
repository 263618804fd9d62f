"""Drift by column: each column's distance from the reference against its threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from watchkeeper.report.html import badge, escape, number, section, table
from watchkeeper.report.sections.common import (
    WindowView,
    as_dict,
    as_float,
    place_of,
    severity_rank,
)
from watchkeeper.report.svg import Bar, bar_chart, sparkline

DRIFT_MONITORS = ("feature_drift", "prediction_drift", "target_drift", "embedding_drift")
DRIFT_BARS = 40  # columns drawn in the drift chart (the table lists every column)
DRIFT_WINDOWS = 12  # latest windows in the table of drift per column and window


@dataclass
class ColumnDrift:
    """One column's drift statistic and threshold per window (None where not measured)."""

    monitor: str
    values: list[float | None]
    limits: list[float | None]
    psi: list[float | None]
    severity: list[str | None]

    @classmethod
    def empty(cls, monitor: str, n: int) -> ColumnDrift:
        return cls(monitor, [None] * n, [None] * n, [None] * n, [None] * n)

    def ratio(self, i: int) -> float:
        value, limit = self.values[i], self.limits[i]
        if value is None:
            return -1.0
        return value / limit if limit else value

    @property
    def worst(self) -> int:
        """The window where the statistic was largest relative to its threshold (which
        depends on the window's size), the latest of equals."""
        return max(range(len(self.values)), key=lambda i: (self.ratio(i), i))

    @property
    def drifted(self) -> int:
        return sum(s is not None for s in self.severity)


def _measured_as(f: dict[str, Any], measured: dict[str, Any]) -> str:
    """The key of a drift finding's measures in ``metrics.drift``: a text descriptor's is
    ``column.metric`` (``review.oov_rate``); a finding of no column (``multivariate_drift``)
    is measured under the key its monitor (and group) tags; any other under its column."""
    column, metric, monitor = f.get("column"), f.get("metric"), str(f.get("monitor"))
    if column and metric and f"{column}.{metric}" in measured:
        return f"{column}.{metric}"
    if not column:
        group = as_dict(f.get("evidence")).get("group")  # a declared multivariate group's
        for key, entry in measured.items():
            if as_dict(entry).get("monitor") == monitor and as_dict(entry).get("group") == group:
                return str(key)
    return place_of(f) or monitor


def drift_by_column(windows: list[WindowView]) -> dict[str, ColumnDrift]:
    """Per column, the drift measured in every window (``metrics.drift``), with the
    severity of its findings; results without those measures fall back on the findings."""
    n = len(windows)
    columns: dict[str, ColumnDrift] = {}
    for i, w in enumerate(windows):
        for column, entry in as_dict(w.metrics.get("drift")).items():
            e = as_dict(entry)
            value = as_float(e.get("js"))
            if value is None:
                continue
            c = columns.setdefault(str(column), ColumnDrift.empty(
                str(e.get("monitor") or "feature_drift"), n))
            c.values[i], c.limits[i], c.psi[i] = value, as_float(e.get("threshold")), as_float(
                e.get("psi"))
    for i, w in enumerate(windows):
        for f in w.findings:
            if f.get("monitor") not in DRIFT_MONITORS and f.get("family") != "drift":
                continue
            value = as_float(f.get("value"))
            if value is None:
                continue
            column = _measured_as(f, as_dict(w.metrics.get("drift")))
            c = columns.setdefault(column, ColumnDrift.empty(str(f.get("monitor")), n))
            if c.values[i] is None:
                c.values[i], c.limits[i] = value, as_float(f.get("threshold"))
                c.psi[i] = as_float(as_dict(f.get("evidence")).get("psi"))
            if severity_rank(f["severity"]) >= severity_rank(c.severity[i] or "info"):
                c.severity[i] = f["severity"]
    return columns


def render(windows: list[WindowView]) -> str:
    """Every monitored column's drift against its threshold: in its worst window (chart
    and table) and across windows (sparkline, and a table of the latest windows)."""
    columns = drift_by_column(windows)
    if not columns:
        return ""
    ranked = sorted(columns.items(), key=lambda kv: (-kv[1].ratio(kv[1].worst), kv[0]))
    labels = [w.label for w in windows]
    one = len(windows) == 1

    def name(column: str, c: ColumnDrift) -> str:
        role = {"prediction_drift": "model output", "target_drift": "target"}.get(c.monitor)
        return escape(column) + (f'<span class="sub">{role}</span>' if role else "")

    bars: list[Bar] = []
    rows: list[list[str]] = []
    for column, c in ranked:
        i = c.worst
        value, limit, severity = c.values[i], c.limits[i], c.severity[i]
        css = severity if severity in ("critical", "warning") else ""
        if len(bars) < DRIFT_BARS and value is not None:
            bars.append(Bar(column, value, limit, f"bar {css}".strip(),
                            f"{value:.3g} / {limit:.3g}" if limit else f"{value:.3g}"))
        ratio = number(value / limit, 3) if value is not None and limit else "–"
        status = badge(severity) if severity else '<span class="muted">below</span>'
        cells = [name(column, c), status, number(value, 3), number(limit, 3), ratio,
                 number(c.psi[i], 3)]
        if not one:
            cells += [escape(windows[i].label), number(c.drifted),
                      sparkline(labels, c.values, c.limits, name="JS distance")]
        rows.append(cells)
    where = windows[0].label if one else "worst window"
    chart = bar_chart(bars, width=720, label_width=170,
                      title=f"JS distance per column, {where} (bar), and its threshold (tick)")
    if len(ranked) > len(bars):
        chart += (f'<p class="note">The chart shows the {len(bars)} columns nearest to or '
                  f"furthest past their threshold; all {len(ranked)} are in the table.</p>")
    head = ["column", "status", "JS distance", "threshold", "ratio", "PSI"]
    if not one:
        head += ["worst window", "windows drifted", "JS distance per window"]
    content = chart + table(head, rows, numeric=[2, 3, 4, 5, 7], css="drift-columns")
    if not one:
        content += _drift_windows(windows, ranked)
    return section("drift", "Drift by column", content,
                   "Every column with a drift monitor, by its Jensen–Shannon distance from "
                   "the reference against its calibrated threshold (which depends on the "
                   "window's size). "
                   + ("" if one else "A column's worst window is the one where its "
                      "distance was largest relative to the threshold; the chart and the "
                      "table's values are from that window. The small line shows every "
                      "window, with the threshold dashed and the windows past it in red."))


def _drift_windows(windows: list[WindowView], ranked: list[tuple[str, ColumnDrift]]) -> str:
    """The distance of every column in the latest windows, past-threshold values flagged."""
    shown = list(range(len(windows)))[-DRIFT_WINDOWS:]
    rows = []
    for column, c in ranked:
        cells = [escape(column)]
        for i in shown:
            value, limit = c.values[i], c.limits[i]
            text = number(value, 3)
            if value is not None and limit is not None and value > limit:
                text = f'<span class="flag" title="threshold {number(limit, 3)}">{text}</span>'
            cells.append(text)
        rows.append(cells)
    more = (f" (the latest {len(shown)} of {len(windows)})" if len(shown) < len(windows)
            else "")
    return (f"<details><summary>JS distance per column and window{more}</summary>"
            + table(["column", *(windows[i].axis or windows[i].label for i in shown)], rows,
                    numeric=list(range(1, len(shown) + 1)), css="drift-windows")
            + "</details>")
