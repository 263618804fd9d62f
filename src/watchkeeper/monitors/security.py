"""Security: out-of-distribution inputs, and abusive clients (floods, near-duplicate
bursts, decision-boundary probing, extraction-like coverage of the input space).

Client monitors judge every client of a window; α is split across the clients judged, and
each alert names the client (``segment = "client=<id>"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from scipy import special

from watchkeeper.baseline.ood import (
    OOD_FEATURES,
    OOD_LEVELS,
    OOD_SCORE_EDGES,
    OOD_TALLY,
    SecurityModel,
)
from watchkeeper.errors import SuiteError
from watchkeeper.io.values import category_counts, numbers_with_nan
from watchkeeper.monitors.base import (
    Family,
    Finding,
    Monitor,
    ReferenceData,
    Severity,
    severity_for,
)
from watchkeeper.profiles.clients import OTHER, ClientStats, moments
from watchkeeper.profiles.core import Profile
from watchkeeper.stats.calibration import TAIL_MARGIN, count_interval, rate_threshold

SIZES = (30, 100, 300, 1_000, 3_000)  # beyond: the last point (clients rarely send more)
POOL_ROWS = 50_000  # reference rows that normal-client curves are resampled from
REJECTED = "rejected"  # requests refused in the window: [invalid payload, authentication]
DRAWS = 60
TOP_CLIENTS = 10  # busiest clients listed per window in the measured values


class OODShare(Monitor):
    """Share of rows out of distribution: beyond the reference's range, with a category it
    never saw, or further from its centre (robust distance) or quicker to isolate (isolation
    forest) than 99.9% of its rows."""

    type = "ood_share"
    family = Family.SECURITY
    # 2 points: drifted-but-plausible data (a wider spread) puts ~1% of rows past the
    # reference's range; that is drift, reported by the drift monitors, not an OOD burst.
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.02, "critical_effect": 0.1}

    def calibrate(self, reference: ReferenceData) -> None:
        model = _model(self)
        table = reference.table
        n = table.num_rows
        if n < 100:
            self.calibration = {"skipped": "too few reference rows"}
            return
        # Reference rows lie inside their own range and levels by construction, new rows
        # do not: estimate the share of new normal rows found "outside" by splitting the
        # reference in halves (range and unseen levels of one, rows of the other). Both
        # effects shrink like 1/rows, so the full reference's share is about half of it.
        order = reference.rng(self.id).permutation(n)
        a, b = table.take(order[: n // 2]), table.take(order[n // 2:])
        half = _refit(model, a)
        outside = float(half.score(b).ood.mean())
        # far rows (distance or isolation score past the reference's 99.9th percentile):
        # the reference is inside its own range and levels, so these are all it flags
        far = float(model.score(table).ood.mean())
        share = outside / 2 + far
        self.calibration = {
            "method": "binomial bound on the OOD share of normal rows, estimated by "
                      "splitting the reference in halves, + min effect",
            "reference_rows": n, "reference_ood": round(share * n)}

    def measure(self, window: Profile) -> dict[str, Any]:
        counts = window.joint.get(OOD_TALLY)
        if counts is None or counts[0] == 0:
            return {}
        model = _model(self)
        names = [*model.numeric, *model.categorical]
        blame = window.joint.get(OOD_FEATURES, np.zeros(len(names)))
        levels = window.joint.get(OOD_LEVELS)
        busiest = sorted(window.clients.items(), key=lambda kv: -kv[1].rows)[:TOP_CLIENTS]
        out: dict[str, Any] = {
            "rows": int(counts[0]), "ood_rows": int(counts[1]),
            "ood_share": float(counts[1] / counts[0]),
            "top_offenders": {names[i]: int(blame[i]) for i in np.argsort(-blame)[:5]
                              if blame[i] > 0},
            "clients": [{"client": name, "rows": c.rows, "ood": c.ood,
                         "near_boundary": c.boundary, "distinct_inputs": round(c.distinct)}
                        for name, c in busiest]}
        if levels is not None:
            out["ood_score_histogram"] = {"edges": list(OOD_SCORE_EDGES),
                                          "counts": [int(v) for v in levels]}
        return {"security": out}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        counts = window.joint.get(OOD_TALLY)
        if counts is None or counts[0] == 0 or "reference_rows" not in self.calibration:
            return []
        n, k = int(counts[0]), int(counts[1])
        k_ref, n_ref = int(self.calibration["reference_ood"]), int(
            self.calibration["reference_rows"])
        _, warning, critical = self.rate_lines(k_ref, n_ref, n)
        severity = severity_for(k / n, warning, critical)
        if severity is None:
            return []
        model = _model(self)
        names = [*model.numeric, *model.categorical]
        blame = window.joint.get(OOD_FEATURES, np.zeros(len(names)))
        top = [names[i] for i in np.argsort(-blame)[:3] if blame[i] > 0]
        f = self.finding(k / n, warning, severity,
                         f"{k} of {n} rows out of distribution ({k / n:.1%}); mostly "
                         f"{', '.join(top) or 'n/a'}", ood_rows=k, rows=n,
                         top_features=", ".join(top))
        f.metric = "ood_share"
        return [f]


def _refit(model: SecurityModel, table: Any) -> SecurityModel:
    """The model's range and levels as a subset of the reference would have them."""
    low, high = [], []
    for name in model.numeric:
        x = numbers_with_nan(table.column(name))
        low.append(float(np.nanmin(x)) if np.isfinite(x).any() else -np.inf)
        high.append(float(np.nanmax(x)) if np.isfinite(x).any() else np.inf)
    levels = [[lv for lv in levels if lv in category_counts(table.column(name))[0]]
              for name, levels in zip(model.categorical, model.levels, strict=True)]
    return SecurityModel(**{**model.__dict__, "low": low, "high": high, "levels": levels,
                            "threshold": np.inf, "forest": None})


