"""What every section shares: the windows of a result normalised into ``WindowView``s,
the headline metrics' order and names, and lenient accessors for plain JSON data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.report.html import SEVERITIES, one_day, window_label
from watchkeeper.report.svg import finite

# metrics in chart order; higher is better for all but the losses and errors
METRICS = ("accuracy", "roc_auc", "f1", "precision", "recall", "log_loss", "brier", "mae",
           "rmse", "mape", "r2")
METRIC_NAMES = {"accuracy": "Accuracy", "roc_auc": "ROC-AUC", "f1": "F1",
                "precision": "Precision", "recall": "Recall", "log_loss": "Log-loss",
                "brier": "Brier score", "mae": "MAE", "rmse": "RMSE", "mape": "MAPE",
                "r2": "R²"}


@dataclass
class WindowView:
    """A window normalised from any of the shapes it comes in (CLI JSON, server API)."""

    index: int
    label: str  # as shown in tables (time ranges made readable)
    rows: int | None
    start: str | None
    end: str | None
    state: str | None
    findings: list[dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    axis: str = ""  # short label for chart axes
    span: str | None = None  # the rows' own time range, when narrower than the label's
    #: monitors that could not judge the window (``{"monitor", "column", "reason"}``)
    not_evaluated: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None  # the check's verdict (ok, alert, partly_/not_evaluated)

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(f["severity"] == s for f in self.findings) for s in SEVERITIES}

    @property
    def worst(self) -> str:
        counts = self.counts
        return next((s for s in ("critical", "warning") if counts[s]), "ok")

    @property
    def coverage(self) -> float | None:
        m = self.metrics
        if finite(m.get("label_coverage")):
            return float(m["label_coverage"])
        realised = as_dict(m.get("realised"))
        if finite(realised.get("labeled")) and self.rows:
            return float(realised["labeled"]) / self.rows
        return None


def as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def as_float(value: Any) -> float | None:
    return float(value) if finite(value) else None


def as_int(value: Any) -> int | None:
    return int(value) if finite(value) else None


def windows_of(result: Mapping[str, Any]) -> list[WindowView]:
    """The result's windows, labelled for reading: time ranges as dates and clocks, without
    the date when every window lies in one day (the header gives it)."""
    given = [as_dict(raw) for raw in as_list(result.get("windows"))]
    raws = [str(w.get("window") or (f"{w['start']}/{w['end']}" if w.get("start")
                                    and w.get("end") else w.get("start")) or f"window {i + 1}")
            for i, w in enumerate(given)]
    dated = not one_day(raws)
    out = []
    for i, (w, raw) in enumerate(zip(given, raws, strict=True)):
        start, end = w.get("start"), w.get("end")
        label, axis = window_label(raw, date=dated)
        span = window_label(f"{start}/{end}", date=dated)[0] if start and end else label
        findings = []
        for f in as_list(w.get("findings")):
            f = as_dict(f)
            severity = str(f.get("severity") or "info").lower()
            findings.append({**f, "severity": severity if severity in SEVERITIES else "info",
                             "window": label})
        out.append(WindowView(i, label, as_int(w.get("rows")),
                              None if start is None else str(start),
                              None if end is None else str(end),
                              None if w.get("state") is None else str(w.get("state")),
                              findings, as_dict(w.get("metrics")), axis,
                              span if span != label else None,
                              [as_dict(u) for u in as_list(w.get("not_evaluated"))],
                              None if w.get("status") is None else str(w["status"])))
    return out


def severity_rank(severity: str) -> int:
    return {"critical": 2, "warning": 1}.get(severity, 0)


def place_of(f: Mapping[str, Any]) -> str:
    return str(f.get("segment") or f.get("column") or "")


def monitor_of(f: Mapping[str, Any]) -> str:
    monitor = str(f.get("monitor") or "?")
    metric = f.get("metric")
    return f"{monitor}:{metric}" if metric and metric != monitor else monitor
