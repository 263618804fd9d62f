"""OpenTelemetry export: window metrics as OTLP metrics, findings and incident transitions as
OTLP log records (events), sent over OTLP/HTTP (protobuf) to a collector.

Collection is separate from sending: :func:`window_metrics`, :func:`finding_records` and
:func:`incident_records` turn results into protobuf messages; :class:`OtlpExporter` queues
encoded requests (bounded: a full queue drops and counts) and a background thread POSTs
them with a timeout, so exporting never raises into, nor waits on, the check or the server.

Attribute names (the conventions, also in the README's "Integrations"): ``ml.model``,
``ml.monitor``, ``ml.family``, ``ml.column``, ``ml.metric``, ``ml.segment``,
``ml.severity``, ``ml.window``, ``ml.statistic``, ``ml.value``, ``ml.threshold``,
``ml.incident.id``, ``ml.incident.transition``, ``ml.incident.title``. Needs the ``otel``
extra (``opentelemetry-proto``).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from watchkeeper.alerts.notifiers.base import mask_url
from watchkeeper.run.series import window_series

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification
    from watchkeeper.monitors.base import Finding
    from watchkeeper.run.check import CheckResult, WindowResult

log = logging.getLogger("watchkeeper.otlp")
SCOPE = "watchkeeper"
#: OTel severity numbers: INFO, WARN, ERROR (a critical finding is an error to act on)
SEVERITY_NUMBER = {"info": 9, "warning": 13, "critical": 17}
SEVERITY_TEXT = {"info": "INFO", "warning": "WARN", "critical": "ERROR"}
UNITS = {"ml.service.latency": "ms", "ml.window.rows": "{row}", "ml.ood.rows": "{row}",
         "ml.ood.share": "1", "ml.drift.distance": "1", "ml.drift.threshold": "1"}
DESCRIPTIONS = {
    "ml.window.rows": "Rows in the window",
    "ml.drift.distance": "Jensen-Shannon distance of a column from the reference",
    "ml.drift.threshold": "Calibrated drift threshold of a column",
    "ml.performance.realised": "Performance on the window's labelled rows (ml.metric)",
    "ml.performance.estimated": "Performance estimated without labels (ml.metric)",
    "ml.performance.estimated.lower": "Lower end of the estimate's expected band",
    "ml.performance.estimated.upper": "Upper end of the estimate's expected band",
    "ml.fairness.gap": "Largest gap between groups of a sensitive column (ml.metric)",
    "ml.fairness.di_ratio": "Disparate-impact ratio of a sensitive column",
    "ml.fairness.selection_rate": "Selection rate of each group (ml.group) of a sensitive "
                                  "column",
    "ml.rule.violation_rate": "Share of checked rows that violate a rule (ml.rule)",
    "ml.ood.share": "Share of rows out of the reference's distribution",
    "ml.ood.rows": "Rows out of the reference's distribution",
    "ml.service.latency": "Prediction latency quantile (ml.statistic: p50, p90, p99...)",
    "ml.label_coverage": "Share of the window's predictions with a label",
    "ml.finding.value": "Value of each monitor's finding",
    "ml.finding.threshold": "Threshold of each monitor's finding",
    "ml.finding.severity": "0 info, 1 warning, 2 critical, per finding",
}
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_LEVEL = {"info": 0, "warning": 1, "critical": 2}


# -- collection: results → protobuf -------------------------------------------------------

def _value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_value(x) for x in v]))
    return AnyValue(string_value=str(v))


def attributes(values: Mapping[str, Any]) -> list[KeyValue]:
    """OTLP attributes of ``values``, leaving out None and empty strings."""
    return [KeyValue(key=k, value=_value(v)) for k, v in values.items()
            if v is not None and v != ""]


def _nanos(at: datetime | None) -> int:
    return int((at or datetime.now(UTC)).timestamp() * 1e9)


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


class _Points:
    """Gauge points by metric name, for one window."""

    def __init__(self, base: Mapping[str, Any], start: int, end: int) -> None:
        self.base, self.start, self.end = dict(base), start, end
        self.points: dict[str, list[NumberDataPoint]] = {}

    def add(self, name: str, value: Any, **attrs: Any) -> None:
        x = _number(value)
        if x is None:
            return
        self.points.setdefault(name, []).append(NumberDataPoint(
            attributes=attributes({**self.base, **attrs}), start_time_unix_nano=self.start,
            time_unix_nano=self.end, as_double=x))

    def metrics(self) -> list[Metric]:
        return [Metric(name=name, description=DESCRIPTIONS.get(name, ""),
                       unit=UNITS.get(name, "1"), gauge=Gauge(data_points=points))
                for name, points in self.points.items()]


#: The OTel name of each series of :func:`window_series` (and attributes it adds), and of
#: its labels: one walk over a window's measures for ``/metrics`` and for OTLP.
OTEL_SERIES: dict[str, tuple[str, dict[str, str]]] = {
    "drift_distance": ("ml.drift.distance", {}),
    "drift_threshold": ("ml.drift.threshold", {}),
    "performance_realised": ("ml.performance.realised", {}),
    "performance_estimated": ("ml.performance.estimated", {}),
    "performance_estimated_low": ("ml.performance.estimated.lower", {}),
    "performance_estimated_high": ("ml.performance.estimated.upper", {}),
    "label_coverage": ("ml.label_coverage", {}),
    "fairness_di_ratio": ("ml.fairness.di_ratio", {}),
    "fairness_eo_difference": ("ml.fairness.gap", {"ml.metric": "eo_difference"}),
    "fairness_dp_difference": ("ml.fairness.gap", {"ml.metric": "dp_difference"}),
    "fairness_selection_rate": ("ml.fairness.selection_rate", {}),
    "ood_share": ("ml.ood.share", {}),
    "ood_rows": ("ml.ood.rows", {}),
    "latency_ms": ("ml.service.latency", {}),
    "rule_violation_rate": ("ml.rule.violation_rate", {}),
}
OTEL_LABELS = {"column": "ml.column", "attribute": "ml.column", "monitor": "ml.monitor",
               "metric": "ml.metric", "group": "ml.group", "quantile": "ml.statistic",
               "rule": "ml.rule"}


def window_metrics(model: str, w: WindowResult) -> list[Metric]:
    """One window's metrics as OTel gauges (time: the window's end, start time: its start):
    its rows, the measures ``/metrics`` shows (:func:`window_series`: drift per column and
    threshold, realised and estimated performance with band, fairness, out-of-distribution
    share, latency, rules) and every finding's value, threshold and severity level."""
    p = _Points({"ml.model": model}, _nanos(w.start), _nanos(w.end or w.start))
    p.add("ml.window.rows", w.rows)
    for series, labels, value in window_series(w.metrics or {}):
        name, extra = OTEL_SERIES[series]
        p.add(name, value, **{OTEL_LABELS[k]: v for k, v in labels.items()}, **extra)
    for f in w.findings:
        attrs = _finding_attributes(model, f)
        p.add("ml.finding.value", f.value, **attrs)
        p.add("ml.finding.threshold", f.threshold, **attrs)
        p.add("ml.finding.severity", _LEVEL[f.severity.value], **attrs)
    return p.metrics()