def _model(monitor: Monitor) -> SecurityModel:
    model = monitor.bound_schema().security
    if model is None:
        raise SuiteError(monitor.id, "needs the suite's security model, and the suite has "
                                     "none; remove the monitor, or re-run init()")
    return model


class ClientMonitor(Monitor):
    """Base of the per-client signatures: judge each client with enough rows."""

    family = Family.SECURITY
    params: ClassVar[dict[str, Any]] = {"min_rows": 30, "min_effect": 0.2}
    metric = ""

    def clients(self, window: Profile) -> dict[str, ClientStats]:
        return {c: s for c, s in window.clients.items()
                if c != OTHER and s.rows >= self.settings["min_rows"]}

    def z(self, n_tests: int, critical: bool = False) -> float:
        alpha = self.alpha / max(n_tests, 1) / (100 if critical else 1)
        return float(special.ndtri(1 - alpha / TAIL_MARGIN))

    def flag(self, client: str, value: float, threshold: float, severe: bool, message: str,
             **evidence: Any) -> Finding:
        f = self.finding(value, threshold, Severity.CRITICAL if severe else Severity.WARNING,
                         f"client {client}: {message}", client=client, **evidence)
        f.metric, f.segment = self.metric, f"client={client}"
        return f

    # resampled curves of a per-client statistic under "a normal client": reference rows
    def _curve(self, reference: ReferenceData,
               statistic_of: Callable[[pa.Table], Callable[[np.ndarray], float]]
               ) -> list[dict[str, float]]:
        """Mean and sd of a statistic of ``rows`` random reference rows, for each size.
        ``statistic_of(pool)`` reads what it needs from the pool of reference rows once and
        returns the statistic of a draw given the draw's row indices."""
        rng = reference.rng(self.id)
        table = reference.table
        if table.num_rows > POOL_ROWS:  # draw from a random subset: the same distribution
            table = table.take(np.sort(rng.choice(table.num_rows, POOL_ROWS, replace=False)))
        n_ref = table.num_rows
        statistic = statistic_of(table)
        curve = []
        for size in (s for s in SIZES if s <= n_ref // 2):
            values = [statistic(rng.choice(n_ref, size, replace=False)) for _ in range(DRAWS)]
            curve.append({"rows": size, "mean": float(np.mean(values)),
                          "sd": float(np.std(values, ddof=1))})
        return curve

    def _at(self, rows: int) -> tuple[float, float]:
        curve = self.calibration.get("curve") or []
        if not curve:
            return float("nan"), float("nan")
        sizes = np.log([c["rows"] for c in curve])
        x = math.log(min(max(rows, curve[0]["rows"]), curve[-1]["rows"]))
        return (float(np.interp(x, sizes, [c["mean"] for c in curve])),
                float(np.interp(x, sizes, [c["sd"] for c in curve])))


class ClientVolume(ClientMonitor):
    """A client sending far more rows than the usual client in the same window."""

    type = "client_volume"
    metric = "rows"
    params: ClassVar[dict[str, Any]] = {"min_rows": 30, "min_factor": 5.0, "min_clients": 5}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        clients = {c: s for c, s in window.clients.items() if c != OTHER}
        if len(clients) < self.settings["min_clients"]:
            return []
        counts = np.array([s.rows for s in clients.values()], dtype=float)
        median = float(np.median(counts))
        mad = 1.4826 * float(np.median(np.abs(counts - median)))
        dispersion = max(1.0, mad**2 / median) if median > 0 else 1.0
        alpha = self.alpha / len(clients)
        hi = count_interval(median, dispersion, alpha)[1]
        limit = max(hi, self.settings["min_factor"] * median)
        return [self.flag(c, s.rows, limit, s.rows > 2 * limit,
                          f"{s.rows} rows, the usual client sends {median:.0f}", median=median)
                for c, s in clients.items() if s.rows > limit]


class NearDuplicates(ClientMonitor):
    """A client whose inputs are mostly repeats (distinct-to-total ratio of rounded inputs
    far below what the same number of normal rows shows)."""

    type = "near_duplicates"
    metric = "distinct_ratio"

    def calibrate(self, reference: ReferenceData) -> None:
        model = _model(self)
        self.calibration = {
            "method": "distinct share of rounded inputs among resampled reference rows",
            "curve": self._curve(reference, lambda pool: _distinct_share(model.row_hashes(pool)))}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        clients = self.clients(window)
        z = self.z(len(clients))
        found = []
        for c, s in clients.items():
            mean, sd = self._at(s.rows)
            if not np.isfinite(mean):
                continue
            if len(s.kmv) >= 256:  # the sketch's own error (≈ 1/√k)
                sd = math.hypot(sd, mean / 16)
            ratio = s.distinct / s.rows
            limit = min(mean - z * sd, mean - self.settings["min_effect"])
            if ratio < limit:
                found.append(self.flag(c, ratio, limit, ratio < limit / 2,
                                       f"{ratio:.1%} distinct inputs in {s.rows} rows "
                                       f"(normal: {mean:.1%})", rows=s.rows))
        return found


class BoundaryProbing(ClientMonitor):
    """A client whose predictions sit near the decision threshold far more than normal."""

    type = "boundary_probing"
    metric = "boundary_share"

    def calibrate(self, reference: ReferenceData) -> None:
        model = _model(self)
        if not model.proba or model.boundary_width <= 0:
            self.calibration = {"skipped": "needs a binary classifier's score column"}
            return
        p = numbers_with_nan(reference.table.column(model.proba))
        near = int((np.abs(p - model.boundary) < model.boundary_width).sum())
        self.calibration = {"method": "binomial bound on the reference's share of scores "
                                      f"within {model.boundary_width:.4g} of {model.boundary:.4g}",
                            "reference_rows": int(np.isfinite(p).sum()), "reference_near": near}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        if "reference_rows" not in self.calibration:
            return []
        clients = self.clients(window)
        n_ref, k_ref = self.calibration["reference_rows"], self.calibration["reference_near"]
        base = k_ref / n_ref
        found = []
        for c, s in clients.items():
            limit = max(rate_threshold(k_ref, n_ref, s.rows, self.alpha / len(clients)),
                        base + self.settings["min_effect"])
            share = s.boundary / s.rows
            if share > limit:
                found.append(self.flag(c, share, limit, share > 2 * limit,
                                       f"{share:.0%} of its predictions near the decision "
                                       f"threshold (normal: {base:.0%})", rows=s.rows))
        return found


class ExtractionCoverage(ClientMonitor):
    """A client whose inputs spread across the feature space far more than a normal
    client's (mean ratio of its per-feature sd to the reference sd), as a sweep that
    maps out the model does."""

    type = "extraction_coverage"
    metric = "spread"
    params: ClassVar[dict[str, Any]] = {"min_rows": 30, "min_effect": 0.5}

    def _spread(self, s: ClientStats) -> float:
        ref_sd = np.asarray(self.calibration["reference_sd"])
        ok = ref_sd > 0
        return float(np.nanmean(s.sd()[ok] / ref_sd[ok])) if ok.any() else float("nan")

    def calibrate(self, reference: ReferenceData) -> None:
        model = _model(self)
        if not model.numeric:
            self.calibration = {"skipped": "needs numeric features"}
            return
        sd = [float(np.nanstd(numbers_with_nan(reference.table.column(c)), ddof=1))
              for c in model.numeric]
        self.calibration = {"method": "mean sd ratio of resampled reference rows",
                            "reference_sd": sd}

        def spread_of(pool: pa.Table) -> Callable[[np.ndarray], float]:
            columns = [numbers_with_nan(pool.column(c)) for c in model.numeric]

            def spread(rows: np.ndarray) -> float:
                n, mean, m2 = moments([x[rows] for x in columns],
                                      np.zeros(rows.size, np.int64), 1)
                return self._spread(ClientStats(rows.size, 0, 0, n[0], mean[0], m2[0],
                                                np.zeros(0, np.uint64)))
            return spread

        self.calibration["curve"] = self._curve(reference, spread_of)

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        if "curve" not in self.calibration:
            return []
        clients = self.clients(window)
        z = self.z(len(clients))
        found = []
        for c, s in clients.items():
            mean, sd = self._at(s.rows)
            spread = self._spread(s)
            limit = max(mean + z * sd, 1 + self.settings["min_effect"])
            if np.isfinite(spread) and spread > limit:
                found.append(self.flag(c, spread, limit, spread > 2 * limit,
                                       f"inputs spread {spread:.1f}× the reference's "
                                       f"(normal clients: {mean:.2f}×)", rows=s.rows))
        return found


class RejectedRequests(Monitor):
    """Requests the server refused in a window: invalid payloads (validation failures)
    and authentication failures, as signs of a broken client or of probing. A policy
    (``max_invalid``, ``max_auth`` per window), so no share of the alert budget."""

    type = "rejected_requests"
    family = Family.SECURITY
    calibrated = False
    params: ClassVar[dict[str, Any]] = {"max_invalid": 10, "max_auth": 5}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        counts = window.joint.get(REJECTED)
        if counts is None:
            return []
        found = []
        for i, (metric, limit, what) in enumerate(
                (("invalid", self.settings["max_invalid"], "invalid payloads"),
                 ("auth", self.settings["max_auth"], "authentication failures"))):
            if counts[i] > limit:
                f = self.finding(float(counts[i]), float(limit),
                                 Severity.CRITICAL if counts[i] > 10 * limit else
                                 Severity.WARNING, f"{int(counts[i])} {what} in the window")
                f.metric = metric
                found.append(f)
        return found


def _distinct_share(hashes: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda rows: len(np.unique(hashes[rows])) / rows.size
