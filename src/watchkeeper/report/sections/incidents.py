"""Incidents: each with its diagnosis, likely causes, actions and alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from watchkeeper.report.html import SEVERITIES, badge, escape, number, section, table, window_label
from watchkeeper.report.sections.common import as_dict, as_list, monitor_of, place_of, severity_rank


def render(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return ""
    ordered = sorted((as_dict(i) for i in items),
                     key=lambda i: (str(i.get("status", "open")) == "resolved",
                                    -severity_rank(str(i.get("severity", "")))))
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
    advice = as_dict(i.get("advice")) or i
    out = [f'<div class="incident {escape(severity)}"><h3>{badge(severity)} '
           f"{escape(i.get('title') or advice.get('diagnosis') or 'incident')}</h3>"
           f'<div class="meta">{" · ".join(meta)}</div>']
    if advice.get("diagnosis"):
        began = f" <span class=\"muted\">since {escape(window_label(str(advice['began']))[0])}" \
            "</span>" \
            if advice.get("began") else ""
        out.append(f'<p class="diagnosis">Diagnosis: <strong>{escape(advice["diagnosis"])}'
                   f"</strong>{began}</p>")
    causes = [as_dict(c) for c in as_list(advice.get("causes"))]
    if causes:
        items = "".join(f"<li><strong>{escape(c.get('name'))}</strong>"
                        + (f' <span class="muted">({escape(c["kind"])}, score '
                           f"{number(c.get('score'), 3)})</span>" if c.get("kind") else "")
                        + (f": {escape(c['detail'])}" if c.get("detail") else "") + "</li>"
                        for c in causes[:8])
        out.append(f"<h4>Likely causes</h4><ol>{items}</ol>")
    actions = as_list(advice.get("actions"))
    if actions:
        out.append("<h4>Recommended actions</h4><ul>"
                   + "".join(f"<li>{escape(a)}</li>" for a in actions) + "</ul>")
    alerts = [as_dict(a) for a in as_list(i.get("alerts"))]
    if alerts:
        rows = [[escape(a.get("state") or ""), badge(str(a.get("severity") or "info")),
                 escape(monitor_of(a)), escape(place_of(a)) or "–", number(a.get("value")),
                 number(a.get("threshold")), escape(a.get("message") or "")]
                for a in alerts]
        out.append(f"<details><summary>{len(alerts)} alert(s)</summary>"
                   + table(["state", "severity", "monitor", "column / segment", "value",
                            "threshold", "message"], rows, css="wide", numeric=[4, 5])
                   + "</details>")
    out.append("</div>")
    return "".join(out)
