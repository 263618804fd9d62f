"""Performance: realised and estimated metrics per window, charts and the confusion
matrix."""

from __future__ import annotations

from watchkeeper.monitors.performance import COUNTS
from watchkeeper.report.html import escape, fixed, number, percent, section, table
from watchkeeper.report.sections.common import (
    METRIC_NAMES,
    METRICS,
    WindowView,
    as_dict,
    as_float,
    as_list,
)
from watchkeeper.report.svg import Series, finite, line_chart


def render(windows: list[WindowView]) -> str:
    realised = [as_dict(w.metrics.get("realised")) for w in windows]
    estimated = [as_dict(w.metrics.get("estimated")) for w in windows]
    bands = [as_dict(w.metrics.get("estimated_band")) for w in windows]
    present = {k for d in realised + estimated for k, v in d.items() if finite(v)}
    names = [m for m in METRICS if m in present]
    names += sorted(present - set(METRICS) - set(COUNTS))
    if not names:
        return ""
    labels, axis = [w.label for w in windows], [w.axis for w in windows]
    charts = []
    for name in names:
        series = [Series("realised", [as_float(r.get(name)) for r in realised], "realised")]
        if any(finite(e.get(name)) for e in estimated):
            series.append(Series("estimated", [as_float(e.get(name)) for e in estimated],
                                 "estimated"))
        band: list[tuple[float, float] | None] = []
        for b in bands:
            pair = as_list(b.get(name))
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
                pair = as_list(b.get(n))
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
        c = as_dict(w.metrics.get("confusion"))
        classes, matrix = [str(x) for x in as_list(c.get("classes"))], as_list(c.get("matrix"))
        if not classes or not matrix:
            continue
        width = max(len(as_list(r)) for r in matrix)
        head = ["true \\ predicted", *classes[:width]]
        if width > len(classes):
            head.append("no/other prediction")
        head += [""] * (width + 1 - len(head))
        rows = [[escape(classes[i] if i < len(classes) else "?"),
                 *(number(v) for v in as_list(r))] for i, r in enumerate(matrix)]
        return (f"<h3>Confusion matrix, {escape(w.label)}</h3>"
                + table(head, rows, numeric=list(range(1, width + 1))))
    return ""
