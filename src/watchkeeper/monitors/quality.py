"""Data quality: schema changes, missing and invalid values, out-of-range values,
unseen categories, and volume.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from watchkeeper.baseline.schema import Kind, Role
from watchkeeper.io.values import epoch_seconds
from watchkeeper.monitors.base import (
    Family,
    Finding,
    Monitor,
    ReferenceData,
    Severity,
    severity_for,
)
from watchkeeper.profiles.column import ColumnProfile
from watchkeeper.profiles.core import Profile
from watchkeeper.stats.calibration import count_interval

#: Roles whose columns must be present in every window (labels and ids may come later).
REQUIRED_ROLES = (Role.FEATURE, Role.PREDICTION, Role.PROBA, Role.TIMESTAMP, Role.CLIENT)
#: New columns named in a ``new_column`` finding; the rest are counted.
NEW_COLUMNS_LISTED = 20
#: Type classes that a column of each kind may arrive as without it being a type change.
COMPATIBLE = {
    Kind.NUMERIC: {"numeric", "null"},
    Kind.CATEGORICAL: {"numeric", "string", "boolean", "null"},
    Kind.BOOLEAN: {"boolean", "numeric", "null"},
    Kind.DATETIME: {"datetime", "string", "null"},
    Kind.TEXT: {"string", "numeric", "null"},
    Kind.EMBEDDING: {"vector", "numeric", "null"},
}


class SchemaChange(Monitor):
    """Missing columns, new columns and type changes. Deterministic: no false alerts."""

    type = "schema"
    family = Family.QUALITY
    calibrated = False

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        if window.rows == 0:
            return []
        found = []
        for spec in self.bound_schema():
            if spec.role not in REQUIRED_ROLES:
                continue
            cp = window.columns.get(spec.name, ColumnProfile())
            role = spec.role.value  # a missing prediction inhibits what is computed from it
            if cp.count < window.rows:
                share = 1.0 - cp.count / window.rows
                found.append(self._at(spec.name, share, Severity.CRITICAL,
                                      f"column {spec.name} is missing from {share:.1%} of rows",
                                      "missing_column", role=role))
            allowed = COMPATIBLE[spec.kind] | {spec.dtype}
            odd = {t: n for t, n in cp.types.items() if t not in allowed and n}
            if odd:
                seen = ", ".join(sorted(odd))
                share = sum(odd.values()) / max(cp.count, 1)
                found.append(self._at(spec.name, share, Severity.CRITICAL,
                                      f"column {spec.name} changed type: {spec.dtype} → {seen}",
                                      "type_change", expected=spec.dtype, seen=seen, role=role))
        if window.unexpected:
            found.append(self._new_columns(window))
        return found

    def _new_columns(self, window: Profile) -> Finding:
        """One finding for all the window's columns the suite does not know (a wide row can
        bring thousands): how many, and the first ``NEW_COLUMNS_LISTED`` of them by name."""
        names = sorted(window.unexpected)
        listed = ", ".join(names[:NEW_COLUMNS_LISTED])
        more = len(names) - NEW_COLUMNS_LISTED
        listed += f" and {more} more" if more > 0 else ""
        rows = max(window.unexpected.values())
        what = f"new column {listed} is" if len(names) == 1 else \
            f"{len(names)} new columns ({listed}) are"
        f = self.finding(len(names), 0.0, Severity.WARNING, f"{what} not in the suite",
                         monitor="new_column", columns=listed, count=len(names),
                         share=rows / window.rows)
        f.column = names[0] if len(names) == 1 else None
        return f

    def _at(self, column: str, value: float, severity: Severity, message: str, kind: str,
            **evidence: Any) -> Finding:
        f = self.finding(value, 0.0, severity, message, monitor=kind, **evidence)
        f.column = column
        return f


class RateMonitor(Monitor):
    """Share of a window's values with some property, against its reference share.

    Threshold: exact-conservative binomial bound (reference uncertainty included) at the
    monitor's α, and at least ``min_effect`` above the reference share.
    """

    family = Family.QUALITY
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.01, "critical_effect": 0.1}
    what = ""

    def events(self, column: ColumnProfile) -> tuple[int, int]:
        """(values with the property, values examined) in a column profile."""
        raise NotImplementedError

    def reference_events(self, column: ColumnProfile) -> tuple[int, int]:
        return self.events(column)

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        if self.column is None:
            return []
        current = window.columns.get(self.column)
        ref = reference.columns.get(self.column)
        if current is None or ref is None:
            return []
        k, n = self.events(current)
        if n <= 0:
            return []
        k_ref, n_ref = self.reference_events(ref)
        base, warning, critical = self.rate_lines(k_ref, n_ref, n)
        value = k / n
        severity = severity_for(value, warning, critical)
        if severity is None:
            return []
        return [self.finding(
            value, warning, severity,
            f"{self.what} of {self.column} rose {base:.2%} → {value:.2%}",
            reference_rate=base, count=k, rows=n,
        )]


class MissingRate(RateMonitor):
    """Share of missing values (null, NaN)."""

    type = "missing_rate"
    what = "missing rate"

    def events(self, column: ColumnProfile) -> tuple[int, int]:
        return column.missing, column.count


class InvalidRate(RateMonitor):
    """Share of present values that are invalid (±inf, not a number, wrong type)."""

    type = "invalid_rate"
    what = "invalid-value rate"

    def events(self, column: ColumnProfile) -> tuple[int, int]:
        return column.invalid, column.count - column.missing


class OutOfRange(RateMonitor):
    """Share of values below the reference minimum or above the reference maximum."""

    type = "out_of_range"
    what = "out-of-range share"

    def events(self, column: ColumnProfile) -> tuple[int, int]:
        if column.bins is None:
            return 0, 0
        return int(column.bins[0] + column.bins[-1]), int(column.bins.sum())

    def reference_events(self, column: ColumnProfile) -> tuple[int, int]:
        # Exchangeability: a new value lands beyond the n reference values' range with
        # probability 2/(n+1); the two extremes play the role of the observed events.
        return 2, int(column.bins.sum()) if column.bins is not None else 0


class UnseenCategory(RateMonitor):
    """Share of values whose category never appeared in the reference."""

    type = "unseen_category"
    what = "unseen-category share"

    def events(self, column: ColumnProfile) -> tuple[int, int]:
        if column.bins is None:
            return 0, 0
        return int(column.bins[-1]), int(column.bins.sum())

    def reference_events(self, column: ColumnProfile) -> tuple[int, int]:
        # Good–Turing: the chance of a new level is about the share of levels seen once.
        if column.bins is None:
            return 0, 0
        return int(np.count_nonzero(column.bins[:-2] == 1)), int(column.bins.sum())


class Volume(Monitor):
    """Rows per window against the reference's rate, for windows cut by the timestamp."""

    type = "volume"
    family = Family.QUALITY
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.2}

    def calibrate(self, reference: ReferenceData) -> None:
        ts = epoch_seconds(reference.table.column(self.column))
        ts = ts[np.isfinite(ts)]
        if ts.size < 2 or ts.max() <= ts.min():
            self.calibration = {"skipped": "the reference timestamps span no time"}
            return
        span = ts.max() - ts.min()
        counts = np.histogram(ts, bins=20)[0]
        dispersion = float(counts.var(ddof=1) / counts.mean()) if counts.mean() > 0 else 1.0
        self.calibration = {
            "method": "negative binomial around the reference rate; dispersion from 20 "
            "equal time chunks of the reference",
            "rows_per_second": ts.size / span,
            "dispersion": max(1.0, dispersion),
        }

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        if "rows_per_second" not in self.calibration or window.start is None or not window.end:
            return []
        seconds = (window.end - window.start).total_seconds()
        expected = float(self.calibration["rows_per_second"]) * seconds
        if expected <= 0:
            return []
        lo, hi = count_interval(expected, float(self.calibration["dispersion"]), self.alpha)
        change = window.rows / expected - 1.0
        if lo <= window.rows <= hi or abs(change) < self.settings["min_effect"]:
            return []
        low = window.rows < lo
        bound = lo if low else hi
        severe = window.rows < lo / 2 if low else window.rows > 2 * hi
        return [self.finding(
            window.rows, bound, Severity.CRITICAL if severe else Severity.WARNING,
            f"{window.rows} rows, expected about {expected:.0f} ({'collapse' if low else 'spike'})",
            expected=expected, change=change,
        )]
