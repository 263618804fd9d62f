"""HTML building blocks: escaping, number formatting, tables, the page shell and its
stylesheet (scoped under one wrapper class so the report can sit inside another page)."""

from __future__ import annotations

import html as _html
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, time, timedelta
from typing import Any

WRAPPER = "wk-report"
SEVERITIES = ("critical", "warning", "info")


def escape(value: Any) -> str:
    """Text for HTML content or a quoted attribute (quotes escaped too)."""
    return _html.escape("" if value is None else str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    """A value for a table cell: ``digits`` significant digits, counts with separators,
    missing or non-finite as a dash, anything else as (escaped) text."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.{digits}g}"
    return escape(value)


def fixed(value: Any, decimals: int = 3) -> str:
    """A metric or rate with a fixed number of decimals (large values as ``number``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return number(value)
    return f"{value:.{decimals}f}" if abs(value) < 1000 else number(value)


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _zone(t: datetime) -> str:
    offset = t.utcoffset()
    if offset is None:
        return ""
    return " UTC" if not offset else f" UTC{t.strftime('%z')[:3]}:{t.strftime('%z')[3:]}"


def _range(label: str) -> tuple[datetime, datetime | None] | None:
    """(start, end) of a label written ``start/end`` (or a lone instant) in ISO 8601."""
    first, sep, second = label.partition("/")
    start, end = _instant(first), _instant(second) if sep else None
    if start is None or (sep and end is None):
        return None
    return start, end


def _within_day(start: datetime, end: datetime) -> bool:
    return end.date() == start.date() or (end.time() == time(0)
                                          and end.date() == start.date() + timedelta(1))


def window_label(label: str, *, date: bool = True) -> tuple[str, str]:
    """(label for tables, short label for chart axes) of a window. Time ranges written
    ``start/end`` in ISO 8601 (server and ``--window`` windows) read as dates and clocks,
    with seconds only when a bound has them; ``date=False`` leaves out the date and zone of
    a range within one day (for a list of windows of one day, dated elsewhere). Other
    labels (``year=2016``, ``rows 0-9999``) are kept.

    >>> window_label("2026-01-01T01:00:00+00:00/2026-01-01T02:00:00+00:00")
    ('2026-01-01 01:00–02:00 UTC', '01-01 01:00')
    >>> window_label("2026-01-01T00:00:00+00:00/2026-01-02T00:00:00+00:00")
    ('2026-01-01 UTC', '2026-01-01')
    >>> window_label("2026-01-01T10:00:00+00:00/2026-01-01T10:00:02+00:00", date=False)
    ('10:00:00–10:00:02', '10:00:00')
    >>> window_label("year=2016")
    ('year=2016', 'year=2016')
    """
    parsed = _range(label)
    if parsed is None:
        return label, label
    start, end = parsed
    seconds = any(t.second or t.microsecond for t in (start, end) if t is not None)

    def clock(t: datetime) -> str:
        return t.strftime("%H:%M:%S" if seconds else "%H:%M")

    midnight = start.time() == time(0) and (end is None or end.time() == time(0))
    if end is not None and (midnight or not _within_day(start, end)):
        date = True  # whole days, or a range over midnight, need their dates
    day, zone = (start.strftime("%Y-%m-%d "), _zone(start)) if date else ("", "")
    axis = (start.strftime("%Y-%m-%d") if midnight else
            (start.strftime("%m-%d ") if date else "") + clock(start))
    if end is None:
        return day + clock(start) + zone, axis
    if midnight:
        last = (end - timedelta(days=1)).date()
        days = start.strftime("%Y-%m-%d") + ("" if last <= start.date()
                                             else f" → {last:%Y-%m-%d}")
        return days + zone, axis
    if _within_day(start, end):
        tail = clock(end) if end.time() != time(0) else ("24:00:00" if seconds else "24:00")
        return f"{day}{clock(start)}–{tail}{zone}", axis
    return f"{day}{clock(start)} → {end:%Y-%m-%d} {clock(end)}{zone}", axis


def one_day(labels: Sequence[str]) -> bool:
    """Whether two or more of ``labels`` are time ranges and all of them lie within one
    day of one zone (none a whole day), so that a table may leave their date out.

    >>> one_day(["2026-01-01T10:00:00+00:00/2026-01-01T11:00:00+00:00",
    ...          "2026-01-01T11:00:00+00:00/2026-01-01T12:00:00+00:00", "missing timestamp"])
    True
    """
    ranges = [r for r in map(_range, labels) if r is not None]
    return (len(ranges) >= 2
            and len({(s.date(), s.utcoffset()) for s, _ in ranges}) == 1
            and all(e is not None and _within_day(s, e)
                    and not (s.time() == time(0) and e.time() == time(0)) for s, e in ranges))


def percent(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return f"{100 * value:.{digits}f}%"


def badge(severity: str, text: str | None = None) -> str:
    css = severity if severity in (*SEVERITIES, "ok", "muted") else "muted"
    return f'<span class="badge {css}">{escape(text if text is not None else severity)}</span>'


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *, css: str = "",
          numeric: Sequence[int] = ()) -> str:
    """A table from already-rendered cells (header texts are escaped here); the columns
    in ``numeric`` are right-aligned."""
    cls = f' class="{css}"' if css else ""
    num = ' class="num"'
    head = "".join(f"<th{num if i in numeric else ''}>{escape(h)}</th>"
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{num if i in numeric else ''}>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>\n" for r in rows)
    return f"<table{cls}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def section(anchor: str, heading: str, content: str, note: str = "") -> str:
    intro = f'<p class="note">{note}</p>' if note else ""
    return (f'<section id="wk-{anchor}"><h2>{escape(heading)}</h2>{intro}\n{content}\n'
            f"</section>\n")


_CSS = """
& { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
    sans-serif; color: #1f2328; background: #fff; max-width: 1200px; margin: 0 auto;
    padding: 24px 28px 48px; box-sizing: border-box; }
& * { box-sizing: border-box; }
& h1 { font-size: 24px; margin: 0 0 4px; font-weight: 650; }
& h2 { font-size: 18px; margin: 36px 0 10px; padding-bottom: 6px;
    border-bottom: 1px solid #d8dee4; font-weight: 620; }
& h3 { font-size: 15px; margin: 22px 0 8px; font-weight: 620; }
& h4 { font-size: 13px; margin: 14px 0 6px; font-weight: 620; color: #424a53; }
& p { margin: 6px 0; }
& .subtitle, & .note, & .muted { color: #59636e; }
& .note { font-size: 13px; max-width: 900px; }
& code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
    background: #f3f4f6; padding: 1px 4px; border-radius: 4px; }
& nav { margin: 14px 0 0; font-size: 13px; }
& nav a { color: #0969da; text-decoration: none; margin-right: 14px; }
& nav a:hover { text-decoration: underline; }
& .cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 18px 0 4px; }
& .card { border: 1px solid #d8dee4; border-radius: 8px; padding: 10px 14px;
    min-width: 120px; background: #f8f9fa; }
& .card .big { font-size: 22px; font-weight: 650; display: block; }
& .card .small { font-size: 12px; color: #59636e; text-transform: uppercase;
    letter-spacing: .03em; }
& .card.critical { border-color: #f4b8b2; background: #fef3f2; }
& .card.critical .big { color: #b42318; }
& .card.warning { border-color: #f6d58e; background: #fffaeb; }
& .card.warning .big { color: #93370d; }
& table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; width: auto;
    max-width: 100%; }
& th, & td { padding: 5px 10px; border-bottom: 1px solid #e6e9ed; text-align: left;
    vertical-align: top; }
& th { background: #f6f8fa; font-weight: 600; color: #424a53; white-space: nowrap;
    border-bottom: 1px solid #d0d7de; }
& tbody tr:hover { background: #f8fafc; }
& td.num, & th.num { text-align: right; font-variant-numeric: tabular-nums;
    white-space: nowrap; }
& td .sub { display: block; font-size: 11.5px; color: #6e7781; }
& table.wide { width: 100%; }
& table.findings td:first-child { white-space: nowrap; }
& .badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px;
    font-weight: 600; line-height: 19px; white-space: nowrap; }
& .badge.critical { background: #fee4e2; color: #b42318; }
& .badge.warning { background: #fef0c7; color: #93370d; }
& .badge.info { background: #e0eaff; color: #1d4ed8; }
& .badge.ok { background: #dcfae6; color: #067647; }
& .badge.muted { background: #eaeef2; color: #59636e; }
& .flag { color: #b42318; font-weight: 600; }
& .inherited { color: #7d4e00; }
& p.note.inherited { border-left: 3px solid #d4a72c; background: #fff8c5; color: #4d3800;
    padding: 6px 10px; border-radius: 0 4px 4px 0; }
& .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
    gap: 8px 18px; }
& svg.chart { max-width: 100%; height: auto; display: block; margin: 6px 0; }
& svg.chart text { font-size: 11px; fill: #424a53; }
& svg.chart .chart-title { font-size: 12.5px; font-weight: 600; fill: #1f2328; }
& svg.chart .muted { fill: #8c959f; }
& svg.chart .grid { stroke: #eaeef2; stroke-width: 1; }
& svg.chart .line { fill: none; stroke-width: 2; }
& svg.chart .line-realised { stroke: #1f6feb; }
& svg.chart .pt-realised { fill: #1f6feb; }
& svg.chart .line-estimated { stroke: #d4700b; stroke-dasharray: 5 3; }
& svg.chart .pt-estimated { fill: #fff; stroke: #d4700b; stroke-width: 1.5; }
& svg.chart .band { fill: #f5a524; fill-opacity: .22; stroke: none; }
& svg.chart .reference { stroke: #cf222e; stroke-width: 1.3; stroke-dasharray: 4 3; }
& svg.chart .reference-label { fill: #cf222e; }
& svg.chart .bar { fill: #8fb8f0; }
& svg.chart .bar.critical { fill: #e5534b; }
& svg.chart .bar.warning { fill: #e8a33d; }
& svg.chart .bar.ok { fill: #7cc39a; }
& svg.chart .bar.inherited { fill: #d4a72c; }
& svg.chart .marker { stroke: #1f2328; stroke-width: 2; }
& svg.spark { display: inline-block; margin: 0; vertical-align: middle; }
& svg.spark .spark-line { fill: none; stroke: #1f6feb; stroke-width: 1.5; }
& svg.spark .spark-limit { fill: none; stroke: #cf222e; stroke-width: 1;
    stroke-dasharray: 3 2; }
& svg.spark .spark-pt { fill: #1f6feb; }
& svg.spark .spark-pt.past { fill: #d92d20; }
& svg.chart .hist { fill: #8fb8f0; }
& svg.chart .hist.flagged { fill: #e5534b; }
& .pair { display: flex; flex-wrap: wrap; gap: 4px 32px; align-items: flex-start; }
& .legend { font-size: 12px; color: #59636e; margin: 2px 0 8px; }
& .legend .key { display: inline-block; width: 18px; height: 0; vertical-align: middle;
    margin: 0 4px 0 12px; border-top: 2px solid; }
& .legend .key.realised { border-color: #1f6feb; }
& .legend .key.estimated { border-color: #d4700b; border-top-style: dashed; }
& .legend .key.band { border-top: 8px solid #f5a52455; }
& .legend .key.reference { border-color: #cf222e; border-top-style: dashed; }
& .legend .key.bar-critical { border-top: 8px solid #e5534b; }
& .legend .key.bar-inherited { border-top: 8px solid #d4a72c; }
& details { margin: 6px 0; }
& summary { cursor: pointer; color: #0969da; font-size: 13px; }
& .incident { border: 1px solid #d8dee4; border-left: 4px solid #8c959f;
    border-radius: 6px; padding: 12px 16px; margin: 12px 0; }
& .incident.critical { border-left-color: #d92d20; }
& .incident.warning { border-left-color: #dc8a0b; }
& .incident h3 { margin: 0 0 4px; }
& .incident .meta { font-size: 12.5px; color: #59636e; }
& .incident .diagnosis { font-size: 14px; margin: 10px 0 4px; }
& .incident ol, & .incident ul { margin: 4px 0 8px; padding-left: 22px; }
& .incident li { margin: 2px 0; }
& .empty { color: #59636e; font-style: italic; }
& footer { margin-top: 40px; font-size: 12px; color: #8c959f; }
"""

CSS = _CSS.replace("&", f".{WRAPPER}").strip()


def page(body: str, *, title: str, fragment: bool = False) -> str:
    """The whole document, or only a wrapper div with its scoped style when ``fragment``."""
    wrapped = f'<div class="{WRAPPER}">\n<style>\n{CSS}\n</style>\n{body}</div>\n'
    if fragment:
        return wrapped
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n"
            "<style>body { margin: 0; background: #fff; }</style>\n"
            f"</head>\n<body>\n{wrapped}</body>\n</html>\n")
