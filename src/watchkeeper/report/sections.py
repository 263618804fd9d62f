"""One function per report section. Each takes plain data (the JSON shape of a check
result, incidents as the API returns them), tolerates missing keys, and returns HTML, or
"" when it has nothing to show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.monitors.base import FAMILIES
from watchkeeper.monitors.performance import COUNTS
from watchkeeper.report.html import (
    SEVERITIES,
    badge,
    escape,
    fixed,
    number,
    one_day,
    percent,
    section,
    table,
    window_label,
)
from watchkeeper.report.svg import (
    Bar,
    Series,
    bar_chart,
    finite,
    histogram,
    line_chart,
    sparkline,
)
from watchkeeper.run.check import WindowStatus

FAMILY_TITLES = {"quality": "Data quality", "drift": "Drift", "performance": "Performance",
                 "estimated_performance": "Estimated performance", "fairness": "Fairness",
                 "service": "Service", "security": "Security"}
# metrics in chart order; higher is better for all but the losses and errors
METRICS = ("accuracy", "roc_auc", "f1", "precision", "recall", "log_loss", "brier", "mae",
           "rmse", "mape", "r2")
METRIC_NAMES = {"accuracy": "Accuracy", "roc_auc": "ROC-AUC", "f1": "F1",
                "precision": "Precision", "recall": "Recall", "log_loss": "Log-loss",
                "brier": "Brier score", "mae": "MAE", "rmse": "RMSE", "mape": "MAPE",
                "r2": "R²"}
DRIFT_MONITORS = ("feature_drift", "prediction_drift", "target_drift")
FOUR_FIFTHS = 0.8  # disparate-impact line of results that do not carry the suite's own
GROUP_MEASURES = ("selection_rate", "tpr", "fpr", "precision", "accuracy")
EARLIER_GROUP_TABLES = 10  # windows before the latest whose group tables are listed
DRIFT_BARS = 40  # columns drawn in the drift chart (the table lists every column)
DRIFT_WINDOWS = 12  # latest windows in the table of drift per column and window


@dataclass
class WindowView:
    """A window normalised from any of the shapes it comes in (CLI JSON, server API)."""

    index: int
    label: str  # as shown in tables (time ranges made readable)
    rows: int | None
    start: str | None
    end: str | None
    state: str | None
    findings: list[dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    axis: str = ""  # short label for chart axes
    span: str | None = None  # the rows' own time range, when narrower than the label's
    #: monitors that could not judge the window (``{"monitor", "column", "reason"}``)
    not_evaluated: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None  # the check's verdict (ok, alert, partly_/not_evaluated)

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(f["severity"] == s for f in self.findings) for s in SEVERITIES}

    @property
    def worst(self) -> str:
        counts = self.counts
        return next((s for s in ("critical", "warning") if counts[s]), "ok")

    @property
    def coverage(self) -> float | None:
        m = self.metrics
        if finite(m.get("label_coverage")):
            return float(m["label_coverage"])
        realised = _dict(m.get("realised"))
        if finite(realised.get("labeled")) and self.rows:
            return float(realised["labeled"]) / self.rows
        return None


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _float(value: Any) -> float | None:
    return float(value) if finite(value) else None


def _int(value: Any) -> int | None:
    return int(value) if finite(value) else None


def windows_of(result: Mapping[str, Any]) -> list[WindowView]:
    """The result's windows, labelled for reading: time ranges as dates and clocks, without
    the date when every window lies in one day (the header gives it)."""
    given = [_dict(raw) for raw in _list(result.get("windows"))]
    raws = [str(w.get("window") or (f"{w['start']}/{w['end']}" if w.get("start")
                                    and w.get("end") else w.get("start")) or f"window {i + 1}")
            for i, w in enumerate(given)]
    dated = not one_day(raws)
    out = []
    for i, (w, raw) in enumerate(zip(given, raws, strict=True)):
        start, end = w.get("start"), w.get("end")
        label, axis = window_label(raw, date=dated)
        span = window_label(f"{start}/{end}", date=dated)[0] if start and end else label
        findings = []
        for f in _list(w.get("findings")):
            f = _dict(f)
            severity = str(f.get("severity") or "info").lower()
            findings.append({**f, "severity": severity if severity in SEVERITIES else "info",
                             "window": label})
        out.append(WindowView(i, label, _int(w.get("rows")),
                              None if start is None else str(start),
                              None if end is None else str(end),
                              None if w.get("state") is None else str(w.get("state")),
                              findings, _dict(w.get("metrics")), axis,
                              span if span != label else None,
                              [_dict(u) for u in _list(w.get("not_evaluated"))],
                              None if w.get("status") is None else str(w["status"])))
    return out


def _rank(severity: str) -> int:
    return {"critical": 2, "warning": 1}.get(severity, 0)


def _where(f: Mapping[str, Any]) -> str:
    return str(f.get("segment") or f.get("column") or "")


def _what(f: Mapping[str, Any]) -> str:
    monitor = str(f.get("monitor") or "?")
    metric = f.get("metric")
    return f"{monitor}:{metric}" if metric and metric != monitor else monitor


# ---------------------------------------------------------------------------- header


def header(title: str, result: Mapping[str, Any], windows: list[WindowView],
           incidents: Sequence[Mapping[str, Any]], generated: str | None,
           nav: Sequence[tuple[str, str]]) -> str:
    counts = {s: sum(w.counts[s] for w in windows) for s in SEVERITIES}
    rows = sum(w.rows or 0 for w in windows)
    alerted = sum(w.worst != "ok" for w in windows)
    open_incidents = sum(str(i.get("status", "open")) != "resolved" for i in incidents)
    subtitle = [f"suite <code>{escape(result.get('suite') or '?')}</code>"]
    if windows and windows[0].start and windows[-1].end:
        subtitle.append(escape(window_label(f"{windows[0].start}/{windows[-1].end}")[0]))
    elif windows:
        subtitle.append(f"{escape(windows[0].label)} to {escape(windows[-1].label)}"
                        if len(windows) > 1 else escape(windows[0].label))
    if generated:
        subtitle.append(f"generated {escape(generated)}")
    cards = [("windows", number(len(windows)), ""), ("rows", number(rows), ""),
             ("windows with alerts", number(alerted), ""),
             ("critical", number(counts["critical"]), "critical" if counts["critical"] else ""),
             ("warning", number(counts["warning"]), "warning" if counts["warning"] else ""),
             ("info", number(counts["info"]), "")]
    if incidents:
        cards.append(("open incidents", number(open_incidents),
                      "critical" if open_incidents else ""))
    card_html = "".join(f'<div class="card {css}"><span class="big">{value}</span>'
                        f'<span class="small">{escape(name)}</span></div>'
                        for name, value, css in cards)
    notes = []
    unmatched = result.get("unmatched_labels")
    if finite(unmatched) and unmatched:
        notes.append(f'<p class="note">{number(unmatched)} label(s) matched no prediction '
                     "id and were not used.</p>")
    links = "".join(f'<a href="#wk-{a}">{escape(t)}</a>' for a, t in nav)
    return (f"<header><h1>{escape(title)}</h1><p class=\"subtitle\">"
            f"{' · '.join(subtitle)}</p><div class=\"cards\">{card_html}</div>"
            f"{''.join(notes)}<nav>{links}</nav></header>\n")


# --------------------------------------------------------------------------- summary


def summary(windows: list[WindowView]) -> str:
    if not windows:
        return section("summary", "Windows", '<p class="empty">No windows: the result is '
                       "empty.</p>")
    has_labels = any(_dict(w.metrics.get("realised")) for w in windows)
    # the headline metric: the first of METRICS realised or estimated in any window (none
    # for a target without a model output: its label coverage is still worth showing)
    measured = {k for w in windows for d in (_dict(w.metrics.get("realised")),
                                             _dict(w.metrics.get("estimated")))
                for k, v in d.items() if finite(v)}
    headline = next((m for m in METRICS if m in measured), None)
    has_state = any(w.state for w in windows)
    header_ = ["window", "rows", "status", "critical", "warning", "info"]
    numeric = [1, 3, 4, 5]
    if has_state:
        header_.append("state")
    if has_labels or headline:
        header_.append("labeled")
        numeric.append(len(header_) - 1)
    if headline:
        name = METRIC_NAMES[headline]
        name = name.lower() if headline in ("accuracy", "precision", "recall") else name
        header_ += [name, f"estimated {name}"]
        numeric += [len(header_) - 2, len(header_) - 1]
    rows = []
    for w in windows:
        counts = w.counts
        label = escape(w.label)
        if w.span:
            label += f'<span class="sub">{escape(w.span)}</span>'
        cells = [label, number(w.rows), _verdict(w),
                 *(number(counts[s]) if counts[s] else '<span class="muted">0</span>'
                   for s in SEVERITIES)]
        if has_state:
            cells.append(escape(w.state or ""))
        if has_labels or headline:
            cells.append(percent(w.coverage))
        if headline:
            realised, estimated = _dict(w.metrics.get("realised")), _dict(
                w.metrics.get("estimated"))
            band = _list(_dict(w.metrics.get("estimated_band")).get(headline))
            est = fixed(estimated.get(headline))
            if len(band) == 2 and all(finite(b) for b in band):
                est += f'<span class="sub">{fixed(band[0])} – {fixed(band[1])}</span>'
            cells += [fixed(realised.get(headline)), est]
        rows.append(cells)
    return section("summary", "Windows", table(header_, rows, numeric=numeric),
                   "One row per window: its worst finding, findings by severity and, when "
                   "the task is known, the share of rows with a label and the model's "
                   "headline metric (accuracy; MAE for a regressor) measured on them next to "
                   "the one estimated without labels.")


def _verdict(w: WindowView) -> str:
    """The window's worst finding, or "not evaluated" where nothing alerted and some
    monitors could not judge it (with who and why), rather than "ok"."""
    if w.worst != "ok" or not w.not_evaluated:
        return badge(w.worst)
    reasons: dict[str, list[str]] = {}
    for u in w.not_evaluated:
        reasons.setdefault(str(u.get("reason") or "?"), []).append(str(u.get("monitor")))
    note = "; ".join(f"{', '.join(sorted(set(ms)))} ({r})" for r, ms in reasons.items())
    text = "not evaluated" if w.status == WindowStatus.NOT_EVALUATED else "ok, partly"
    return badge("muted", text) + f'<span class="sub">not evaluated: {escape(note)}</span>'


# ---------------------------------------------------------------------- performance


def performance(windows: list[WindowView]) -> str:
    realised = [_dict(w.metrics.get("realised")) for w in windows]
    estimated = [_dict(w.metrics.get("estimated")) for w in windows]
    bands = [_dict(w.metrics.get("estimated_band")) for w in windows]
    present = {k for d in realised + estimated for k, v in d.items() if finite(v)}
    names = [m for m in METRICS if m in present]
    names += sorted(present - set(METRICS) - set(COUNTS))
    if not names:
        return ""
    labels, axis = [w.label for w in windows], [w.axis for w in windows]
    charts = []
    for name in names:
        series = [Series("realised", [_float(r.get(name)) for r in realised], "realised")]
        if any(finite(e.get(name)) for e in estimated):
            series.append(Series("estimated", [_float(e.get(name)) for e in estimated],
                                 "estimated"))
        band: list[tuple[float, float] | None] = []
        for b in bands:
            pair = _list(b.get(name))
            band.append((float(pair[0]), float(pair[1]))
                        if len(pair) == 2 and all(finite(p) for p in pair) else None)
        charts.append(f'<div class="chart-box" data-metric="{escape(name)}">'
                      + line_chart(labels, series, band=band, axis=axis,
                                   title=METRIC_NAMES.get(name, name)) + "</div>")
    legend = ('<p class="legend"><span class="key realised"></span>realised (labeled rows)'
              '<span class="key estimated"></span>estimated without labels'
              '<span class="key band"></span>estimate uncertainty band</p>')
    # the numbers behind the charts
    head = ["window", "labeled", *(METRIC_NAMES.get(n, n) for n in names)]
    rows = []
    for w, r, e, b in zip(windows, realised, estimated, bands, strict=True):
        cells = [escape(w.label), percent(w.coverage)]
        for n in names:
            cell = fixed(r.get(n))
            if finite(e.get(n)):
                pair = _list(b.get(n))
                band_text = (f" [{fixed(pair[0])}–{fixed(pair[1])}]"
                             if len(pair) == 2 else "")
                cell += f'<span class="sub">est. {fixed(e.get(n))}{band_text}</span>'
            cells.append(cell)
        rows.append(cells)
    content = (legend + f'<div class="charts">{"".join(charts)}</div>'
               + "<h3>Metrics per window</h3>"
               + table(head, rows, numeric=list(range(1, len(head))))
               + confusion(windows))
    return section("performance", "Performance", content,
                   "Realised metrics use the rows whose label is known (late labels are "
                   "joined to the window of their prediction); estimated ones need no "
                   "labels: each row's calibrated score, corrected by the suite's label model "
                   "where the reference showed the score to be off for such inputs, summed "
                   "into an expected confusion matrix.")


def confusion(windows: list[WindowView]) -> str:
    """The confusion matrix of the latest window that has one."""
    for w in reversed(windows):
        c = _dict(w.metrics.get("confusion"))
        classes, matrix = [str(x) for x in _list(c.get("classes"))], _list(c.get("matrix"))
        if not classes or not matrix:
            continue
        width = max(len(_list(r)) for r in matrix)
        head = ["true \\ predicted", *classes[:width]]
        if width > len(classes):
            head.append("no/other prediction")
        head += [""] * (width + 1 - len(head))
        rows = [[escape(classes[i] if i < len(classes) else "?"),
                 *(number(v) for v in _list(r))] for i, r in enumerate(matrix)]
        return (f"<h3>Confusion matrix, {escape(w.label)}</h3>"
                + table(head, rows, numeric=list(range(1, width + 1))))
    return ""


# ------------------------------------------------------------------------- findings


def findings(windows: list[WindowView]) -> str:
    every = [f for w in windows for f in w.findings]
    if not every:
        return section("findings", "Findings",
                       '<p class="empty">No findings: every monitor stayed within its '
                       "calibrated threshold in every window.</p>")
    order = {w.label: w.index for w in windows}
    families = [f for f in FAMILIES if any(x.get("family") == f for x in every)]
    families += sorted({str(x.get("family") or "other") for x in every} - set(FAMILIES))
    parts = []
    for family in families:
        group = [f for f in every if str(f.get("family") or "other") == family]
        group.sort(key=lambda f: (-_rank(f["severity"]), order.get(f["window"], 0),
                                  _what(f), _where(f)))
        rows = [[escape(f["window"]), escape(_what(f)), escape(_where(f)) or "–",
                 number(f.get("value")), number(f.get("threshold")), badge(f["severity"]),
                 escape(f.get("message") or "") + _evidence(f.get("evidence"))]
                for f in group]
        counts = {s: sum(f["severity"] == s for f in group) for s in SEVERITIES}
        summary_ = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        parts.append(f'<div class="family" id="wk-family-{escape(family)}"><h3>'
                     f"{escape(FAMILY_TITLES.get(family, family))} "
                     f'<span class="muted">({summary_})</span></h3>'
                     + table(["window", "monitor", "column / segment", "value", "threshold",
                              "severity", "message"], rows, css="wide findings",
                             numeric=[3, 4]) + "</div>")
    return section("findings", "Findings", "".join(parts),
                   "Grouped by family, most severe first. A finding is one window's "
                   "statistic over its threshold, calibrated on the reference; alerts and "
                   "incidents additionally need it to persist.")


def _evidence(evidence: Any) -> str:
    items = [(k, v) for k, v in _dict(evidence).items()
             if k != "rows" and (finite(v) or isinstance(v, str))]
    if not items:
        return ""
    text = " · ".join(f"{escape(k)} {number(v, 3)}" for k, v in items[:6])
    return f'<span class="sub">{text}</span>'


# ---------------------------------------------------------------------------- drift


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


def drift_by_column(windows: list[WindowView]) -> dict[str, ColumnDrift]:
    """Per column, the drift measured in every window (``metrics.drift``), with the
    severity of its findings; results without those measures fall back on the findings."""
    n = len(windows)
    columns: dict[str, ColumnDrift] = {}
    for i, w in enumerate(windows):
        for column, entry in _dict(w.metrics.get("drift")).items():
            e = _dict(entry)
            value = _float(e.get("js"))
            if value is None:
                continue
            c = columns.setdefault(str(column), ColumnDrift.empty(
                str(e.get("monitor") or "feature_drift"), n))
            c.values[i], c.limits[i], c.psi[i] = value, _float(e.get("threshold")), _float(
                e.get("psi"))
    for i, w in enumerate(windows):
        for f in w.findings:
            if f.get("monitor") not in DRIFT_MONITORS and f.get("family") != "drift":
                continue
            value = _float(f.get("value"))
            if value is None:
                continue
            column = _where(f) or str(f.get("monitor"))
            c = columns.setdefault(column, ColumnDrift.empty(str(f.get("monitor")), n))
            if c.values[i] is None:
                c.values[i], c.limits[i] = value, _float(f.get("threshold"))
                c.psi[i] = _float(_dict(f.get("evidence")).get("psi"))
            if _rank(f["severity"]) >= _rank(c.severity[i] or "info"):
                c.severity[i] = f["severity"]
    return columns


def drift(windows: list[WindowView]) -> str:
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


# ------------------------------------------------------------------------- fairness


def fairness(windows: list[WindowView]) -> str:
    per_window = [(w, _dict(w.metrics.get("fairness"))) for w in windows]
    per_window = [(w, f) for w, f in per_window if f]
    if not per_window:
        return ""
    attributes: list[str] = []
    for _, f in per_window:
        attributes += [a for a in f if a not in attributes]
    parts = []
    for attribute in attributes:
        history = [(w, _dict(f.get(attribute))) for w, f in per_window if attribute in f]
        parts.append(f"<h3>{escape(attribute)}</h3>" + _inherited_note(history)
                     + _fairness_trend(history))
        latest_w, latest = history[-1]
        parts.append(f"<h4>Groups, {escape(latest_w.label)}</h4>"
                     f'<div class="pair"><div>{_groups_table(_dict(latest.get("groups")))}'
                     f"</div><div>{_four_fifths_chart(latest)}</div></div>")
        earlier = [(w, d) for w, d in history[:-1] if _dict(d.get("groups"))]
        if earlier:
            shown = earlier[-EARLIER_GROUP_TABLES:]
            inner = "".join(f"<h4>{escape(w.label)}</h4>" + _groups_table(_dict(d["groups"]))
                            for w, d in reversed(shown))
            if len(earlier) > len(shown):
                inner += (f'<p class="note">{len(earlier) - len(shown)} older window(s) not '
                          "shown; their measures are in the table above.</p>")
            parts.append(f"<details><summary>groups in {len(shown)} earlier window(s)"
                         f"</summary>{inner}</details>")
    floor = _floor(_dict(next(iter(per_window[-1][1].values()))))
    return section("fairness", "Fairness", "".join(parts),
                   "Per sensitive attribute (and intersection): the demographic-parity "
                   "difference (largest gap in selection rate between groups, with its 95% "
                   "interval), the disparate-impact ratio (smallest over largest selection "
                   f"rate; below {floor:g} breaks {_rule(floor)}) and the "
                   "equalised-odds difference (largest TPR or FPR gap), each with the two "
                   "groups it is between, and the reference's values: a ratio that was "
                   f"already below {floor:g} in the reference is marked as such (amber), one "
                   "that fell below it since in red, in the tables and the group charts. "
                   "Groups too small to measure are listed as such and left out of these "
                   "measures.")


def _floor(d: Mapping[str, Any]) -> float:
    """The suite's disparate-impact line (the fairness monitor's ``min_di_ratio``) as the
    grouping's measures carry it; the four-fifths rule for results that do not."""
    floor = _float(d.get("min_di_ratio"))
    return FOUR_FIFTHS if floor is None else floor


