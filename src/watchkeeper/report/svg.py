"""Inline SVG charts drawn in Python: no script, no external reference, same output for the
same input. Every text that comes from data is escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from watchkeeper.report.html import escape

FONT = 11  # px, in chart units


@dataclass
class Series:
    """One line of a line chart; ``None`` values leave a gap."""

    name: str
    values: Sequence[float | None]
    css: str  # class giving colour and dash: "realised", "estimated", ...


def finite(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering [lo, hi].

    >>> nice_ticks(0.81, 0.84)
    [0.81, 0.82, 0.83, 0.84]
    """
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-6:
        if t >= lo - step * 1e-6:
            ticks.append(round(t, 12))
        t += step
    return ticks


def _range(values: Sequence[float], pad: float = 0.08) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        spread = abs(hi) * 0.05 or 0.05
        return lo - spread, hi + spread
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def tick_text(x: float, percent: bool = False) -> str:
    if percent:
        return f"{100 * x:.3g}%"
    if abs(x) >= 1000 and float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:.4g}"


def short(label: str, width: int = 14) -> str:
    """A label clipped to ``width`` characters."""
    return label if len(label) <= width else label[: width - 1] + "…"


def line_chart(labels: Sequence[str], series: Sequence[Series], *,
               band: Sequence[tuple[float, float] | None] = (), band_css: str = "band",
               reference: float | None = None, reference_label: str = "",
               title: str = "", width: int = 540, height: int = 220,
               percent: bool = False, axis: Sequence[str] = ()) -> str:
    """Lines over windows (x: window index), an optional shaded band and a horizontal
    reference line. Each value is a circle with a tooltip (class ``pt pt-<series css>``);
    ``axis`` gives shorter labels for the x axis (default: ``labels`` clipped)."""
    left, right, top, bottom = 52, 12, 24, 34
    n = len(labels)
    values = [v for s in series for v in s.values if finite(v)]
    values += [b for pair in band if pair for b in pair if finite(b)]
    if reference is not None and finite(reference):
        values.append(reference)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text class="chart-title" x="{left}" y="14">{escape(title)}</text>']
    if not values or n == 0:
        out.append(f'<text class="muted" x="{width / 2:.0f}" y="{height / 2:.0f}" '
                   f'text-anchor="middle">no data</text></svg>')
        return "".join(out)
    lo, hi = _range(values)
    ticks = nice_ticks(lo, hi)
    plot_w, plot_h = width - left - right, height - top - bottom

    inset = min(36, plot_w / 6)  # room for the first and last window labels

    def x(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else inset + (plot_w - 2 * inset) * i / (n - 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    for t in ticks:
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(t):.1f}" '
                   f'y2="{y(t):.1f}"/><text class="tick" x="{left - 6}" y="{y(t) + 4:.1f}" '
                   f'text-anchor="end">{tick_text(t, percent)}</text>')
    every = max(1, math.ceil(n / max(1, plot_w // 80)))
    for i, label in enumerate(labels):
        if i % every == 0:
            text = axis[i] if i < len(axis) else label
            out.append(f'<text class="tick" x="{x(i):.1f}" y="{height - bottom + 16}" '
                       f'text-anchor="middle">{escape(short(text))}</text>')
    # band: one polygon per run of windows that have it
    for run in _runs([bool(b and finite(b[0]) and finite(b[1])) for b in band]):
        spans = [(i, b) for i in run if (b := band[i]) is not None]  # all of the run
        upper = [f"{x(i):.1f},{y(b[1]):.1f}" for i, b in spans]
        lower = [f"{x(i):.1f},{y(b[0]):.1f}" for i, b in reversed(spans)]
        if len(run) == 1:
            i = run[0]
            b = band[i]
            assert b is not None
            out.append(f'<rect class="{band_css}" x="{x(i) - 5:.1f}" y="{y(b[1]):.1f}" '
                       f'width="10" height="{max(y(b[0]) - y(b[1]), 1):.1f}"/>')
        else:
            out.append(f'<polygon class="{band_css}" points="{" ".join(upper + lower)}"/>')
    if reference is not None and finite(reference):
        out.append(f'<line class="reference" x1="{left}" x2="{width - right}" '
                   f'y1="{y(reference):.1f}" y2="{y(reference):.1f}"/>'
                   f'<text class="tick reference-label" x="{width - right}" '
                   f'y="{y(reference) - 4:.1f}" text-anchor="end">'
                   f'{escape(reference_label)}</text>')
    for s in series:
        present = [finite(v) for v in s.values]
        for run in _runs(present):
            if len(run) > 1:
                points = " ".join(f"{x(i):.1f},{y(v):.1f}"
                                  for i in run if finite(v := s.values[i]))  # all of the run
                out.append(f'<polyline class="line line-{s.css}" points="{points}"/>')
        for i, v in enumerate(s.values):
            if finite(v):
                out.append(f'<circle class="pt pt-{s.css}" cx="{x(i):.1f}" cy="{y(v):.1f}" '
                           f'r="3"><title>{escape(labels[i])}: {escape(s.name)} '
                           f'{tick_text(v, percent)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _runs(flags: Sequence[bool]) -> list[list[int]]:
    """Maximal runs of consecutive True indices."""
    runs: list[list[int]] = []
    for i, on in enumerate(flags):
        if on and runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        elif on:
            runs.append([i])
    return runs


@dataclass
class Bar:
    label: str
    value: float
    marker: float | None = None  # a per-bar tick, e.g. its threshold
    css: str = "bar"
    text: str = ""  # shown right of the bar (default: the value)


def bar_chart(bars: Sequence[Bar], *, reference: float | None = None,
              reference_label: str = "", title: str = "", width: int = 560,
              scale_max: float | None = None, label_width: int = 150) -> str:
    """Horizontal bars, one row each, with optional per-bar markers and one vertical
    reference line (a threshold, the four-fifths line)."""
    row, top = 22, 24 if reference is None else 38
    height = top + row * max(len(bars), 1) + 22
    texts = [b.text or (f"{b.value:.3g}" if finite(b.value) else "–") for b in bars]
    right = max(90, 12 + round(6.5 * max(map(len, texts), default=0)))  # room for the texts
    plot_w = width - label_width - right
    values = [b.value for b in bars if finite(b.value)]
    values += [b.marker for b in bars if b.marker is not None and finite(b.marker)]
    if reference is not None:
        values.append(reference)
    top_value = scale_max if scale_max is not None else (max(values) * 1.1 if values else 1)
    top_value = top_value if top_value > 0 else 1

    def x(v: float) -> float:
        return label_width + plot_w * min(max(v, 0.0), top_value) / top_value

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text class="chart-title" x="0" y="14">{escape(title)}</text>']
    for t in nice_ticks(0.0, top_value):
        out.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" '
                   f'y2="{height - 20}"/><text class="tick" x="{x(t):.1f}" '
                   f'y="{height - 6}" text-anchor="middle">{tick_text(t)}</text>')
    for i, b in enumerate(bars):
        y0 = top + i * row
        out.append(f'<text class="label" x="{label_width - 8}" y="{y0 + 15}" '
                   f'text-anchor="end">{escape(short(b.label, 22))}<title>{escape(b.label)}'
                   f'</title></text>')
        if finite(b.value):
            out.append(f'<rect class="{b.css}" x="{label_width}" y="{y0 + 4}" '
                       f'width="{max(x(b.value) - label_width, 1):.1f}" height="{row - 8}">'
                       f'<title>{escape(b.label)}: {b.value:.4g}</title></rect>')
        if b.marker is not None and finite(b.marker):
            out.append(f'<line class="marker" x1="{x(b.marker):.1f}" x2="{x(b.marker):.1f}" '
                       f'y1="{y0 + 1}" y2="{y0 + row - 1}"/>')
        out.append(f'<text class="value" x="{width - right + 6}" y="{y0 + 15}">'
                   f'{escape(texts[i])}</text>')
    if reference is not None:
        out.append(f'<line class="reference" x1="{x(reference):.1f}" x2="{x(reference):.1f}" '
                   f'y1="{top - 4}" y2="{height - 20}"/><text class="tick reference-label" '
                   f'x="{x(reference):.1f}" y="{top - 6}" text-anchor="middle">'
                   f'{escape(reference_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(bins: Sequence[tuple[str, float, bool]], *, title: str = "",
              width: int = 560, height: int = 210) -> str:
    """Vertical bars, one per (label, count, flagged) bin; flagged bins are drawn in the
    alert colour (e.g. scores past the out-of-distribution line). The count axis turns
    logarithmic when the bins differ by more than 100×, so small bins stay visible."""
    left, right, top, bottom = 56, 12, 34, 36
    n = len(bins)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text class="chart-title" x="{left}" y="14">{escape(title)}</text>']
    if n == 0:
        out.append(f'<text class="muted" x="{width / 2:.0f}" y="{height / 2:.0f}" '
                   f'text-anchor="middle">no data</text></svg>')
        return "".join(out)
    plot_w, plot_h = width - left - right, height - top - bottom
    positive = [c for _, c, _ in bins if finite(c) and c > 0]
    peak = max(positive, default=1)
    log = bool(positive) and peak / min(positive) > 100  # small bins stay visible

    def y(v: float) -> float:
        if log:
            return top + plot_h * (1 - math.log10(1 + v) / math.log10(1 + peak * 1.2))
        return top + plot_h * (1 - v / (peak * 1.05))

    ticks = ([10.0 ** k for k in range(int(math.log10(peak)) + 1)] if log
             else nice_ticks(0, peak * 1.05))
    for t in ticks:
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(t):.1f}" '
                   f'y2="{y(t):.1f}"/><text class="tick" x="{left - 6}" y="{y(t) + 4:.1f}" '
                   f'text-anchor="end">{tick_text(t)}</text>')
    bw = plot_w / n
    for i, (label, count, flagged) in enumerate(bins):
        c = count if finite(count) else 0
        css = "hist flagged" if flagged else "hist"
        out.append(f'<rect class="{css}" x="{left + i * bw + 2:.1f}" y="{y(c):.1f}" '
                   f'width="{max(bw - 4, 1):.1f}" height="{max(top + plot_h - y(c), 0):.1f}">'
                   f'<title>{escape(label)}: {c:,.0f}</title></rect>'
                   f'<text class="tick" x="{left + (i + 0.5) * bw:.1f}" y="{y(c) - 3:.1f}" '
                   f'text-anchor="middle">{c:,.0f}</text>'
                   f'<text class="tick" x="{left + (i + 0.5) * bw:.1f}" '
                   f'y="{height - bottom + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def sparkline(labels: Sequence[str], values: Sequence[float | None],
              limits: Sequence[float | None] = (), *, name: str = "value",
              width: int = 150, height: int = 30) -> str:
    """A small line of ``values`` over windows with its per-window ``limits`` (a threshold)
    dashed behind it; points past their limit are drawn in the alert colour. Every point
    has a tooltip with the window, the value and the limit."""
    pad = 4
    n = len(values)
    known = [v for v in values if finite(v)] + [t for t in limits if finite(t)]
    out = [f'<svg class="chart spark" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(name)} per window">']
    if not known or n == 0:
        out.append("</svg>")
        return "".join(out)
    top = max(known) * 1.1 or 1.0

    def x(i: int) -> float:
        return width / 2 if n == 1 else pad + (width - 2 * pad) * i / (n - 1)

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * min(max(v, 0.0), top) / top

    def line(series: Sequence[float | None], css: str) -> None:
        for run in _runs([finite(v) for v in series]):
            if len(run) > 1:
                points = " ".join(f"{x(i):.1f},{y(v):.1f}"
                                  for i in run if finite(v := series[i]))  # all of the run
                out.append(f'<polyline class="{css}" points="{points}"/>')

    limits = list(limits) + [None] * (n - len(limits))
    line(limits, "spark-limit")
    line(values, "spark-line")
    for i, v in enumerate(values):
        if not finite(v):
            continue
        limit = limits[i]
        past = finite(limit) and v > limit
        tip = f"{labels[i] if i < len(labels) else i + 1}: {name} {v:.3g}" + (
            f" (threshold {limit:.3g})" if finite(limit) else "")
        out.append(f'<circle class="spark-pt{" past" if past else ""}" cx="{x(i):.1f}" '
                   f'cy="{y(v):.1f}" r="{2.5 if past else 1.8}"><title>{escape(tip)}'
                   "</title></circle>")
    out.append("</svg>")
    return "".join(out)
