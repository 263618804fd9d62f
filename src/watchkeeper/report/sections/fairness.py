"""Fairness: per sensitive attribute, the parity measures per window and the groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watchkeeper.report.html import escape, fixed, number, section, table
from watchkeeper.report.sections.common import WindowView, as_dict, as_float, as_list
from watchkeeper.report.svg import Bar, bar_chart, finite

FOUR_FIFTHS = 0.8  # disparate-impact line of results that do not carry the suite's own
GROUP_MEASURES = ("selection_rate", "tpr", "fpr", "precision", "accuracy")
EARLIER_GROUP_TABLES = 10  # windows before the latest whose group tables are listed


def render(windows: list[WindowView]) -> str:
    per_window = [(w, as_dict(w.metrics.get("fairness"))) for w in windows]
    per_window = [(w, f) for w, f in per_window if f]
    if not per_window:
        return ""
    attributes: list[str] = []
    for _, f in per_window:
        attributes += [a for a in f if a not in attributes]
    parts = []
    for attribute in attributes:
        history = [(w, as_dict(f.get(attribute))) for w, f in per_window if attribute in f]
        parts.append(f"<h3>{escape(attribute)}</h3>" + _inherited_note(history)
                     + _fairness_trend(history))
        latest_w, latest = history[-1]
        parts.append(f"<h4>Groups, {escape(latest_w.label)}</h4>"
                     f'<div class="pair"><div>{_groups_table(as_dict(latest.get("groups")))}'
                     f"</div><div>{_four_fifths_chart(latest)}</div></div>")
        earlier = [(w, d) for w, d in history[:-1] if as_dict(d.get("groups"))]
        if earlier:
            shown = earlier[-EARLIER_GROUP_TABLES:]
            inner = "".join(f"<h4>{escape(w.label)}</h4>" + _groups_table(as_dict(d["groups"]))
                            for w, d in reversed(shown))
            if len(earlier) > len(shown):
                inner += (f'<p class="note">{len(earlier) - len(shown)} older window(s) not '
                          "shown; their measures are in the table above.</p>")
            parts.append(f"<details><summary>groups in {len(shown)} earlier window(s)"
                         f"</summary>{inner}</details>")
    floor = _floor(as_dict(next(iter(per_window[-1][1].values()))))
    return section("fairness", "Fairness", "".join(parts),
                   "Per sensitive attribute (and intersection): the demographic-parity "
                   "difference (largest gap in selection rate between groups, with its 95% "
                   "interval), the disparate-impact ratio (smallest over largest selection "
                   f"rate; below {floor:g} breaks {_rule(floor)}) and the "
                   "equalised-odds difference (largest TPR or FPR gap), each with the two "
                   "groups it is between, and the reference's values: a ratio that was "
                   f"already below {floor:g} in the reference is marked as such (amber), one "
                   "that fell below it since in red, in the tables and the group charts. "
                   "Groups too small to measure are listed as such and left out of these "
                   "measures.")


def _floor(d: Mapping[str, Any]) -> float:
    """The suite's disparate-impact line (the fairness monitor's ``min_di_ratio``) as the
    grouping's measures carry it; the four-fifths rule for results that do not."""
    floor = as_float(d.get("min_di_ratio"))
    return FOUR_FIFTHS if floor is None else floor


def _rule(floor: float) -> str:
    return ("the four-fifths rule" if floor == FOUR_FIFTHS
            else "the suite's disparate-impact policy (min_di_ratio)")


def _line(floor: float) -> str:
    return "four-fifths" if floor == FOUR_FIFTHS else f"policy {floor:g}"


def _reference_di(d: Mapping[str, Any]) -> float | None:
    return as_float(as_dict(d.get("reference")).get("di_ratio"))


def _inherited(d: Mapping[str, Any]) -> bool:
    """Whether the reference's ratio was already below the line: a break of the grouping
    is then a property of the data the suite was built on, not a change."""
    ref = _reference_di(d)
    return ref is not None and ref < _floor(d)


def _inherited_note(history: list[tuple[WindowView, dict[str, Any]]]) -> str:
    """Say so when the reference itself is below the disparate-impact line."""
    _, latest = history[-1]
    if not _inherited(latest):
        return ""
    ref, floor = _reference_di(latest), _floor(latest)
    groups = as_list(latest.get("dp_groups"))
    between = (f" (lowest selection rate {escape(groups[1])}, highest {escape(groups[0])} in "
               "the latest window)" if len(groups) == 2 else "")
    return (f'<p class="note inherited">The disparate-impact ratio was already {fixed(ref)} '
            f"in the reference, below {floor:g}{between}: a property of the data the "
            "suite was built on (and, likely, the model trained on), not a change since. "
            "Windows are compared with it: the monitor alerts when a group's gap moves away "
            "from the reference's, not on this ratio.</p>")


def _between(groups: Any, prefix: str = "") -> str:
    pair = as_list(groups)
    if len(pair) != 2:
        return ""
    return f'<span class="sub">{escape(prefix)}{escape(pair[0])} vs {escape(pair[1])}</span>'