def _rule(floor: float) -> str:
    return ("the four-fifths rule" if floor == FOUR_FIFTHS
            else "the suite's disparate-impact policy (min_di_ratio)")


def _line(floor: float) -> str:
    return "four-fifths" if floor == FOUR_FIFTHS else f"policy {floor:g}"


def _reference_di(d: Mapping[str, Any]) -> float | None:
    return _float(_dict(d.get("reference")).get("di_ratio"))


def _inherited(d: Mapping[str, Any]) -> bool:
    """Whether the reference's ratio was already below the line: a break of the grouping
    is then a property of the data the suite was built on, not a change."""
    ref = _reference_di(d)
    return ref is not None and ref < _floor(d)


def _inherited_note(history: list[tuple[WindowView, dict[str, Any]]]) -> str:
    """Say so when the reference itself is below the disparate-impact line."""
    _, latest = history[-1]
    if not _inherited(latest):
        return ""
    ref, floor = _reference_di(latest), _floor(latest)
    groups = _list(latest.get("dp_groups"))
    between = (f" (lowest selection rate {escape(groups[1])}, highest {escape(groups[0])} in "
               "the latest window)" if len(groups) == 2 else "")
    return (f'<p class="note inherited">The disparate-impact ratio was already {fixed(ref)} '
            f"in the reference, below {floor:g}{between}: a property of the data the "
            "suite was built on (and, likely, the model trained on), not a change since. "
            "Windows are compared with it: the monitor alerts when a group's gap moves away "
            "from the reference's, not on this ratio.</p>")


