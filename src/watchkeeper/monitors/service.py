"""Service: latency against an SLO, error rate, and throughput against what is usual."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from watchkeeper.monitors.base import (
    Family,
    Finding,
    Monitor,
    ReferenceData,
    Severity,
    severity_for,
)
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.service import LATENCY_TALLY, SERVICE_TALLY, latency_quantile
from watchkeeper.stats.calibration import count_interval

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


class Latency(Monitor):
    """Latency quantiles of a window against a service-level objective.

    ``slo_ms`` bounds the ``quantile`` (default p99). It is configured, or generated at
    ``init`` from the reference's own latency (its p99 times ``slo_margin``); with neither,
    latency is measured and reported but never alerts. An SLO is a policy, not a
    statistical test, so it takes no share of the alert budget.
    """

    type = "latency"
    family = Family.SERVICE
    calibrated = False
    params: ClassVar[dict[str, Any]] = {"slo_ms": 0.0, "quantile": 0.99, "slo_margin": 1.5,
                                        "min_rows": 50}

    def calibrate(self, reference: ReferenceData) -> None:
        hist = reference.profile.joint.get(LATENCY_TALLY)
        if hist is None or hist.sum() == 0 or self.settings["slo_ms"] > 0:
            return
        p99 = latency_quantile(hist, 0.99)
        self.settings["slo_ms"] = round(p99 * self.settings["slo_margin"], 3)
        self.calibration = {"method": f"reference p99 {p99:.3f} ms × slo_margin"}

    def measure(self, window: Profile) -> dict[str, Any]:
        hist = window.joint.get(LATENCY_TALLY)
        if hist is None or hist.sum() == 0:
            return {}
        return {"latency_ms": {k: latency_quantile(hist, q) for k, q in QUANTILES.items()}}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        hist = window.joint.get(LATENCY_TALLY)
        slo = float(self.settings["slo_ms"])
        if slo <= 0 or hist is None or hist.sum() < self.settings["min_rows"]:
            return []
        q = float(self.settings["quantile"])
        value = latency_quantile(hist, q)
        severity = severity_for(value, slo, 2 * slo)
        if severity is None:
            return []
        name = f"p{round(q * 100):d}"
        quantiles: dict[str, Any] = {k: latency_quantile(hist, v) for k, v in QUANTILES.items()}
        f = self.finding(value, slo, severity,
                         f"latency {name} {value:.1f} ms over the {slo:g} ms objective",
                         rows=int(hist.sum()), **quantiles)
        f.metric = f"latency_{name}"
        return [f]


class ErrorRate(Monitor):
    """Share of prediction calls that failed, against the reference's (usually zero)."""

    type = "error_rate"
    family = Family.SERVICE
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.01, "critical_effect": 0.1}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        counts = window.joint.get(SERVICE_TALLY)
        if counts is None or counts[0] == 0:
            return []
        ref = reference.joint.get(SERVICE_TALLY, np.zeros(2, dtype=np.int64))
        n, k = int(counts[0]), int(counts[1])
        base, warning, critical = self.rate_lines(int(ref[1]), int(ref[0]), n)
        severity = severity_for(k / n, warning, critical)
        if severity is None:
            return []
        return [self.finding(k / n, warning, severity,
                             f"{k} of {n} prediction calls failed ({k / n:.1%})",
                             errors=k, rows=n, reference_rate=base)]


class Throughput(Monitor):
    """Rows per second of a window against the usual rate: ``expected_rps`` when set,
    otherwise the median of the previous ``history`` windows. Judged over a sequence of
    windows (see :meth:`evaluate_sequence`)."""

    type = "throughput"
    family = Family.SERVICE
    params: ClassVar[dict[str, Any]] = {"expected_rps": 0.0, "history": 12, "min_effect": 0.5,
                                        "dispersion": 2.0}

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        return []  # needs the sequence

    def evaluate_sequence(self, windows: list[Profile]) -> list[list[Finding]]:
        rates = [w.rows / _seconds(w) if _seconds(w) else np.nan for w in windows]
        out: list[list[Finding]] = [[] for _ in windows]
        for i, w in enumerate(windows):
            seconds = _seconds(w)
            if not seconds:
                continue
            expected_rps = float(self.settings["expected_rps"])
            if expected_rps <= 0:
                past = [r for r in rates[max(0, i - int(self.settings["history"])):i]
                        if np.isfinite(r)]
                if len(past) < 3:
                    continue
                expected_rps = float(np.median(past))
            expected = expected_rps * seconds
            lo, hi = count_interval(expected, float(self.settings["dispersion"]), self.alpha)
            change = w.rows / expected - 1 if expected else 0.0
            if lo <= w.rows <= hi or abs(change) < self.settings["min_effect"]:
                continue
            low = w.rows < lo
            f = self.finding(w.rows / seconds, (lo if low else hi) / seconds,
                             Severity.CRITICAL if w.rows == 0 or change > 3 else Severity.WARNING,
                             f"{w.rows / seconds:.1f} rows/s, usually {expected_rps:.1f} "
                             f"({'drop' if low else 'surge'})", expected_rps=expected_rps,
                             change=change)
            f.metric = "rows_per_second"
            out[i].append(f)
        return out


def _seconds(w: Profile) -> float:
    if w.start is None or w.end is None:
        return 0.0
    return (w.end - w.start).total_seconds()
