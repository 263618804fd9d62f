"""Text: a free-text column watched through its descriptors (length, token count, non-ASCII
share, out-of-vocabulary rate, empty), each judged by the numeric machinery as a column of
its own (``review.oov_rate``; see :mod:`watchkeeper.profiles.text`).

One monitor per text column and question: :class:`TextDrift` runs a :class:`FeatureDrift`
on every descriptor, :class:`TextRange` an :class:`OutOfRange`; the monitor's α is split
evenly over its descriptors, and each finding names the text column (``column``) and the
descriptor (``metric``, and ``descriptor`` in the evidence).
"""

from __future__ import annotations

from typing import Any, ClassVar

from watchkeeper.baseline.text import RANGED
from watchkeeper.monitors.base import Family, Finding, Monitor, ReferenceData, absent
from watchkeeper.monitors.drift import FeatureDrift
from watchkeeper.monitors.quality import OutOfRange
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.text import (
    descriptor_name,
    descriptor_schema,
    descriptor_table,
    descriptor_window,
)


class _Descriptors(Monitor):
    """Runs ``part`` (a one-column monitor class) on each descriptor of a text column."""

    part: ClassVar[type[Monitor]]
    #: Descriptors judged (None: every descriptor the plan bins).
    only: ClassVar[tuple[str, ...] | None] = None

    def descriptors(self) -> list[str]:
        plan = self.spec.text
        if plan is None:
            return []
        return [d for d in plan.edges if self.only is None or d in self.only]

    def parts(self) -> dict[str, Monitor]:
        """One bound ``part`` monitor per descriptor, with its share of α and calibration."""
        names = self.descriptors()
        if not names:
            return {}
        schema = descriptor_schema(self.spec)
        stored = self.calibration.get("descriptors") or {}
        out = {}
        for d in names:
            m = self.part(descriptor_name(self.column_name, d), alpha=self.alpha / len(names),
                          calibration=stored.get(d), **self.settings)
            m.bind(schema)
            out[d] = m
        return out

    def calibrate(self, reference: ReferenceData) -> None:
        parts = self.parts()
        if not parts:
            self.calibration = {"skipped": f"{self.column} has no text descriptors"}
            return
        if self.part.calibrate is Monitor.calibrate:
            return
        schema = next(iter(parts.values())).bound_schema()
        table = descriptor_table(reference.table.column(self.column_name), self.spec)
        view = ReferenceData(table, schema, descriptor_window(reference.profile,
                                                              self.column_name),
                             reference.seed)
        found = {}
        for d, m in parts.items():
            m.calibrate(view)
            found[d] = m.calibration
        self.calibration = {"method": f"{self.part.type} per descriptor, α split evenly",
                            "descriptors": found}

    def not_evaluated(self, window: Profile) -> str | None:
        return f"{self.column} missing" if absent(window, [self.column]) else None

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        return self.assess(window, reference)[0]

    def assess(self, window: Profile, reference: Profile) -> tuple[list[Finding], dict[str, Any]]:
        if self.column is None or self.not_evaluated(window):
            return [], {}
        view = descriptor_window(window, self.column)
        ref_view = descriptor_window(reference, self.column)
        found: list[Finding] = []
        measures: dict[str, Any] = {}
        for d, m in self.parts().items():
            name = descriptor_name(self.column, d)
            if name not in view.columns or name not in ref_view.columns:
                continue
            findings, measured = m.assess(view, ref_view)
            for f in findings:
                f.monitor, f.column, f.metric = self.type, self.column, d
                f.evidence = {"descriptor": d, **f.evidence}
                ref_m, cur_m = ref_view.columns[name].moments, view.columns[name].moments
                if ref_m.n and cur_m.n:
                    f.evidence["reference_mean"] = ref_m.mean
                    f.evidence["window_mean"] = cur_m.mean
                f.message = f.message.replace(name, f"{self.column}'s {d}")
            found += findings
            for key, value in measured.items():
                if isinstance(value, dict):
                    for k, entry in value.items():
                        tagged = {**entry, "monitor": self.type} if isinstance(entry, dict) \
                            else entry
                        measures.setdefault(key, {})[k] = tagged
        return found, measures


class TextDrift(_Descriptors):
    """Drift of a text column's descriptors: the calibrated Jensen–Shannon distance of
    :class:`FeatureDrift` on each descriptor's bins."""

    type = "text_drift"
    family = Family.DRIFT
    part = FeatureDrift
    params: ClassVar[dict[str, Any]] = dict(FeatureDrift.params)


class TextRange(_Descriptors):
    """Share of a text column's rows whose descriptors fall outside their reference range
    (longer or shorter texts, more tokens, more non-ASCII or unknown words than any
    reference row), by :class:`OutOfRange` on each descriptor."""

    type = "text_range"
    family = Family.QUALITY
    part = OutOfRange
    only = RANGED
    params: ClassVar[dict[str, Any]] = dict(OutOfRange.params)
