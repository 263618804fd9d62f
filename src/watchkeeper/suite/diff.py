"""What a new suite changes compared with an old one: columns, roles, monitors, thresholds.

Used by ``watchkeeper diff OLD NEW`` and printed by ``watchkeeper deploy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from watchkeeper.monitors.drift import FeatureDrift
from watchkeeper.profiles.segments import plain_schema
from watchkeeper.suite.core import Suite
from watchkeeper.suite.segments import runs_per_segment, segment_monitor

#: Window size at which thresholds of the two suites are compared.
COMPARE_ROWS = 10_000


@dataclass
class SuiteDiff:
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    roles_changed: list[dict[str, Any]] = field(default_factory=list)
    monitors_added: list[str] = field(default_factory=list)
    monitors_removed: list[str] = field(default_factory=list)
    thresholds_moved: list[dict[str, Any]] = field(default_factory=list)
    settings_changed: list[dict[str, Any]] = field(default_factory=list)
    reference_rows: tuple[int, int] = (0, 0)
    #: Segmentations (``region``, ``plan*age``) and segment values (``region=west``).
    segments_added: list[str] = field(default_factory=list)
    segments_removed: list[str] = field(default_factory=list)
    segment_values_added: list[str] = field(default_factory=list)
    segment_values_removed: list[str] = field(default_factory=list)
    #: Segment values judged in one suite only (reference rows crossed ``min_rows``).
    segments_judged: list[dict[str, Any]] = field(default_factory=list)
    #: Segment drift thresholds that moved, as ``thresholds_moved`` plus ``segment``.
    segment_thresholds_moved: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any((self.columns_added, self.columns_removed, self.roles_changed,
                        self.monitors_added, self.monitors_removed, self.thresholds_moved,
                        self.settings_changed, self.segments_added, self.segments_removed,
                        self.segment_values_added, self.segment_values_removed,
                        self.segments_judged, self.segment_thresholds_moved))

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_rows": {"old": self.reference_rows[0], "new": self.reference_rows[1]},
            "columns_added": self.columns_added, "columns_removed": self.columns_removed,
            "roles_changed": self.roles_changed, "monitors_added": self.monitors_added,
            "monitors_removed": self.monitors_removed,
            "thresholds_moved": self.thresholds_moved,
            "settings_changed": self.settings_changed,
            "segments_added": self.segments_added, "segments_removed": self.segments_removed,
            "segment_values_added": self.segment_values_added,
            "segment_values_removed": self.segment_values_removed,
            "segments_judged": self.segments_judged,
            "segment_thresholds_moved": self.segment_thresholds_moved,
        }

    def to_text(self) -> str:
        old, new = self.reference_rows
        lines = [f"reference rows {old} → {new}"]
        if self.empty:
            return "\n".join([*lines, "no changes to columns, roles, monitors or thresholds"])
        for title, items in (("columns added", self.columns_added),
                             ("columns removed", self.columns_removed),
                             ("monitors added", self.monitors_added),
                             ("monitors removed", self.monitors_removed),
                             ("segments added", self.segments_added),
                             ("segments removed", self.segments_removed),
                             ("segment values added", self.segment_values_added),
                             ("segment values removed", self.segment_values_removed)):
            if items:
                lines.append(f"{title} ({len(items)}): {', '.join(items)}")
        for r in self.roles_changed:
            lines.append(f"column {r['column']}: {r['field']} {r['old']} → {r['new']}")
        for s in self.settings_changed:
            lines.append(f"{s['monitor']}: {s['setting']} {s['old']} → {s['new']}")
        if self.thresholds_moved:
            lines.append(f"calibrated thresholds moved (at {COMPARE_ROWS} rows per window; "
                         "effective = after the min-effect floor):")
            for t in self.thresholds_moved:
                lines.append(f"  {t['monitor']}: {t['old']:.4g} → {t['new']:.4g}, effective "
                             f"{t['effective_old']:.4g} → {t['effective_new']:.4g} "
                             f"({'; '.join(t['why'])})")
        for j in self.segments_judged:
            lines.append(f"segment {j['segment']}: reference rows {j['old']} → {j['new']}, "
                         f"{'now judged' if j['judged'] else 'no longer judged'} "
                         f"(min_rows {j['min_rows']})")
        if self.segment_thresholds_moved:
            lines.append(f"segment drift thresholds moved (at {COMPARE_ROWS} rows per window):")
            for t in self.segment_thresholds_moved:
                lines.append(f"  {t['segment']}: {t['monitor']}: {t['old']:.4g} → "
                             f"{t['new']:.4g} ({'; '.join(t['why'])})")
        return "\n".join(lines)


def diff(old: Suite, new: Suite) -> SuiteDiff:
    """Compare two suites; explain why thresholds moved."""
    out = SuiteDiff(reference_rows=(old.reference.rows, new.reference.rows))
    old_cols, new_cols = old.schema.columns, new.schema.columns
    out.columns_added = [c for c in new_cols if c not in old_cols]
    out.columns_removed = [c for c in old_cols if c not in new_cols]
    for name in (c for c in new_cols if c in old_cols):
        old_col, new_col = old_cols[name], new_cols[name]
        for attr in ("kind", "role", "sensitive"):
            if getattr(old_col, attr) != getattr(new_col, attr):
                out.roles_changed.append({"column": name, "field": attr,
                                          "old": str(getattr(old_col, attr)),
                                          "new": str(getattr(new_col, attr))})
    old_task, new_task = old.schema.task, new.schema.task
    for setting in ("positive", "prediction_labels"):
        was = getattr(old_task, setting) if old_task is not None else None
        now = getattr(new_task, setting) if new_task is not None else None
        if was != now:
            out.settings_changed.append({"monitor": "task", "setting": setting, "old": was,
                                         "new": now})
    for family, weight in new.weights.items():
        if old.weights.get(family) != weight:
            out.settings_changed.append({"monitor": "budget", "setting": family,
                                         "old": old.weights.get(family), "new": weight})
    old_rules = {r.name: r.expr for r in old.schema.rules}
    new_rules = {r.name: r.expr for r in new.schema.rules}
    for name in dict.fromkeys([*old_rules, *new_rules]):
        if old_rules.get(name) != new_rules.get(name):
            out.settings_changed.append({"monitor": "rules", "setting": name,
                                         "old": old_rules.get(name),
                                         "new": new_rules.get(name)})
    old_mon = {m.id: m for m in old.monitors}
    new_mon = {m.id: m for m in new.monitors}
    out.monitors_added = [k for k in new_mon if k not in old_mon]
    out.monitors_removed = [k for k in old_mon if k not in new_mon]
    for key in (k for k in new_mon if k in old_mon):
        a, b = old_mon[key], new_mon[key]
        for setting, value in b.settings.items():
            if a.settings.get(setting) != value:
                out.settings_changed.append({"monitor": key, "setting": setting,
                                             "old": a.settings.get(setting), "new": value})
        if isinstance(a, FeatureDrift) and isinstance(b, FeatureDrift):
            moved = _drift_threshold_move(key, a, b, old, new)
            if moved:
                out.thresholds_moved.append(moved)
    _diff_segments(out, old, new)
    return out


def _diff_segments(out: SuiteDiff, old: Suite, new: Suite) -> None:
    """Segmentations and values added or removed, the split of their budget, the values
    judged in one suite only and the segment drift thresholds that moved."""
    a, b = old.segments, new.segments
    old_by = {s.name: s for s in (a.by if a else [])}
    new_by = {s.name: s for s in (b.by if b else [])}
    out.segments_added = [k for k in new_by if k not in old_by]
    out.segments_removed = [k for k in old_by if k not in new_by]
    for name in (k for k in new_by if k in old_by):
        was, now = old_by[name].labels, new_by[name].labels
        out.segment_values_added += [v for v in now if v not in was]
        out.segment_values_removed += [v for v in was if v not in now]
    if a is None or b is None:
        return
    for setting in ("share", "min_rows"):
        if getattr(a, setting) != getattr(b, setting):
            out.settings_changed.append({"monitor": "segments", "setting": setting,
                                         "old": getattr(a, setting),
                                         "new": getattr(b, setting)})
    old_judged, new_judged = set(a.judged(old.reference)), set(b.judged(new.reference))
    labels = [v for name in new_by if name in old_by for v in new_by[name].labels
              if v in old_by[name].labels]
    for label in labels:
        if (label in old_judged) != (label in new_judged):
            out.segments_judged.append({
                "segment": label, "judged": label in new_judged, "min_rows": b.min_rows,
                "old": _rows(old, label), "new": _rows(new, label)})
    old_mon = {m.id: m for m in old.monitors}
    drift: list[tuple[FeatureDrift, FeatureDrift]] = []
    for m in new.monitors:
        before = old_mon.get(m.id)
        if (isinstance(m, FeatureDrift) and runs_per_segment(m) and m.enabled
                and isinstance(before, FeatureDrift) and before.enabled):
            drift.append((m, before))
    both = [(v, set(new_by[name].columns)) for name in new_by if name in old_by
            for v in new_by[name].labels if v in old_judged and v in new_judged]
    for label, own in both:
        for m_new, m_old in drift:
            if m_new.column is None or m_new.column in own:
                continue
            t_old = _segment_threshold(old, m_old, label)
            t_new = _segment_threshold(new, m_new, label)
            if abs(t_new - t_old) <= 1e-4 * max(t_old, 1e-12):
                continue
            why = []
            if _rows(old, label) != _rows(new, label):
                why.append(f"segment reference rows {_rows(old, label)} → {_rows(new, label)}")
            if a.segment_alpha(m_old, old.reference) != b.segment_alpha(m_new, new.reference):
                why.append(f"segment alpha {a.segment_alpha(m_old, old.reference):.3g} → "
                           f"{b.segment_alpha(m_new, new.reference):.3g}")
            if m_old.spec.edges != m_new.spec.edges or \
                    m_old.spec.categories != m_new.spec.categories:
                why.append("new reference quantiles/levels")
            out.segment_thresholds_moved.append({
                "segment": label, "monitor": m_new.id, "old": t_old, "new": t_new,
                "why": why or ["recalibrated"]})


def _rows(suite: Suite, label: str) -> int:
    ref = suite.reference.segments.get(label)
    return 0 if ref is None else ref.rows


def _segment_threshold(suite: Suite, m: FeatureDrift, label: str) -> float:
    """The calibrated drift threshold of monitor ``m`` on segment value ``label`` at
    ``COMPARE_ROWS`` rows (before the min-effect floor), from the suite's segment null."""
    segments = suite.segments
    assert segments is not None
    ref = suite.reference.segments[label]
    inner = plain_schema(suite.schema)
    alpha = segments.segment_alpha(m, suite.reference)
    copy = segment_monitor(m, alpha, ref, inner, segments.null(m, label, ref, inner))
    assert isinstance(copy, FeatureDrift)
    return copy.null_fit(COMPARE_ROWS, ref).threshold(
        alpha, float(copy.calibration.get("overdispersion", 1.0)))