def _between(groups: Any, prefix: str = "") -> str:
    pair = _list(groups)
    if len(pair) != 2:
        return ""
    return f'<span class="sub">{escape(prefix)}{escape(pair[0])} vs {escape(pair[1])}</span>'


def _dp_cell(dp_value: Any, groups: Any = None) -> str:
    dp = _list(dp_value)
    text = fixed(dp[0]) if dp and finite(dp[0]) else fixed(dp_value)
    if len(dp) == 3 and all(finite(x) for x in dp):
        text += f'<span class="sub">95% CI {fixed(dp[1])} – {fixed(dp[2])}</span>'
    return text + _between(groups)


def _di_cell(di: float | None, ref: float | None, floor: float) -> str:
    text = fixed(di)
    if di is None or di >= floor:
        return text + (f'<span class="sub">reference {fixed(ref)}</span>'
                       if ref is not None and ref < floor else "")
    if ref is not None and ref < floor:
        return (f'<span class="inherited" title="already below {floor:g} in the '
                f'reference ({fixed(ref)}): not a change">{text} &lt; {floor:g}</span>'
                f'<span class="sub">reference {fixed(ref)}, already below</span>')
    since = f" (reference {fixed(ref)})" if ref is not None else ""
    return (f'<span class="flag" title="below the {_line(floor)} line{since}">{text} &lt; '
            f"{floor:g}</span>"
            + (f'<span class="sub">new: reference {fixed(ref)}</span>' if ref is not None
               else ""))