def _dp_cell(dp_value: Any, groups: Any = None) -> str:
    dp = as_list(dp_value)
    text = fixed(dp[0]) if dp and finite(dp[0]) else fixed(dp_value)
    if len(dp) == 3 and all(finite(x) for x in dp):
        text += f'<span class="sub">95% CI {fixed(dp[1])} – {fixed(dp[2])}</span>'
    return text + _between(groups)


def _di_cell(di: float | None, ref: float | None, floor: float) -> str:
    text = fixed(di)
    if di is None or di >= floor:
        return text + (f'<span class="sub">reference {fixed(ref)}</span>'
                       if ref is not None and ref < floor else "")
    if ref is not None and ref < floor:
        return (f'<span class="inherited" title="already below {floor:g} in the '
                f'reference ({fixed(ref)}): not a change">{text} &lt; {floor:g}</span>'
                f'<span class="sub">reference {fixed(ref)}, already below</span>')
    since = f" (reference {fixed(ref)})" if ref is not None else ""
    return (f'<span class="flag" title="below the {_line(floor)} line{since}">{text} &lt; '
            f"{floor:g}</span>"
            + (f'<span class="sub">new: reference {fixed(ref)}</span>' if ref is not None
               else ""))


def _fairness_trend(history: list[tuple[WindowView, dict[str, Any]]]) -> str:
    rows = []
    references = {repr(as_dict(d.get("reference"))) for _, d in history if d.get("reference")}
    if len(references) == 1:  # one reference for every window: its own row
        ref = next(as_dict(d["reference"]) for _, d in history if d.get("reference"))
        di, floor = as_float(ref.get("di_ratio")), _floor(history[-1][1])
        di_text = fixed(di)
        if di is not None and di < floor:
            di_text = f'<span class="inherited">{di_text} &lt; {floor:g}</span>'
        rows.append(['<span class="muted">reference</span>', "", "", _dp_cell(
            ref.get("dp_difference")), di_text, fixed(ref.get("eo_difference"))])
    for w, d in history:
        di = as_float(d.get("di_ratio"))
        ref_di = _reference_di(d)
        groups = as_dict(d.get("groups"))
        small = sum(as_dict(g).get("status") == "insufficient data" for g in groups.values())
        metric = str(d.get("eo_metric") or "").upper()
        rows.append([escape(w.label), number(len(groups)), number(small) if small else "0",
                     _dp_cell(d.get("dp_difference"), d.get("dp_groups")),
                     _di_cell(di, ref_di, _floor(d)),
                     fixed(d.get("eo_difference"))
                     + _between(d.get("eo_groups"), f"{metric}: " if metric else "")])
    return table(["window", "groups", "insufficient data", "DP difference", "DI ratio",
                  "EO difference"], rows, numeric=[1, 2, 3, 4, 5])


def _groups_table(groups: dict[str, Any]) -> str:
    if not groups:
        return '<p class="empty">No groups.</p>'
    rows = []
    for name, g in groups.items():
        g = as_dict(g)
        if g.get("status"):
            rows.append([escape(name), number(g.get("n")),
                         f'<span class="muted">{escape(g["status"])}</span>', "", "", "", ""])
        else:
            rows.append([escape(name), number(g.get("n")),
                         *(fixed(g.get(k)) for k in GROUP_MEASURES)])
    return table(["group", "n", "selection rate", "TPR", "FPR", "precision", "accuracy"],
                 rows, numeric=[1, 2, 3, 4, 5, 6])


def _four_fifths_chart(d: Mapping[str, Any]) -> str:
    """Each group's selection rate over the most selected group's, against the line. A
    group below it is red, or amber when the grouping's ratio was already below the line
    in the reference (the measures carry the reference's ratio, not its groups' rates)."""
    groups = as_dict(d.get("groups"))
    found = {name: as_float(as_dict(g).get("selection_rate")) for name, g in groups.items()
             if not as_dict(g).get("status")}
    rates = {k: v for k, v in found.items() if v is not None}
    best = max(rates.values(), default=0.0)
    if len(rates) < 2 or best <= 0:
        return ""
    floor, inherited = _floor(d), _inherited(d)
    below = "inherited" if inherited else "critical"
    bars = [Bar(name, rate / best, None, "bar " + (below if rate / best < floor else "ok"),
                f"{rate / best:.2f}")
            for name, rate in rates.items()]
    chart = bar_chart(bars, reference=floor, reference_label=_line(floor),
                      scale_max=1.0, width=460, label_width=140,
                      title="Selection rate relative to the most selected group")
    if all(b.css == "bar ok" for b in bars):
        return chart
    ref = _reference_di(d)
    if inherited:
        key = f"already below {floor:g} in the reference ({fixed(ref)}): not a change"
    else:
        key = f"below {floor:g}" + (f" since the reference ({fixed(ref)}): new"
                                    if ref is not None else "")
    return (chart + f'<p class="legend"><span class="key bar-{below}"></span>{escape(key)}'
            "</p>")
