"""Findings: every finding of every window, grouped by monitor family."""

from __future__ import annotations

from typing import Any

from watchkeeper.monitors.base import FAMILIES
from watchkeeper.report.html import SEVERITIES, badge, escape, number, section, table
from watchkeeper.report.sections.common import (
    WindowView,
    as_dict,
    monitor_of,
    place_of,
    severity_rank,
)
from watchkeeper.report.svg import finite

FAMILY_TITLES = {"quality": "Data quality", "drift": "Drift", "performance": "Performance",
                 "estimated_performance": "Estimated performance", "fairness": "Fairness",
                 "service": "Service", "security": "Security"}


def render(windows: list[WindowView]) -> str:
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
        group.sort(key=lambda f: (-severity_rank(f["severity"]), order.get(f["window"], 0),
                                  monitor_of(f), place_of(f)))
        rows = [[escape(f["window"]), escape(monitor_of(f)), escape(place_of(f)) or "–",
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
    items = [(k, v) for k, v in as_dict(evidence).items()
             if k != "rows" and (finite(v) or isinstance(v, str))]
    if not items:
        return ""
    text = " · ".join(f"{escape(k)} {number(v, 3)}" for k, v in items[:6])
    return f'<span class="sub">{text}</span>'
