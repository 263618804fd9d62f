"""Multivariate drift: have the inputs changed how they move together?

The suite's :class:`~watchkeeper.baseline.multivariate.JointModel` scores every row by its
reconstruction error from the reference's principal components; the profile keeps the
scores' bins. :class:`MultivariateDrift` judges those bins exactly as :class:`FeatureDrift`
judges a column's (the same resampled null, chunk overdispersion and share of the budget),
seeing them as one numeric column, ``(joint)``. Its evidence names the column pairs whose
joint distribution moved most beyond what their own marginals explain.

A monitor of a declared column group (``init(multivariate_groups={"name": [...]})``) has
the group's name as its ``column`` and judges the group's own model the same way; its
findings carry the group (``evidence.group``, metric ``reconstruction_error:NAME``) and its
measures go under ``(joint:NAME)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.multivariate import JointModel, tally_keys
from watchkeeper.baseline.schema import Column, Kind, Role, Schema
from watchkeeper.errors import SuiteError
from watchkeeper.monitors.base import Family, Finding, Monitor, ReferenceData
from watchkeeper.monitors.drift import FeatureDrift
from watchkeeper.profiles.core import ColumnProfile, Profile
from watchkeeper.stats.distance import js_distance

#: The name the per-row score goes by when judged as a column (and in ``metrics.drift``).
JOINT = "(joint)"
#: Pairs named in a finding's evidence.
PAIRS_NAMED = 3


def joint_name(group: str | None = None) -> str:
    """The name the per-row score of the suite's model (or of a group's) is judged under."""
    return JOINT if group is None else f"(joint:{group})"


def _view(window: Profile, group: str | None = None) -> Profile:
    """A window as one numeric column: its rows per score bin."""
    bins = window.joint.get(tally_keys(group)[0])
    columns = {} if bins is None else {
        joint_name(group): ColumnProfile(count=window.rows,
                                         bins=np.asarray(bins, dtype=np.int64))}
    return Profile(rows=window.rows, start=window.start, end=window.end, columns=columns)


def pair_changes(model: JointModel, window: Profile, reference: Profile,
                 group: str | None = None) -> list[tuple[str, float]]:
    """Tracked column pairs by how far the window's coarse co-occurrence is from the
    reference's, once the reference table is fitted to the window's own marginals (so a
    pair moves only when its joint distribution changed, not one of its columns): the
    Jensen–Shannon distance, largest first."""
    key = tally_keys(group)[1]
    cur, ref = window.joint.get(key), reference.joint.get(key)
    if cur is None or ref is None or len(cur) != len(model.pairs) or len(ref) != len(cur):
        return []
    names = model.columns
    out = []
    for (a, b), w, r in zip(model.pairs, cur, ref, strict=True):
        if w.sum() < 30 or r.sum() < 30:
            continue
        expected = _fit_margins(np.asarray(r, dtype=float) + 0.5, w.sum(axis=1), w.sum(axis=0))
        out.append((f"{names[a]} × {names[b]}", float(js_distance(expected.ravel(), w.ravel()))))
    return sorted(out, key=lambda kv: -kv[1])


def _fit_margins(table: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 rounds: int = 50) -> np.ndarray:
    """Iterative proportional fitting: ``table`` rescaled to the given margins, keeping its
    odds ratios (its dependence)."""
    out = table.copy()
    for _ in range(rounds):
        out *= (rows / np.maximum(out.sum(axis=1), 1e-12))[:, None]
        out *= (cols / np.maximum(out.sum(axis=0), 1e-12))[None, :]
    return out


class MultivariateDrift(Monitor):
    """Drift of the inputs' joint distribution: the calibrated Jensen–Shannon distance
    between the window's bins of per-row PCA reconstruction error and the reference's.
    A correlation that breaks while every column keeps its own distribution moves it."""

    type = "multivariate_drift"
    family = Family.DRIFT
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.03, "critical_effect": 0.1,
                                        "min_rows": 100}

    @classmethod
    def knows_column(cls, schema: Schema, name: str) -> bool:
        return name in schema.multivariate_groups  # a declared group, not a column

    @property
    def group(self) -> str | None:
        """The declared column group judged, or None for the suite's own model."""
        return self.column

    def model(self) -> JointModel:
        schema = self.bound_schema()
        model = schema.multivariate if self.group is None else \
            schema.multivariate_groups.get(self.group)
        if model is None:
            raise SuiteError(self.id, "needs the suite's multivariate model, and the suite "
                                      "has none; remove the monitor, or re-run init()")
        return model

    def part(self) -> FeatureDrift:
        """The :class:`FeatureDrift` that judges the score bins, with this monitor's α and
        calibration."""
        name = joint_name(self.group)
        spec = Column(name, Kind.NUMERIC, Role.FEATURE, edges=list(self.model().error_edges))
        m = FeatureDrift(name, alpha=self.alpha, calibration=self.calibration,
                         **self.settings)
        m.bind(Schema({name: spec}))
        return m

    def calibrate(self, reference: ReferenceData) -> None:
        model = self.model()
        error, _ = model.scores(reference.table)
        part = self.part()
        part.calibrate(ReferenceData(pa.table({joint_name(self.group): error}),
                                     part.bound_schema(), _view(reference.profile, self.group),
                                     reference.seed))
        self.calibration = {**part.calibration}
        if "null" in self.calibration:
            self.calibration["method"] = ("per-row reconstruction error of the suite's "
                                          "multivariate model, binned; then "
                                          + str(part.calibration["method"]))

    def not_evaluated(self, window: Profile) -> str | None:
        if tally_keys(self.group)[0] not in window.joint or "null" not in self.calibration:
            return None
        return self.part().not_evaluated(_view(window, self.group))

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        return self.assess(window, reference)[0]

    def assess(self, window: Profile, reference: Profile) -> tuple[list[Finding], dict[str, Any]]:
        key = tally_keys(self.group)[0]
        if key not in window.joint or key not in reference.joint:
            return [], {}
        found, measures = self.part().assess(_view(window, self.group),
                                             _view(reference, self.group))
        for entry in (measures.get("drift") or {}).values():
            entry["monitor"] = self.type
            if self.group is not None:
                entry["group"] = self.group
        for f in found:
            f.monitor, f.column, f.metric = self.type, None, "reconstruction_error"
            bins = window.joint[key]
            f.evidence = {"psi": f.evidence.get("psi"), "rows": f.evidence.get("rows"),
                          "beyond_reference_max": float(bins[-1] / max(bins.sum(), 1))}
            moved = pair_changes(self.model(), window, reference, self.group)[:PAIRS_NAMED]
            if moved:
                f.evidence["pairs"] = ", ".join(f"{p} ({d:.3f})" for p, d in moved)
                f.evidence["top_pair"], f.evidence["top_pair_change"] = moved[0]
            named = f"; most moved: {moved[0][0]}" if moved else ""
            whose = "the features'" if self.group is None else f"group {self.group}:"
            f.message = (f"{whose} joint distribution changed (reconstruction-error "
                         f"JS distance {f.value:.3f} > {f.threshold:.3f}){named}")
            if self.group is not None:  # one alert per group (the fingerprint has metric)
                f.metric = f"reconstruction_error:{self.group}"
                f.evidence["group"] = self.group
        return found, measures
