"""Drift: has a column's distribution moved away from the reference?

Decision statistic: Jensen–Shannon distance between the window's bins and the reference
bins; PSI, a normalised Wasserstein distance and moment shifts are reported beside it.
Every window also records each column's distance, threshold and PSI, alert or not, so a
report can show the columns that stayed below their threshold too.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import numpy as np

from watchkeeper.baseline.schema import Kind
from watchkeeper.monitors.base import Family, Finding, Monitor, ReferenceData, absent, severity_for
from watchkeeper.profiles.core import Profile, bin_codes
from watchkeeper.stats.calibration import NullFit, chunk_overdispersion, fit_binned_null
from watchkeeper.stats.distance import js_distance, psi, wasserstein_binned

#: Window sizes at which the null distribution is fitted at ``init``; sizes in between
#: are interpolated on a log scale, sizes outside are fitted when first seen.
CALIBRATION_ROWS = (30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000,
                    1_000_000, 3_000_000, 10_000_000)
#: Chunk counts used to measure the reference's natural variation over its row order.
CHUNKINGS = (10, 20, 50)


class FeatureDrift(Monitor):
    """Jensen–Shannon distance between a column's window bins and its reference bins.

    The threshold is the (1 − α) quantile of that distance when the window is drawn from
    the reference distribution, at the window's own size, widened by the natural variation
    seen between chunks of the reference; ``min_effect`` keeps trivially small but
    "significant" shifts in huge windows quiet.
    """

    type = "feature_drift"
    family = Family.DRIFT
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.05, "critical_effect": 0.1, "min_rows": 30}

    # -- calibration -------------------------------------------------------------------
    def _null_proportions(self, reference: Profile) -> tuple[np.ndarray, int]:
        counts = np.asarray(reference.columns[self.column_name].bins, dtype=float)
        n_ref = int(counts.sum())
        floor = 0.5 / max(n_ref, 1)
        p = counts / max(n_ref, 1)
        if self.spec.kind == Kind.NUMERIC:
            # A new value falls outside the reference range with probability 1/(n+1) per side.
            p[0] = p[-1] = 1.0 / (n_ref + 1)
        else:
            # Unseen levels: Good–Turing, the share of levels seen once.
            p[-1] = max(int(np.count_nonzero(counts[:-2] == 1)) / max(n_ref, 1), floor)
        return np.maximum(p, floor), n_ref

    def calibrate(self, reference: ReferenceData) -> None:
        ref_col = None if self.column is None else reference.profile.columns.get(self.column)
        if ref_col is None or ref_col.bins is None or ref_col.bins.sum() < 2:
            self.calibration = {"skipped": "no values in the reference"}
            return
        p, n_ref = self._null_proportions(reference.profile)
        rng = reference.rng(self.id)
        fits = [fit_binned_null(p, n_ref, n, rng=rng) for n in CALIBRATION_ROWS]
        codes = self.reference_codes(reference)
        ratios = []
        for chunks in CHUNKINGS:
            size = codes.size // chunks
            if size < 100:
                continue
            used = codes[: size * chunks].reshape(chunks, size)
            offsets = (np.arange(chunks) * p.size)[:, None]
            counts = np.bincount((used + offsets).ravel(), minlength=chunks * p.size)
            ratios.append(chunk_overdispersion(counts.reshape(chunks, -1), p, rng=rng))
        self.calibration = {
            "method": (
                "JS distance of windows resampled from the reference bins (multinomial, "
                "reference resampled too), upper tail from a moment-matched scaled chi-square, "
                "times the overdispersion of consecutive reference chunks"
            ),
            "reference_rows": n_ref,
            "overdispersion": round(float(np.median(ratios)), 4) if ratios else 1.0,
            "null": [{"rows": f.rows, "scale": f.scale, "df": f.df} for f in fits],
        }

    def reference_codes(self, reference: ReferenceData) -> np.ndarray:
        """The bin of every valid reference value, in row order (for the chunk variation)."""
        return bin_codes(reference.table.column(self.column_name), self.spec)

    def null_fit(self, n: int, reference: Profile) -> NullFit:
        """Null fit at window size ``n``: interpolated from the calibration, else fitted now."""
        grid = [NullFit(int(d["rows"]), float(d["scale"]), float(d["df"]))
                for d in self.calibration.get("null", [])]
        for lo, hi in itertools.pairwise(grid):
            if lo.rows <= n <= hi.rows:
                if lo.scale <= 0 or hi.scale <= 0:
                    return lo if lo.scale <= 0 else hi
                t = (math.log(n) - math.log(lo.rows)) / (math.log(hi.rows) - math.log(lo.rows))
                scale = math.exp((1 - t) * math.log(lo.scale) + t * math.log(hi.scale))
                return NullFit(n, scale, (1 - t) * lo.df + t * hi.df)
        p, n_ref = self._null_proportions(reference)
        rng = np.random.default_rng([n, len(p)])
        return fit_binned_null(p, n_ref, n, rng=rng)

    def thresholds(self, n: int, reference: Profile) -> tuple[float, float]:
        """(warning, critical) thresholds on the JS distance for a window of ``n`` values."""
        fit = self.null_fit(n, reference)
        phi = float(self.calibration.get("overdispersion", 1.0))
        warning = max(fit.threshold(self.alpha, phi), self.settings["min_effect"])
        critical = max(fit.threshold(self.alpha / 100, phi), self.settings["critical_effect"])
        return warning, max(critical, warning)

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        return self.assess(window, reference)[0]

    def not_evaluated(self, window: Profile) -> str | None:
        if "null" not in self.calibration:
            return None
        if absent(window, [self.column]):
            return f"{self.column} missing"
        current = window.columns.get(self.column_name)
        n = int(current.bins.sum()) if current is not None and current.bins is not None else 0
        return f"n < {self.settings['min_rows']}" if n < self.settings["min_rows"] else None

    def assess(self, window: Profile, reference: Profile) -> tuple[list[Finding], dict[str, Any]]:
        """The finding, if any, and the column's drift measures for every window
        (``{"drift": {column: {"js", "threshold", "psi"}}}``, rounded), from one computation."""
        if "null" not in self.calibration:
            return [], {}
        current = window.columns.get(self.column_name)
        ref = reference.columns[self.column_name]
        if current is None or current.bins is None or ref.bins is None:
            return [], {}
        n = int(current.bins.sum())
        if n < self.settings["min_rows"]:
            return [], {}
        value = float(js_distance(ref.bins, current.bins))
        warning, critical = self.thresholds(n, reference)
        stability = float(psi(ref.bins, current.bins))
        entry: dict[str, Any] = {"js": _compact(value), "threshold": _compact(warning),
                                 "psi": _compact(stability)}
        if self.type != FeatureDrift.type:
            entry["monitor"] = self.type
        measures = {"drift": {self.column: entry}}
        severity = severity_for(value, warning, critical)
        if severity is None:
            return [], measures
        evidence: dict[str, Any] = {"psi": stability, "rows": n}
        if self.spec.kind == Kind.NUMERIC and ref.moments.n > 1 and current.moments.n \
                and ref.moments.std > 0:  # a constant reference has no scale to shift by
            sd = ref.moments.std
            edges = np.asarray(self.spec.edges, dtype=float)
            positions = np.concatenate([[edges[0]], (edges[:-1] + edges[1:]) / 2, [edges[-1]]])
            evidence["wasserstein"] = float(
                wasserstein_binned(ref.bins, current.bins, np.diff(positions), sd)
            )
            evidence["mean_shift_sd"] = (current.moments.mean - ref.moments.mean) / sd
            if current.moments.n > 1:
                evidence["sd_ratio"] = current.moments.std / sd
        elif self.spec.kind != Kind.NUMERIC:
            evidence.update(self._top_level_changes(ref.bins, current.bins))
        finding = self.finding(
            value,
            warning,
            severity,
            f"{self.column} distribution changed (JS distance {value:.3f} > {warning:.3f})",
            **evidence,
        )
        return [finding], measures

    def _top_level_changes(self, ref: np.ndarray, cur: np.ndarray) -> dict[str, Any]:
        labels = [*(self.spec.categories or []), "(other)", "(unseen)"]
        p = ref / max(ref.sum(), 1)
        q = cur / max(cur.sum(), 1)
        i = int(np.argmax(np.abs(q - p)))
        return {"largest_change": labels[i], "reference_share": float(p[i]),
                "window_share": float(q[i])}


def _compact(value: float) -> float:
    """Four significant digits: enough for a chart, small in a window's stored metrics."""
    return float(f"{value:.4g}")


class PredictionDrift(FeatureDrift):
    """Drift of the model's output: the prediction or its score, with the same statistic."""

    type = "prediction_drift"


class TargetDrift(FeatureDrift):
    """Drift of the label distribution, evaluated in windows where labels are present."""

    type = "target_drift"
