"""The batch check's result as a person reads it in a terminal: incidents first, then the
findings that formed no incident, then one line per window and the performance table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from watchkeeper.monitors.base import Finding, Severity
from watchkeeper.report.html import window_label
from watchkeeper.run.check import CheckResult, Tracked, WindowResult, WindowStatus


def check_text(result: CheckResult) -> str:
    """What a person reads: the incidents first (diagnosis, ranked causes, actions,
    windows affected, and their findings), then the findings that formed no incident
    (with why: inhibited, did not persist, info), then one line per window."""
    tracked = result.track()
    out = [*_incident_lines(result, tracked), *_other_lines(result, tracked),
           *_table(("window", "rows", "status"),
                   [(window_label(w.label)[0], str(w.rows), _status_text(w))
                    for w in result.windows])]
    performance = _performance_lines(result)
    if performance:
        out += ["", *performance]
    counts = {s: sum(f.severity == s for f in result.findings) for s in Severity}
    opened = sum(v["status"] != "resolved" for v in tracked.views)
    out += ["", f"{len(result.windows)} window(s), {len(result.findings)} finding(s): "
                f"{counts[Severity.CRITICAL]} critical, {counts[Severity.WARNING]} warning, "
                f"{counts[Severity.INFO]} info; {len(tracked.views)} incident(s), "
                f"{opened} still open at the last window"]
    if result.unmatched_labels:
        out.append(f"{result.unmatched_labels} label(s) matched no prediction id")
    return "\n".join(out)


def _members(result: CheckResult, tracked: Tracked) -> dict[str, list[tuple[int, Finding]]]:
    """Incident id → its findings (window index, finding), in window order."""
    members: dict[str, list[tuple[int, Finding]]] = {}
    for i, w in enumerate(result.windows):
        for f in w.findings:
            alert = tracked.alert_of(i, f)
            if alert is not None and alert["incident"]:
                members.setdefault(alert["incident"], []).append((i, f))
    return members


def _incident_lines(result: CheckResult, tracked: Tracked) -> list[str]:
    if not tracked.views:
        return []
    members = _members(result, tracked)
    out = [f"{len(tracked.views)} incident(s)", ""]
    for n, view in enumerate(tracked.views, 1):
        advice, found = view["advice"], members.get(view["id"], [])
        windows = sorted({i for i, _ in found})
        span = (window_label(result.windows[windows[0]].label)[0] if windows else "-")
        if len(windows) > 1:
            span += f" → {window_label(result.windows[windows[-1]].label)[0]}"
        state = (f"resolved at {window_label(view['resolved'])[0]}"
                 if view["status"] == "resolved" else "open at the last window")
        out += [f"{n}. [{view['severity']}] {advice['diagnosis']}: {view['title']}  "
                f"(incident {view['id']})",
                f"   windows affected: {len(windows)} ({span}); {state}",
                f"   diagnosis: {advice['diagnosis']}, since "
                f"{window_label(advice['began'] or view['opened'])[0]}"]
        if advice["causes"]:
            out.append("   likely causes:")
            out += [f"     {k}. {c['name']}: {c['detail']}"
                    for k, c in enumerate(advice["causes"][:5], 1)]
        if advice["actions"]:
            out.append("   actions:")
            out += [f"     - {a}" for a in advice["actions"]]
        out.append("   findings:")
        out += ["     " + line for line in _finding_table(
            [(result.windows[i], f, "") for i, f in found])]
        out.append("")
    return out


def _other_lines(result: CheckResult, tracked: Tracked) -> list[str]:
    rows = []
    for i, w in enumerate(result.windows):
        for f in w.findings:
            alert = tracked.alert_of(i, f)
            if alert is not None and alert["incident"]:
                continue
            rows.append((w, f, _why_not(f, alert)))
    if not rows:
        return []
    return [f"{len(rows)} finding(s) in no incident", *_finding_table(rows), ""]


def _performance_lines(result: CheckResult) -> list[str]:
    rows = []
    for w in result.windows:
        m = w.metrics
        if not m.get("realised") and not m.get("estimated"):
            continue
        realised, estimated = m.get("realised", {}), m.get("estimated", {})
        unjudged = {u.monitor: u.reason for u in w.not_evaluated}
        cells = [window_label(w.label)[0], f"{m.get('label_coverage', 0.0):.0%}"]
        if "performance" in unjudged and "estimated_performance" in unjudged:
            cells.append(f"not evaluated ({unjudged['performance']}; estimate: "
                         f"{unjudged['estimated_performance']})")
            rows.append(cells)
            continue
        for name in ("accuracy", "roc_auc", "f1", "mae", "rmse"):
            if name in realised or name in estimated:
                r = realised.get(name, float("nan"))
                e = estimated.get(name)
                text = "-" if not np.isfinite(r) else f"{r:.3f}"
                est = "" if e is None else (
                    f" (est. {e:.3f})" if np.isfinite(e)
                    and "estimated_performance" not in unjudged else " (est. not evaluated)")
                cells.append(f"{name} {text}{est}")
        rows.append(cells)
    if not rows:
        return []
    header = ["window", "labeled", "metrics (realised, estimated without labels)"]
    width = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    return [f"{r[0].ljust(width[0])}  {r[1].ljust(width[1])}  {'  '.join(r[2:])}".rstrip()
            for r in [header, *rows]]


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip()
            for r in [header, *rows]]


def _number(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else "-"


def _finding_table(rows: list[tuple[WindowResult, Finding, str]]) -> list[str]:
    """One line per finding, most severe first within a window; ``note``: why it is not
    in an incident (left out when no row has one)."""
    header = ("window", "monitor", "column/group", "value", "threshold", "severity", "note")
    lines = []
    for w, f, note in rows:
        monitor = f"{f.monitor}:{f.metric}" if f.metric else f.monitor
        lines.append((window_label(w.label)[0], monitor, f.segment or f.column or "-",
                      _number(f.value), _number(f.threshold), f.severity.value, note))
    if not any(note for *_, note in rows):
        return _table(header[:-1], [line[:-1] for line in lines])
    return _table(header, lines)


def _why_not(f: Finding, alert: dict[str, Any] | None) -> str:
    """Why a finding formed no incident."""
    if alert is None:
        return "info (never alerts)" if f.severity == Severity.INFO else ""
    if alert["inhibited_by"]:
        return f"inhibited ({alert['inhibited_by']})"
    if alert["state"] == "pending":
        return "did not persist"
    return alert["state"]


def _status_text(w: WindowResult) -> str:
    """A window's verdict: its findings, and what could not be judged and why."""
    unjudged = w.unjudged_text()
    alerting = sum(f.severity.rank >= Severity.WARNING.rank for f in w.findings)
    if w.status == WindowStatus.ALERT:
        text = f"{alerting} finding(s)"
        return text + (f"; not evaluated: {unjudged}" if unjudged else "")
    if w.status == WindowStatus.NOT_EVALUATED:
        return f"not evaluated: {unjudged}"
    if w.status == WindowStatus.PARTLY_EVALUATED:
        return f"ok; not evaluated: {unjudged}"
    return "ok"
