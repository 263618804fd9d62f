"""A suite at a glance (its notebook display): task, budget per family, monitors, rules
and columns. Unlike the other sections it reads a :class:`~watchkeeper.suite.core.Suite`,
not a check result; every name and value from the suite is escaped."""

from __future__ import annotations

from typing import Any

from watchkeeper.monitors.base import FAMILIES
from watchkeeper.report.html import escape, number, percent, section, table
from watchkeeper.report.sections.findings import FAMILY_TITLES
from watchkeeper.suite.core import Suite


def render(suite: Suite) -> str:
    """The suite's sections (HTML), under a one-line heading."""
    return _heading(suite) + _monitors(suite) + _rules(suite) + _columns(suite)


def _heading(suite: Suite) -> str:
    task = suite.schema.task
    facts = [f"{len(suite.schema.columns)} columns", f"{len(suite.monitors)} monitors",
             f"alert budget {number(suite.budget)} false alerts per window"]
    if task is not None:
        roles = [f"{k} <code>{escape(v)}</code>" for k, v in
                 (("target", task.target), ("prediction", task.prediction),
                  ("score", task.proba)) if v]
        facts.insert(0, f"{escape(task.type)} task: " + ", ".join(roles))
    if suite.path or suite.source:
        facts.append(f"reference <code>{escape(suite.source or suite.path)}</code>")
    return (f"<h1>Suite {escape(suite.name)}</h1>"
            f'<div class="meta">{" · ".join(facts)}</div>\n')


def _monitors(suite: Suite) -> str:
    alpha = suite.family_alpha()
    idle = suite.idle()
    rows = []
    for family in [f for f in FAMILIES if any(m.family == f for m in suite.monitors)]:
        members = [m for m in suite.monitors if m.family == family]
        types = sorted({m.type for m in members})
        off = [m for m in members if m.id in idle or not m.enabled]
        share, running = alpha.get(family, (0.0, 0))
        rows.append([escape(FAMILY_TITLES.get(family, family)), number(len(members)),
                     number(share) if running else '<span class="muted">–</span>',
                     escape(", ".join(types)),
                     escape("; ".join(f"{m.id}: {idle.get(m.id, 'disabled')}"
                                      for m in off[:5]) + (" …" if len(off) > 5 else ""))])
    return section("suite-monitors", "Monitors", table(
        ["family", "monitors", "α", "types", "not running"], rows, css="wide",
        numeric=[1, 2]), "Each family's share of the alert budget (α: expected false alerts "
        "per window) is split evenly over its monitors that can run.")


def _rules(suite: Suite) -> str:
    if not suite.schema.rules:
        return ""
    reference: dict[str, Any] = {}
    for m in suite.monitors:
        if m.type == "rules":
            reference = m.calibration.get("reference") or {}
    rows = []
    for rule in suite.schema.rules:
        counts = reference.get(rule.name) or {}
        checked = counts.get("checked") or 0
        rate = percent(counts.get("violated", 0) / checked, 2) if checked else \
            '<span class="muted">not calibrated</span>'
        rows.append([escape(rule.name), f"<code>{escape(rule.expr)}</code>", rate])
    return section("suite-rules", "Rules", table(["rule", "expression",
                                                  "violated in the reference"], rows,
                                                 numeric=[2]))


def _columns(suite: Suite) -> str:
    rows = []
    for c in suite.schema:
        notes = [n for n in ("sensitive" if c.sensitive else "",
                             f"personal data: {c.pii}" if c.pii else "", c.note or "") if n]
        rows.append([escape(c.name), escape(c.kind), escape(c.role),
                     number(c.n_bins) if c.n_bins else "–", escape("; ".join(notes))])
    return section("suite-columns", "Columns", table(["column", "kind", "role", "bins",
                                                      "notes"], rows, css="wide",
                                                     numeric=[3]))