def sample_metrics(families: Iterable[tuple[str, str, bool, list[tuple[dict[str, Any], float]]]],
                   start: datetime, at: datetime | None = None) -> list[Metric]:
    """Metrics from plain samples: ``(name, description, counter, [(attributes, value)])``
    per family; a counter becomes a monotonic cumulative sum counted from ``start``, any
    other a gauge. Values that are not finite are left out."""
    begin, now = _nanos(start), _nanos(at)
    out = []
    for name, description, counter, samples in families:
        points = [NumberDataPoint(attributes=attributes(attrs), start_time_unix_nano=begin,
                                  time_unix_nano=now, as_double=x)
                  for attrs, value in samples if (x := _number(value)) is not None]
        if not points:
            continue
        if counter:
            out.append(Metric(name=name, description=description, sum=Sum(
                data_points=points, is_monotonic=True, aggregation_temporality=CUMULATIVE)))
        else:
            out.append(Metric(name=name, description=description,
                              gauge=Gauge(data_points=points)))
    return out


def _finding_attributes(model: str, f: Finding) -> dict[str, Any]:
    return {"ml.model": model, "ml.monitor": f.monitor, "ml.family": f.family,
            "ml.column": f.column, "ml.metric": f.metric, "ml.segment": f.segment,
            "ml.severity": f.severity.value}


