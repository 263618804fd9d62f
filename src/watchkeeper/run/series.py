"""A window's measures (``WindowResult.metrics``) as flat, named time series: what
``/metrics`` exposes for the latest closed window of each model, and what a dashboard
plots. One name per quantity, labels for what varies (column, metric, attribute...), so
each series is a plain number per window.

>>> metrics = {"drift": {"x": {"js": 0.12, "threshold": 0.05}},
...            "realised": {"rows": 10, "accuracy": 0.9}, "security": {"ood_share": 0.01}}
>>> for name, labels, value in window_series(metrics):
...     print(name, labels, value)
drift_distance {'column': 'x', 'monitor': 'feature_drift'} 0.12
drift_threshold {'column': 'x', 'monitor': 'feature_drift'} 0.05
performance_realised {'metric': 'accuracy'} 0.9
ood_share {} 0.01
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

#: Every series :func:`window_series` yields: name → (help text, label names).
SERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "drift_distance": ("Jensen-Shannon distance of each column's distribution from the "
                       "reference", ("column", "monitor")),
    "drift_threshold": ("Calibrated threshold of each column's drift distance",
                        ("column", "monitor")),
    "performance_realised": ("Realised performance on the labeled rows, per metric",
                             ("metric",)),
    "performance_estimated": ("Label-free estimate of performance, per metric", ("metric",)),
    "performance_estimated_low": ("Lower end of the estimate's band, per metric", ("metric",)),
    "performance_estimated_high": ("Upper end of the estimate's band, per metric",
                                   ("metric",)),
    "label_coverage": ("Share of the window's predictions with a label", ()),
    "fairness_di_ratio": ("Disparate impact ratio (lowest over highest selection rate), "
                          "per sensitive attribute", ("attribute",)),
    "fairness_eo_difference": ("Equalised-odds difference (largest gap in TPR or FPR), per "
                               "sensitive attribute", ("attribute",)),
    "fairness_dp_difference": ("Demographic-parity difference (largest gap in selection "
                               "rate), per sensitive attribute", ("attribute",)),
    "fairness_selection_rate": ("Selection rate of each group", ("attribute", "group")),
    "ood_share": ("Share of rows out of the reference distribution", ()),
    "ood_rows": ("Rows out of the reference distribution", ()),
    "latency_ms": ("Request latency quantiles in milliseconds", ("quantile",)),
    "rule_violation_rate": ("Share of checked rows that violate each declarative rule",
                            ("rule",)),
}
_NOT_METRICS = {"rows", "labeled"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def window_series(metrics: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, str], float]]:
    """(series name, labels, value) of every finite measure in a window's ``metrics``."""
    def out(name: str, value: Any, **labels: str) -> Iterator[tuple[str, dict[str, str],
                                                                    float]]:
        number = _number(value)
        if number is not None:
            yield name, labels, number

    for column, d in _mapping(metrics.get("drift")).items():
        d = _mapping(d)
        monitor = str(d.get("monitor") or "feature_drift")
        yield from out("drift_distance", d.get("js"), column=str(column), monitor=monitor)
        yield from out("drift_threshold", d.get("threshold"), column=str(column),
                       monitor=monitor)
    for metric, value in _mapping(metrics.get("realised")).items():
        if metric not in _NOT_METRICS:
            yield from out("performance_realised", value, metric=str(metric))
    band = _mapping(metrics.get("estimated_band"))
    for metric, value in _mapping(metrics.get("estimated")).items():
        yield from out("performance_estimated", value, metric=str(metric))
        ends = band.get(metric)
        if isinstance(ends, (list, tuple)) and len(ends) == 2:
            yield from out("performance_estimated_low", ends[0], metric=str(metric))
            yield from out("performance_estimated_high", ends[1], metric=str(metric))
    yield from out("label_coverage", metrics.get("label_coverage"))
    for attribute, d in _mapping(metrics.get("fairness")).items():
        d = _mapping(d)
        yield from out("fairness_di_ratio", d.get("di_ratio"), attribute=str(attribute))
        yield from out("fairness_eo_difference", d.get("eo_difference"),
                       attribute=str(attribute))
        dp = d.get("dp_difference")  # [difference, low, high]
        yield from out("fairness_dp_difference", dp[0] if isinstance(dp, (list, tuple)) and dp
                       else dp, attribute=str(attribute))
        for group, g in _mapping(d.get("groups")).items():
            yield from out("fairness_selection_rate", _mapping(g).get("selection_rate"),
                           attribute=str(attribute), group=str(group))
    security = _mapping(metrics.get("security"))
    yield from out("ood_share", security.get("ood_share"))
    yield from out("ood_rows", security.get("ood_rows"))
    for quantile, value in _mapping(metrics.get("latency_ms")).items():
        yield from out("latency_ms", value, quantile=str(quantile))
    for rule, d in _mapping(metrics.get("rules")).items():
        yield from out("rule_violation_rate", _mapping(d).get("rate"), rule=str(rule))
