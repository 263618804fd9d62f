"""Segments: per segment value, how many windows it alerted in or could not be judged in,
and its latest window's rows, drift nearest the threshold and metrics."""

from __future__ import annotations

from typing import Any

from watchkeeper.report.html import badge, escape, fixed, number, section, table
from watchkeeper.report.sections.common import WindowView, as_dict


def render(windows: list[WindowView]) -> str:
    seen: dict[str, list[tuple[WindowView, dict[str, Any]]]] = {}
    for w in windows:
        for label, entry in as_dict(w.metrics.get("segments")).items():
            seen.setdefault(str(label), []).append((w, as_dict(entry)))
    if not seen:
        return ""
    rows = []
    for label, entries in seen.items():
        alerting = sum(e.get("status") == "alert" for _, e in entries)
        skipped = [e for _, e in entries if e.get("status") == "not_evaluated"]
        w, last = entries[-1]
        drift = as_dict(last.get("drift"))
        nearest = (f"{escape(drift.get('column'))} {fixed(drift.get('js'))} / "
                   f"{fixed(drift.get('threshold'))}" if drift else "–")
        realised = as_dict(last.get("realised"))
        estimated = as_dict(last.get("estimated"))
        metric = next((k for k in ("accuracy", "mae") if k in realised or k in estimated), None)
        status = (badge("muted", "not evaluated") + f'<span class="sub">'
                  f"{escape(last.get('reason') or '')}</span>"
                  if last.get("status") == "not_evaluated"
                  else badge("warning", "alert") if last.get("status") == "alert"
                  else badge("ok"))
        rows.append([escape(label), number(len(entries)), number(alerting),
                     number(len(skipped)), escape(w.label), number(last.get("rows")),
                     status, nearest,
                     "–" if metric is None else f"{metric} {fixed(realised.get(metric))}",
                     "–" if metric is None else fixed(estimated.get(metric))])
    return section("segments", "Segments", table(
        ["segment", "windows", "alerting", "not evaluated", "latest window", "rows",
         "status", "drift nearest its threshold (JS / threshold)", "realised",
         "estimated"], rows, numeric=[1, 2, 3, 5]),
        "Each segment judged against its own reference rows, with its share of the alert "
        "budget; segment values with too few rows (in the window or the reference) or "
        "unseen in the reference are not evaluated.")
