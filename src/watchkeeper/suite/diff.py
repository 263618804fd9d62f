"""What a new suite changes compared with an old one: columns, roles, monitors, thresholds.

Used by ``watchkeeper diff OLD NEW`` and printed by ``watchkeeper deploy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from watchkeeper.monitors.drift import FeatureDrift
from watchkeeper.suite.core import Suite

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

    @property
    def empty(self) -> bool:
        return not any((self.columns_added, self.columns_removed, self.roles_changed,
                        self.monitors_added, self.monitors_removed, self.thresholds_moved,
                        self.settings_changed))

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_rows": {"old": self.reference_rows[0], "new": self.reference_rows[1]},
            "columns_added": self.columns_added, "columns_removed": self.columns_removed,
            "roles_changed": self.roles_changed, "monitors_added": self.monitors_added,
            "monitors_removed": self.monitors_removed,
            "thresholds_moved": self.thresholds_moved,
            "settings_changed": self.settings_changed,
        }

    def to_text(self) -> str:
        old, new = self.reference_rows
        lines = [f"reference rows {old} → {new}"]
        if self.empty:
            return "\n".join([*lines, "no changes to columns, roles, monitors or thresholds"])
        for title, items in (("columns added", self.columns_added),
                             ("columns removed", self.columns_removed),
                             ("monitors added", self.monitors_added),
                             ("monitors removed", self.monitors_removed)):
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
    return out


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