def _fairness_trend(history: list[tuple[WindowView, dict[str, Any]]]) -> str:
    rows = []
    references = {repr(_dict(d.get("reference"))) for _, d in history if d.get("reference")}
    if len(references) == 1:  # one reference for every window: its own row
        ref = next(_dict(d["reference"]) for _, d in history if d.get("reference"))
        di, floor = _float(ref.get("di_ratio")), _floor(history[-1][1])
        di_text = fixed(di)
        if di is not None and di < floor:
            di_text = f'<span class="inherited">{di_text} &lt; {floor:g}</span>'
        rows.append(['<span class="muted">reference</span>', "", "", _dp_cell(
            ref.get("dp_difference")), di_text, fixed(ref.get("eo_difference"))])
    for w, d in history:
        di = _float(d.get("di_ratio"))
        ref_di = _reference_di(d)
        groups = _dict(d.get("groups"))
        small = sum(_dict(g).get("status") == "insufficient data" for g in groups.values())
        metric = str(d.get("eo_metric") or "").upper()
        rows.append([escape(w.label), number(len(groups)), number(small) if small else "0",
                     _dp_cell(d.get("dp_difference"), d.get("dp_groups")),
                     _di_cell(di, ref_di, _floor(d)),
                     fixed(d.get("eo_difference"))
                     + _between(d.get("eo_groups"), f"{metric}: " if metric else "")])
    return table(["window", "groups", "insufficient data", "DP difference", "DI ratio",
                  "EO difference"], rows, numeric=[1, 2, 3, 4, 5])