def finding_records(model: str, w: WindowResult) -> list[LogRecord]:
    """One ``ml.finding`` event per finding of the window (time: the window's end)."""
    at = _nanos(w.end or w.start)
    return [LogRecord(
        time_unix_nano=at, observed_time_unix_nano=_nanos(None), event_name="ml.finding",
        severity_number=SEVERITY_NUMBER[f.severity.value],  # type: ignore[arg-type]
        severity_text=SEVERITY_TEXT[f.severity.value], body=AnyValue(string_value=f.message),
        attributes=attributes({**_finding_attributes(model, f), "ml.window": w.label,
                               "ml.value": _number(f.value), "ml.threshold": _number(f.threshold)}))
        for f in w.findings]


def incident_records(notifications: Iterable[Notification]) -> list[LogRecord]:
    """One ``ml.incident`` event per incident transition (``ml.incident.transition``: open,
    update, repeat, acknowledge, resolve), with the monitors and families of its alerts."""
    out = []
    for n in notifications:
        severity = "info" if n.kind == "resolve" else n.severity.value
        out.append(LogRecord(
            time_unix_nano=_nanos(n.at), observed_time_unix_nano=_nanos(None),
            event_name="ml.incident",
            severity_number=SEVERITY_NUMBER[severity],  # type: ignore[arg-type]
            severity_text=SEVERITY_TEXT[severity], body=AnyValue(string_value=n.subject),
            attributes=attributes({
                "ml.model": n.model, "ml.incident.id": n.incident,
                "ml.incident.transition": n.kind, "ml.incident.title": n.title,
                "ml.severity": n.severity.value, "ml.window": n.window,
                "ml.monitor": sorted({a.monitor for a in n.alerts}),
                "ml.family": sorted({a.family for a in n.alerts}),
                "ml.column": sorted({a.column for a in n.alerts if a.column}) or None,
                "ml.incident.acknowledged_by": n.acknowledged_by})))
    return out


def _resource(service: str) -> Resource:
    try:
        version = metadata.version("watchkeeper")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return Resource(attributes=attributes({"service.name": service,
                                           "service.version": version}))


def metrics_request(metrics: list[Metric], service: str = "watchkeeper"
                    ) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=_resource(service), scope_metrics=[ScopeMetrics(
            scope=InstrumentationScope(name=SCOPE), metrics=metrics)])])


def logs_request(records: list[LogRecord], service: str = "watchkeeper"
                 ) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=_resource(service), scope_logs=[ScopeLogs(
            scope=InstrumentationScope(name=SCOPE), log_records=records)])])


# -- sending ------------------------------------------------------------------------------

