"""The page header: title, suite and time range, counts by severity, the section links."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from watchkeeper.report.html import SEVERITIES, escape, number, window_label
from watchkeeper.report.sections.common import WindowView
from watchkeeper.report.svg import finite


def render(title: str, result: Mapping[str, Any], windows: list[WindowView],
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