def _groups_table(groups: dict[str, Any]) -> str:
    if not groups:
        return '<p class="empty">No groups.</p>'
    rows = []
    for name, g in groups.items():
        g = _dict(g)
        if g.get("status"):
            rows.append([escape(name), number(g.get("n")),
                         f'<span class="muted">{escape(g["status"])}</span>', "", "", "", ""])
        else:
            rows.append([escape(name), number(g.get("n")),
                         *(fixed(g.get(k)) for k in GROUP_MEASURES)])
    return table(["group", "n", "selection rate", "TPR", "FPR", "precision", "accuracy"],
                 rows, numeric=[1, 2, 3, 4, 5, 6])


def _four_fifths_chart(d: Mapping[str, Any]) -> str:
    """Each group's selection rate over the most selected group's, against the line. A
    group below it is red, or amber when the grouping's ratio was already below the line
    in the reference (the measures carry the reference's ratio, not its groups' rates)."""
    groups = _dict(d.get("groups"))
    found = {name: _float(_dict(g).get("selection_rate")) for name, g in groups.items()
             if not _dict(g).get("status")}
    rates = {k: v for k, v in found.items() if v is not None}
    best = max(rates.values(), default=0.0)
    if len(rates) < 2 or best <= 0:
        return ""
    floor, inherited = _floor(d), _inherited(d)
    below = "inherited" if inherited else "critical"
    bars = [Bar(name, rate / best, None, "bar " + (below if rate / best < floor else "ok"),
                f"{rate / best:.2f}")
            for name, rate in rates.items()]
    chart = bar_chart(bars, reference=floor, reference_label=_line(floor),
                      scale_max=1.0, width=460, label_width=140,
                      title="Selection rate relative to the most selected group")
    if all(b.css == "bar ok" for b in bars):
        return chart
    ref = _reference_di(d)
    if inherited:
        key = f"already below {floor:g} in the reference ({fixed(ref)}): not a change"
    else:
        key = f"below {floor:g}" + (f" since the reference ({fixed(ref)}): new"
                                    if ref is not None else "")
    return (chart + f'<p class="legend"><span class="key bar-{below}"></span>{escape(key)}'
            "</p>")


