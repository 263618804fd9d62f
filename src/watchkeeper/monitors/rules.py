"""Declarative rules: the share of rows that violate each of the suite's rules.

The rules themselves (``rules:`` in the suite file, parsed by
:mod:`watchkeeper.baseline.expressions`) are tallied by the profile: per rule, the rows
that violate it, the rows checked and the rows it could not be checked on. The counts
add up, so the monitor judges merged profiles as it judges the rows.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from watchkeeper.baseline.expressions import TALLY_FIELDS, Rule
from watchkeeper.monitors.base import (
    Family,
    Finding,
    Monitor,
    ReferenceData,
    Severity,
    absent,
    severity_for,
)
from watchkeeper.profiles.core import Profile


def rule_counts(window: Profile, rule: Rule) -> tuple[int, int, int]:
    """(violated, checked, unchecked) rows of ``rule`` in a window; zeros when the window
    has no tally of it (an empty window, a profile made before the rule existed)."""
    tally = window.joint.get(rule.key)
    if tally is None or np.shape(tally) != (len(TALLY_FIELDS),):
        return 0, 0, 0
    violated, checked, unchecked = (int(v) for v in tally)
    return violated, checked, unchecked


class RuleViolations(Monitor):
    """Per rule, the share of checked rows that violate it, against the reference's own
    violation rate.

    Threshold: the same exact-conservative binomial bound as the other rate monitors
    (missing rate, invalid rate) at the monitor's α split evenly over its rules, and at
    least ``min_effect`` above the reference rate (``critical_effect`` for critical). A
    rule that names a column the window lacks is reported as not evaluated (a quality
    finding), never an error."""

    type = "rules"
    family = Family.QUALITY
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.01, "critical_effect": 0.1}

    @property
    def rules(self) -> list[Rule]:
        return self.bound_schema().rules

    def calibrate(self, reference: ReferenceData) -> None:
        counts = {r.name: dict(zip(TALLY_FIELDS, rule_counts(reference.profile, r),
                                   strict=True)) for r in self.rules}
        self.calibration = {
            "method": "binomial bound on each rule's violation rate in the reference "
                      "(reference uncertainty included), α split evenly over the rules",
            "reference": counts,
        }

    def _reference(self, rule: Rule) -> tuple[int, int] | None:
        ref = (self.calibration.get("reference") or {}).get(rule.name)
        if not isinstance(ref, dict):
            return None
        return int(ref.get("violated", 0)), int(ref.get("checked", 0))

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        calibrated = [r for r in self.rules if self._reference(r) is not None]
        alpha = self.alpha / max(len(calibrated), 1)
        found: list[Finding] = []
        for rule in self.rules:
            missing = absent(window, sorted(rule.columns))
            if missing:
                found.append(self._not_evaluated(rule, missing, window.rows))
                continue
            ref = self._reference(rule)
            violated, checked, _ = rule_counts(window, rule)
            if ref is None or checked <= 0:
                continue
            base, warning, critical = self.rate_lines(*ref, checked, alpha=alpha)
            rate = violated / checked
            severity = severity_for(rate, warning, critical)
            if severity is None:
                continue
            f = self.finding(rate, warning, severity,
                             f"rule {rule.name} ({rule.expr}) is violated by {rate:.2%} of "
                             f"rows, {base:.2%} in the reference",
                             monitor="rule", reference_rate=base, count=violated,
                             rows=checked)
            f.metric = rule.name
            found.append(f)
        return found

    def _not_evaluated(self, rule: Rule, missing: list[str], rows: int) -> Finding:
        f = self.finding(1.0, 0.0, Severity.WARNING,
                         f"rule {rule.name} could not be checked: column "
                         f"{', '.join(missing)} missing from the window",
                         monitor="rule_not_evaluated", columns=", ".join(missing), rows=rows)
        f.metric = rule.name
        f.column = missing[0]
        return f

    def measure(self, window: Profile) -> dict[str, Any]:
        out = {}
        for rule in self.rules:
            violated, checked, unchecked = rule_counts(window, rule)
            out[rule.name] = {"violated": violated, "checked": checked,
                              "unchecked": unchecked,
                              "rate": violated / checked if checked else None}
        return {"rules": out} if out else {}
