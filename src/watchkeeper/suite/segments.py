"""Segment evaluation: drift, quality and performance (realised and estimated) per segment
value, each segment against its own reference rows.

Budget, split hierarchically: every family with monitors that run per segment gives
``share`` of those monitors' α to the segments and keeps the rest for the whole
population; a monitor's segment α is split evenly over the segment values the
reference can judge (``min_rows`` rows or more). A segment finding is raised only when
the segment clears its own share, at its own window size, against the segment's own
reference rows (drift thresholds are fitted to the segment's reference bins, not to the
whole population's). A segment value with fewer than ``min_rows`` rows in the window or
in the reference, or unseen in the reference, is reported as not evaluated.

Evaluation reuses the monitors of the whole population: a segment's monitor is a copy
with the segment's α and the segment's reference values (see :func:`segment_monitor`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from watchkeeper.baseline.schema import Schema
from watchkeeper.baseline.segments import MIN_ROWS, SHARE, Segment
from watchkeeper.monitors import (
    EstimatedPerformance,
    FeatureDrift,
    Finding,
    InvalidRate,
    MissingRate,
    Monitor,
    OutOfRange,
    RealisedPerformance,
    UnseenCategory,
)
from watchkeeper.monitors.drift import CALIBRATION_ROWS
from watchkeeper.monitors.fairness import concentrated
from watchkeeper.monitors.performance import realised_metrics
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.segments import plain_schema
from watchkeeper.stats.calibration import fit_binned_null
from watchkeeper.suite import file as suitefile

#: Monitor classes that run per segment (their subclasses too: prediction and target drift).
SEGMENTED: tuple[type[Monitor], ...] = (
    FeatureDrift, MissingRate, InvalidRate, OutOfRange, UnseenCategory, RealisedPerformance,
    EstimatedPerformance,
)


def runs_per_segment(m: Monitor) -> bool:
    """Whether a monitor also runs on every segment (and so gives it part of its α)."""
    return m.calibrated and isinstance(m, SEGMENTED)


@dataclass
class Segments:
    """The suite's segments and how their budget is split (the suite file's ``segments``).

    >>> Segments([], share=0.5, min_rows=200).to_dict()
    {'share': 0.5, 'min_rows': 200, 'by': []}
    """

    by: list[Segment]
    share: float = SHARE
    min_rows: int = MIN_ROWS
    #: Drift nulls fitted to a segment's reference bins, by (segment value, column): the
    #: same grid of window sizes as a whole-population monitor's, fitted at init
    #: (:meth:`fit_nulls`) and kept in the suite file, so that a check fits none.
    nulls: dict[tuple[str, str], list[dict[str, float]]] = field(
        default_factory=dict, repr=False, compare=False)
    #: Nulls a check had to fit (a suite file from before they were kept, a monitor
    #: enabled since init): seeded, so the same in every process; not written.
    fitted_now: dict[tuple[str, str], list[dict[str, float]]] = field(
        default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"share": self.share, "min_rows": self.min_rows,
                               "by": [s.to_dict() for s in self.by]}
        if self.nulls:
            nulls: dict[str, dict[str, list[list[float]]]] = {}
            for (label, column), fits in sorted(self.nulls.items()):
                nulls.setdefault(label, {})[column] = [
                    [int(f["rows"]), float(f["scale"]), float(f["df"])] for f in fits]
            out["nulls"] = nulls
        return out

    def fit_nulls(self, monitors: list[Monitor], schema: Schema, reference: Profile) -> None:
        """Fit the drift null of every drift monitor that runs per segment on every segment
        value the reference can judge (at init: the suite file keeps them)."""
        inner = plain_schema(schema)
        judged = set(self.judged(reference))
        for segment in self.by:
            own = set(segment.columns)
            for label in segment.labels:
                if label not in judged:
                    continue
                ref = reference.segments[label]
                for m in monitors:
                    if (isinstance(m, FeatureDrift) and runs_per_segment(m) and m.enabled
                            and m.column is not None and m.column not in own):
                        self.nulls[(label, m.column)] = segment_nulls(
                            _probe(m, ref, inner), ref)

    def null(self, m: FeatureDrift, label: str, ref: Profile, inner: Schema
             ) -> list[dict[str, float]]:
        """The drift null of monitor ``m`` on segment value ``label``: kept since init, or
        fitted now (once per process)."""
        assert m.column is not None
        key = (label, m.column)
        if key in self.nulls:
            return self.nulls[key]
        if key not in self.fitted_now:
            self.fitted_now[key] = segment_nulls(_probe(m, ref, inner), ref)
        return self.fitted_now[key]

    def split(self, monitors: list[Monitor]) -> None:
        """Give ``share`` of the α of every monitor that runs per segment to the segments
        (after :func:`~watchkeeper.suite.generate.split_budget` gave each monitor its α)."""
        for m in monitors:
            if runs_per_segment(m):
                m.alpha *= 1.0 - self.share

    def judged(self, reference: Profile) -> list[str]:
        """The segment values the reference has ``min_rows`` rows of: the ones sharing α."""
        return [label for s in self.by for label in s.labels
                if label in reference.segments
                and reference.segments[label].rows >= self.min_rows]

    def segment_alpha(self, m: Monitor, reference: Profile) -> float:
        """α of monitor ``m`` on one segment value: its whole-population α holds
        ``1 − share`` of what the family gave it, the segments ``share``, split evenly."""
        n = max(len(self.judged(reference)), 1)
        return m.alpha * self.share / (1.0 - self.share) / n


def segment_monitor(m: Monitor, alpha: float, reference: Profile, schema: Schema,
                    nulls: list[dict[str, float]] | None = None) -> Monitor:
    """A copy of monitor ``m`` for one segment: α ``alpha``; a drift monitor's null fitted
    to the segment's reference bins (``nulls``, from :func:`segment_nulls`; the whole
    population's fits do not apply); a performance monitor compared with the segment's
    reference metrics."""
    calibration = dict(m.calibration)
    if isinstance(m, FeatureDrift) and "null" in calibration:
        calibration["null"] = nulls or []  # [] : fitted at the window's size when judged
    if isinstance(m, (RealisedPerformance, EstimatedPerformance)) and "reference" in calibration:
        task = m.bound_task()
        metrics = realised_metrics(reference.joint, task) if reference.joint else {}
        calibration["reference"] = {k: metrics[k] for k in calibration["reference"]
                                    if k in metrics and metrics[k] == metrics[k]}
        calibration["reference_rows"] = int(metrics.get("scored", metrics.get("labeled", 0)))
    copy = type(m)(m.column, alpha=alpha, calibration=calibration, **m.settings)
    copy.bind(schema)
    return copy


def _probe(m: FeatureDrift, ref: Profile, inner: Schema) -> FeatureDrift:
    probe = segment_monitor(m, m.alpha, ref, inner)
    assert isinstance(probe, FeatureDrift)
    return probe


def segment_nulls(m: FeatureDrift, reference: Profile) -> list[dict[str, float]]:
    """The null fits of drift monitor ``m`` on a segment's reference bins at the window
    sizes a whole-population monitor is calibrated at (seeded: the same in every
    process)."""
    p, n_ref = m._null_proportions(reference)
    fits = [fit_binned_null(p, n_ref, n, rng=np.random.default_rng([n, len(p), n_ref]))
            for n in CALIBRATION_ROWS]
    return [{"rows": f.rows, "scale": f.scale, "df": f.df} for f in fits]


def assess_segments(segments: Segments, monitors: list[Monitor], schema: Schema,
                    window: Profile, reference: Profile
                    ) -> tuple[list[Finding], dict[str, Any]]:
    """Findings and measures of one window's segments. Measures:
    ``{"segments": {label: {"rows", "reference_rows", "status", "reason"?, "drift"?,
    "realised"?, "estimated"?}}}``, ``drift`` the column nearest its threshold; a segment
    value not evaluated has ``status: not_evaluated`` and the ``reason``."""
    found: list[Finding] = []
    measures: dict[str, Any] = {}
    inner = plain_schema(schema)
    runs = [m for m in monitors if m.enabled and runs_per_segment(m)]
    for segment in segments.by:
        own = set(segment.columns)
        for label in segment.labels:
            current = window.segments.get(label)
            if current is None or current.rows == 0:
                continue
            ref = reference.segments.get(label)
            n_ref = 0 if ref is None else ref.rows
            entry: dict[str, Any] = {"rows": current.rows, "reference_rows": n_ref}
            measures[label] = entry
            reason = _too_small(current.rows, n_ref, segments.min_rows)
            if reason is not None:
                entry.update(status="not_evaluated", reason=reason)
                continue
            assert ref is not None
            here: list[Finding] = []
            for m in runs:
                if m.column is not None and m.column in own:
                    continue  # a segment's own column is constant in it
                nulls = None
                if isinstance(m, FeatureDrift) and m.column is not None:
                    nulls = segments.null(m, label, ref, inner)
                copy = segment_monitor(m, segments.segment_alpha(m, reference), ref, inner,
                                       nulls)
                findings, measured = copy.assess(current, ref)
                for kind in ("realised", "estimated"):
                    if isinstance(measured.get(kind), dict):
                        entry[kind] = {k: v for k, v in measured[kind].items()
                                      if k in copy.calibration.get("reference", {})
                                      and isinstance(v, (int, float)) and math.isfinite(v)}
                for column, d in (measured.get("drift") or {}).items():
                    worst = entry.get("drift")
                    if worst is None or _ratio(d) > _ratio(worst):
                        entry["drift"] = {"column": column, "js": d["js"],
                                          "threshold": d["threshold"]}
                here += findings
            for f in here:
                f.segment = label
                f.message = f"{label}: {f.message}"
                f.evidence["segment_rows"] = current.rows
            entry["status"] = "alert" if here else "ok"
            found += here
    return most_concentrated(found), ({"segments": measures} if measures else {})


def most_concentrated(found: list[Finding]) -> list[Finding]:
    """One change seen in overlapping segments of different segmentations (the rows of
    ``CIT=5`` are also in ``MIL=0``…) by the same monitor (of the same column; for
    performance, whichever metric) is reported where it is most concentrated (the largest
    value over threshold), the others listed with it as ``also_affected``; as fairness
    does for overlapping groups."""
    kept = concentrated(sorted(found, key=lambda f: -_excess(f)),
                        lambda k, f: (k.monitor, k.column) == (f.monitor, f.column))
    return [f for f in found if f in kept]


def _excess(f: Finding) -> float:
    """How far past its threshold a finding is, relative to it."""
    return abs(f.value - f.threshold) / max(abs(f.threshold), 1e-12)


def _ratio(drift: dict[str, Any]) -> float:
    return float(drift["js"]) / max(float(drift["threshold"]), 1e-12)


def _too_small(rows: int, reference_rows: int, floor: int) -> str | None:
    if reference_rows == 0:
        return f"unseen in the reference ({rows} rows)"
    if rows < floor:
        return f"n < {floor}"
    if reference_rows < floor:
        return f"reference n < {floor} ({reference_rows} rows)"
    return None


def segments_from_fields(top: suitefile.Fields, schema: Schema) -> Segments:
    """The suite file's ``segments`` (also set on the schema, whose profiles need them)."""
    f = top.mapping("segments")
    by = []
    for i, raw in enumerate(f.items("by", [])):
        if not isinstance(raw, dict) or not 1 <= len(raw) <= 2:
            raise f.error(f"by[{i}]", "a segment maps one column, or two, to its values")
        try:
            segment = Segment.from_dict(raw)
        except (TypeError, ValueError, AttributeError) as exc:
            raise f.error(f"by[{i}]", f"malformed ({exc})") from None
        for c in segment.columns:
            if c not in schema.columns:
                raise f.error(f"by[{i}].{c}", f"no column {c!r} in columns")
        by.append(segment)
    schema.segments = by
    return Segments(by, share=f.number("share", SHARE, 0.0, 1.0, open_interval=True),
                    min_rows=f.integer("min_rows", MIN_ROWS), nulls=_nulls(f))


def _nulls(f: suitefile.Fields) -> dict[tuple[str, str], list[dict[str, float]]]:
    """The suite file's ``segments.nulls``: per segment value and column, the drift null
    fits ``[rows, scale, df]`` by window size."""
    out: dict[tuple[str, str], list[dict[str, float]]] = {}
    nulls = f.mapping("nulls", {})
    for label in nulls.data:
        columns = nulls.mapping(str(label))
        for column in columns.data:
            fits = columns.items(str(column))
            rows = []
            for i, fit in enumerate(fits):
                if (not isinstance(fit, list) or len(fit) != 3
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   and math.isfinite(v) for v in fit)):
                    raise columns.error(f"{column}[{i}]", "expected [rows, scale, df], "
                                                          f"got {fit!r}")
                rows.append({"rows": int(fit[0]), "scale": float(fit[1]),
                             "df": float(fit[2])})
            out[(str(label), str(column))] = rows
    return out