def _drift_threshold_move(key: str, a: FeatureDrift, b: FeatureDrift, old: Suite,
                          new: Suite) -> dict[str, Any] | None:
    if "null" not in a.calibration or "null" not in b.calibration:
        return None
    # the calibrated threshold itself, before the min-effect floor (which may hide it)
    t_old = a.null_fit(COMPARE_ROWS, old.reference).threshold(
        a.alpha, float(a.calibration.get("overdispersion", 1.0)))
    t_new = b.null_fit(COMPARE_ROWS, new.reference).threshold(
        b.alpha, float(b.calibration.get("overdispersion", 1.0)))
    if abs(t_new - t_old) <= 1e-4 * max(t_old, 1e-12):
        return None
    why = []
    if a.spec.edges != b.spec.edges or a.spec.categories != b.spec.categories:
        why.append("new reference quantiles/levels")
    if a.calibration.get("reference_rows") != b.calibration.get("reference_rows"):
        why.append(f"reference rows {a.calibration.get('reference_rows')} → "
                   f"{b.calibration.get('reference_rows')}")
    if a.alpha != b.alpha:
        alpha, n = new.family_alpha().get(b.family, (0.0, 0))
        why.append(f"alpha {a.alpha:.3g} → {b.alpha:.3g}: the {b.family} family's α "
                   f"{alpha:.3g} split over {n} monitors")
    if a.calibration.get("overdispersion") != b.calibration.get("overdispersion"):
        why.append(f"overdispersion {a.calibration.get('overdispersion')} → "
                   f"{b.calibration.get('overdispersion')}")
    if a.settings != b.settings:
        why.append("settings edited")
    return {"monitor": key, "old": t_old, "new": t_new, "why": why or ["recalibrated"],
            "effective_old": a.thresholds(COMPARE_ROWS, old.reference)[0],
            "effective_new": b.thresholds(COMPARE_ROWS, new.reference)[0]}