class OtlpExporter:
    """Sends OTLP/HTTP protobuf requests to ``url`` (a collector's base URL, e.g.
    ``http://127.0.0.1:4318``: metrics go to ``/v1/metrics``, logs to ``/v1/logs``) from a
    background thread. Never raises and never blocks its caller: requests wait in a queue
    of ``queue_size`` (a full queue drops the newest, counted), each POST has ``timeout``
    seconds and is tried again ``retries`` times on a connection error, 429 or 5xx; after a
    collector could not be reached, requests fail at once for ``cooldown`` (5) seconds.
    :attr:`stats` counts ``queued``, ``sent``, ``dropped``, ``failed`` and ``errors``
    (results that could not be encoded).

    >>> e = OtlpExporter("http://127.0.0.1:4318")
    >>> e
    OtlpExporter('http://127.0.0.1:4318')
    >>> e.close()
    """

    def __init__(self, url: str, *, service: str = "watchkeeper", timeout: float = 5.0,
                 queue_size: int = 1000, retries: int = 2, backoff: float = 0.5,
                 headers: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        for suffix in ("/v1/metrics", "/v1/logs"):
            self.url = self.url.removesuffix(suffix)
        self.service = service
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.headers = dict(headers if headers is not None else env_headers())
        self.stats: Counter[str] = Counter()
        self.started = datetime.now(UTC)
        self.cooldown = 5.0  # seconds a collector that could not be reached is not tried
        self._down_until = float("-inf")
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="watchkeeper-otlp", daemon=True)
        self._thread.start()

    # what the host calls: never raises
    def export_window(self, model: str, w: WindowResult) -> None:
        """A window's metrics and findings."""
        self._submit("/v1/metrics", lambda: metrics_request(window_metrics(model, w),
                                                             self.service))
        if w.findings:
            self._submit("/v1/logs", lambda: logs_request(finding_records(model, w),
                                                          self.service))

    def export_samples(self, families: list[tuple[str, str, bool,
                                                  list[tuple[dict[str, Any], float]]]]) -> None:
        """Service metrics as plain samples (see :func:`sample_metrics`), counted from the
        exporter's start."""
        self._submit("/v1/metrics", lambda: metrics_request(
            sample_metrics(families, self.started), self.service))

    def export_notifications(self, notifications: list[Notification]) -> None:
        """Incident transitions."""
        if notifications:
            self._submit("/v1/logs", lambda: logs_request(incident_records(notifications),
                                                          self.service))

    def export_check(self, result: CheckResult, model: str | None = None) -> None:
        """Every window of a batch check and the incident transitions its windows make
        (run through the server's alert lifecycle). ``model``: by default the suite's name
        (its file's, without the extension)."""
        try:
            name = model or PurePath(result.suite).stem or result.suite
            for w in result.windows:
                self.export_window(name, w)
            notes = result.track().notifications
            for n in notes:
                n.model = name
            self.export_notifications(notes)
        except Exception:  # exporting must never fail the check
            self.stats["errors"] += 1
            log.exception("OTLP export of the check failed")

    def _submit(self, path: str, build: Any) -> None:
        try:
            body = build().SerializeToString()
        except Exception:
            self.stats["errors"] += 1
            log.exception("OTLP: cannot encode an export request")
            return
        with self._lock:
            if self._closed:
                self.stats["dropped"] += 1
                return
            try:
                self._queue.put_nowait((path, body))
            except queue.Full:
                self.stats["dropped"] += 1
                return
            self.stats["queued"] += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            path, body = item
            try:
                ok = self._post(path, body)
            except Exception:  # never let the thread die
                log.exception("OTLP export failed")
                ok = False
            self.stats["sent" if ok else "failed"] += 1

    def _post(self, path: str, body: bytes) -> bool:
        if time.monotonic() < self._down_until:
            return False  # unreachable a moment ago: not tried again yet (counted failed)
        error, unreachable = "", False
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url + path, data=body, method="POST", headers={
                "Content-Type": "application/x-protobuf", "User-Agent": "watchkeeper",
                **self.headers})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                return True
            except urllib.error.HTTPError as e:
                error, unreachable = f"HTTP {e.code}", False
                if e.code not in (429, 502, 503, 504):
                    break
            except (urllib.error.URLError, OSError, ValueError) as e:
                error, unreachable = f"{type(e).__name__}: {getattr(e, 'reason', e)}", True
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt)
        if unreachable:  # what is queued behind fails at once for a while, not one by one
            self._down_until = time.monotonic() + self.cooldown
        log.warning("OTLP export to %s%s failed: %s", mask_url(self.url), path, error)
        return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds for the queue to be sent; whether it was."""
        deadline = time.monotonic() + timeout
        while self._pending() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        return not self._pending()

    def _pending(self) -> int:
        return self.stats["queued"] - self.stats["sent"] - self.stats["failed"]

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting up to ``timeout`` seconds), then stop; requests
        still queued then are dropped (counted)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
                break
            except queue.Full:
                break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive() and self._pending() > 0:
            self.stats["dropped"] += self._pending()

    def summary(self) -> str:
        s = self.stats
        return (f"{s['sent']} request(s) sent, {s['failed']} failed, {s['dropped']} dropped"
                + (f", {s['errors']} not encoded" if s["errors"] else ""))

    def __repr__(self) -> str:
        return f"OtlpExporter({mask_url(self.url)!r})"


def env_headers() -> dict[str, str]:
    """Headers from ``OTEL_EXPORTER_OTLP_HEADERS`` (``key=value,key2=value2``, values
    URL-encoded), as OpenTelemetry's own exporters read them (e.g. a collector's token)."""
    from urllib.parse import unquote

    out = {}
    for item in os.environ.get("OTEL_EXPORTER_OTLP_HEADERS", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip())] = unquote(value.strip())
    return out
