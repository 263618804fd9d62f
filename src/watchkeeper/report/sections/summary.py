"""The windows table: one row per window with its verdict and headline metric."""

from __future__ import annotations

from watchkeeper.report.html import (
    SEVERITIES,
    badge,
    escape,
    fixed,
    number,
    percent,
    section,
    table,
)
from watchkeeper.report.sections.common import METRIC_NAMES, METRICS, WindowView, as_dict, as_list
from watchkeeper.report.svg import finite
from watchkeeper.run.check import WindowStatus


def render(windows: list[WindowView]) -> str:
    if not windows:
        return section("summary", "Windows", '<p class="empty">No windows: the result is '
                       "empty.</p>")
    has_labels = any(as_dict(w.metrics.get("realised")) for w in windows)
    # the headline metric: the first of METRICS realised or estimated in any window (none
    # for a target without a model output: its label coverage is still worth showing)
    measured = {k for w in windows for d in (as_dict(w.metrics.get("realised")),
                                             as_dict(w.metrics.get("estimated")))
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
            realised, estimated = as_dict(w.metrics.get("realised")), as_dict(
                w.metrics.get("estimated"))
            band = as_list(as_dict(w.metrics.get("estimated_band")).get(headline))
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