# ------------------------------------------------------------------------- security


def security(windows: list[WindowView]) -> str:
    per_window = [(w, _dict(w.metrics.get("security"))) for w in windows]
    per_window = [(w, s) for w, s in per_window if s]
    if not per_window:
        return ""
    parts = []
    shares = [_float(_dict(w.metrics.get("security")).get("ood_share")) for w in windows]
    if sum(s is not None for s in shares) >= 2:
        parts.append(line_chart([w.label for w in windows],
                                [Series("out-of-distribution share", shares, "realised")],
                                axis=[w.axis for w in windows],
                                title="Share of out-of-distribution rows", percent=True))
    rows = []
    for w, s in per_window:
        offenders = _dict(s.get("top_offenders"))
        top = ", ".join(f"{escape(k)} ({number(v)})" for k, v in list(offenders.items())[:3])
        rows.append([escape(w.label), number(s.get("rows")), number(s.get("ood_rows")),
                     percent(s.get("ood_share"), 2), top or "–",
                     number(len(_list(s.get("clients")))) if "clients" in s else "–"])
    parts.append(table(["window", "rows", "out-of-distribution rows", "share",
                        "features to blame", "clients"], rows, numeric=[1, 2, 3, 5]))
    parts.append(_ood_histogram(per_window))
    parts.append(_offenders(per_window))
    parts.append(_clients(per_window))
    return section("security", "Security", "".join(p for p in parts if p),
                   "Rows unlike the reference (out of its range, a new category, or far "
                   "from its centre) and, per caller, the traffic the model received.")


