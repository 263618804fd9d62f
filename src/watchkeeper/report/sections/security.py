"""Security: out-of-distribution rows, the features to blame, and the traffic per client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watchkeeper.report.html import escape, number, percent, section, table
from watchkeeper.report.sections.common import WindowView, as_dict, as_float, as_list
from watchkeeper.report.svg import Bar, Series, bar_chart, finite, histogram, line_chart


def render(windows: list[WindowView]) -> str:
    per_window = [(w, as_dict(w.metrics.get("security"))) for w in windows]
    per_window = [(w, s) for w, s in per_window if s]
    if not per_window:
        return ""
    parts = []
    shares = [as_float(as_dict(w.metrics.get("security")).get("ood_share")) for w in windows]
    if sum(s is not None for s in shares) >= 2:
        parts.append(line_chart([w.label for w in windows],
                                [Series("out-of-distribution share", shares, "realised")],
                                axis=[w.axis for w in windows],
                                title="Share of out-of-distribution rows", percent=True))
    rows = []
    for w, s in per_window:
        offenders = as_dict(s.get("top_offenders"))
        top = ", ".join(f"{escape(k)} ({number(v)})" for k, v in list(offenders.items())[:3])
        rows.append([escape(w.label), number(s.get("rows")), number(s.get("ood_rows")),
                     percent(s.get("ood_share"), 2), top or "–",
                     number(len(as_list(s.get("clients")))) if "clients" in s else "–"])
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
    with_hist = [(w, as_dict(s.get("ood_score_histogram"))) for w, s in per_window]
    with_hist = [(w, h) for w, h in with_hist if as_list(h.get("counts"))]
    if not with_hist:
        return ""
    latest = with_hist[-1][1]
    edges, size = as_list(latest.get("edges")), len(as_list(latest.get("counts")))
    total, used = [0.0] * size, 0
    for _, h in with_hist:
        counts = as_list(h.get("counts"))
        if as_list(h.get("edges")) == edges and len(counts) == size:
            total = [t + (float(c) if finite(c) else 0.0)
                     for t, c in zip(total, counts, strict=True)]
            used += 1
    # a row scoring over 1 is out of distribution (see watchkeeper.baseline.ood)
    line = as_float(latest.get("threshold")) or 1.0
    bins = [(label, count, lower is not None and lower >= line)
            for (label, lower), count in zip(score_bins(edges, size), total, strict=True)]
    where = ("all windows" if used == len(with_hist) and used > 1
             else with_hist[-1][0].label if used == 1 else f"{used} windows")
    return histogram(bins, title=f"Rows by out-of-distribution score, {where} "
                     f"(red: past the line at {line:g})")


def score_bins(edges: list[Any], size: int) -> list[tuple[str, float | None]]:
    """(label, lower edge) of each of ``size`` bins, from either all edges (size + 1) or
    interior ones (size - 1, with open first and last bins)."""
    e = [as_float(x) for x in edges]
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
        for k, v in as_dict(s.get("top_offenders")).items():
            if finite(v):
                total[str(k)] = total.get(str(k), 0.0) + float(v)
    if not total:
        return ""
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    return bar_chart([Bar(k, v, None, "bar warning", number(v)) for k, v in ranked],
                     title="Features that made rows out of distribution (rows, all windows)")


def _clients(per_window: list[tuple[WindowView, dict[str, Any]]]) -> str:
    for w, s in reversed(per_window):
        clients = [as_dict(c) for c in as_list(s.get("clients"))]
        if not clients:
            continue
        keys: list[str] = []
        for c in clients:
            keys += [k for k in c if k not in keys and k != "client"]
        clients.sort(key=lambda c: (-(as_float(c.get("rows")) or 0.0), str(c.get("client"))))
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