def _ood_histogram(per_window: list[tuple[WindowView, dict[str, Any]]]) -> str:
    """OOD score histogram, summed over the windows that share the latest one's bins."""
    with_hist = [(w, _dict(s.get("ood_score_histogram"))) for w, s in per_window]
    with_hist = [(w, h) for w, h in with_hist if _list(h.get("counts"))]
    if not with_hist:
        return ""
    latest = with_hist[-1][1]
    edges, size = _list(latest.get("edges")), len(_list(latest.get("counts")))
    total, used = [0.0] * size, 0
    for _, h in with_hist:
        counts = _list(h.get("counts"))
        if _list(h.get("edges")) == edges and len(counts) == size:
            total = [t + (float(c) if finite(c) else 0.0)
                     for t, c in zip(total, counts, strict=True)]
            used += 1
    # a row scoring over 1 is out of distribution (see watchkeeper.baseline.ood)
    line = _float(latest.get("threshold")) or 1.0
    bins = [(label, count, lower is not None and lower >= line)
            for (label, lower), count in zip(score_bins(edges, size), total, strict=True)]
    where = ("all windows" if used == len(with_hist) and used > 1
             else with_hist[-1][0].label if used == 1 else f"{used} windows")
    return histogram(bins, title=f"Rows by out-of-distribution score, {where} "
                     f"(red: past the line at {line:g})")


def score_bins(edges: list[Any], size: int) -> list[tuple[str, float | None]]:
    """(label, lower edge) of each of ``size`` bins, from either all edges (size + 1) or
    interior ones (size - 1, with open first and last bins)."""
    e = [_float(x) for x in edges]
    if len(e) == size + 1:
        return [(f"{number(e[i], 3)}–{number(e[i + 1], 3)}", e[i]) for i in range(size)]
    if len(e) == size - 1 and size > 1:
        return ([(f"≤{number(e[0], 3)}", None)]
                + [(f"{number(e[i], 3)}–{number(e[i + 1], 3)}", e[i]) for i in range(size - 2)]
                + [(f">{number(e[-1], 3)}", e[-1])])
    return [(f"bin {i + 1}", None) for i in range(size)]


def _offenders(per_window: list[tuple[WindowView, dict[str, Any]]]) -> str:
    total: dict[str, float] = {}
    for _, s in per_window:
        for k, v in _dict(s.get("top_offenders")).items():
            if finite(v):
                total[str(k)] = total.get(str(k), 0.0) + float(v)
    if not total:
        return ""
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    return bar_chart([Bar(k, v, None, "bar warning", number(v)) for k, v in ranked],
                     title="Features that made rows out of distribution (rows, all windows)")


def _clients(per_window: list[tuple[WindowView, dict[str, Any]]]) -> str:
    for w, s in reversed(per_window):
        clients = [_dict(c) for c in _list(s.get("clients"))]
        if not clients:
            continue
        keys: list[str] = []
        for c in clients:
            keys += [k for k in c if k not in keys and k != "client"]
        clients.sort(key=lambda c: (-(_float(c.get("rows")) or 0.0), str(c.get("client"))))
        shown = clients[:25]
        rows = [[escape(c.get("client")), *(_cell(c.get(k)) for k in keys)] for c in shown]
        more = (f'<p class="note">and {len(clients) - len(shown)} more client(s)</p>'
                if len(clients) > len(shown) else "")
        return (f"<h3>Clients, {escape(w.label)}</h3>"
                + table(["client", *(k.replace("_", " ") for k in keys)], rows,
                        numeric=list(range(1, len(keys) + 1))) + more)
    return ""


def _cell(value: Any) -> str:
    if isinstance(value, Mapping):
        return escape(", ".join(f"{k}: {v}" for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return escape(", ".join(str(v) for v in value))
    return number(value)


# ------------------------------------------------------------------------ incidents


def incidents(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return ""
    ordered = sorted((_dict(i) for i in items),
                     key=lambda i: (str(i.get("status", "open")) == "resolved",
                                    -_rank(str(i.get("severity", "")))))
    return section("incidents", "Incidents", "".join(_incident(i) for i in ordered),
                   "Related alerts grouped into one incident, with a diagnosis, the likely "
                   "causes ranked, and what to do about it.")


def _incident(i: dict[str, Any]) -> str:
    severity = str(i.get("severity") or "info")
    severity = severity if severity in SEVERITIES else "info"
    status = str(i.get("status") or "open")
    meta = [f"id <code>{escape(i.get('id') or '?')}</code>", f"status {escape(status)}"]
    for key, text in (("opened", "opened"), ("last_window", "last window"),
                      ("resolved", "resolved")):
        if i.get(key):
            meta.append(f"{text} {escape(window_label(str(i[key]))[0])}")
    if i.get("acknowledged"):
        meta.append("acknowledged" + (f" by {escape(i['acknowledged_by'])}"
                                      if i.get("acknowledged_by") else ""))
    advice = _dict(i.get("advice")) or i
    out = [f'<div class="incident {escape(severity)}"><h3>{badge(severity)} '
           f"{escape(i.get('title') or advice.get('diagnosis') or 'incident')}</h3>"
           f'<div class="meta">{" · ".join(meta)}</div>']
    if advice.get("diagnosis"):
        began = f" <span class=\"muted\">since {escape(window_label(str(advice['began']))[0])}" \
            "</span>" \
            if advice.get("began") else ""
        out.append(f'<p class="diagnosis">Diagnosis: <strong>{escape(advice["diagnosis"])}'
                   f"</strong>{began}</p>")
    causes = [_dict(c) for c in _list(advice.get("causes"))]
    if causes:
        items = "".join(f"<li><strong>{escape(c.get('name'))}</strong>"
                        + (f' <span class="muted">({escape(c["kind"])}, score '
                           f"{number(c.get('score'), 3)})</span>" if c.get("kind") else "")
                        + (f": {escape(c['detail'])}" if c.get("detail") else "") + "</li>"
                        for c in causes[:8])
        out.append(f"<h4>Likely causes</h4><ol>{items}</ol>")
    actions = _list(advice.get("actions"))
    if actions:
        out.append("<h4>Recommended actions</h4><ul>"
                   + "".join(f"<li>{escape(a)}</li>" for a in actions) + "</ul>")
    alerts = [_dict(a) for a in _list(i.get("alerts"))]
    if alerts:
        rows = [[escape(a.get("state") or ""), badge(str(a.get("severity") or "info")),
                 escape(_what(a)), escape(_where(a)) or "–", number(a.get("value")),
                 number(a.get("threshold")), escape(a.get("message") or "")]
                for a in alerts]
        out.append(f"<details><summary>{len(alerts)} alert(s)</summary>"
                   + table(["state", "severity", "monitor", "column / segment", "value",
                            "threshold", "message"], rows, css="wide", numeric=[4, 5])
                   + "</details>")
    out.append("</div>")
    return "".join(out)
