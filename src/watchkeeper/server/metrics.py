"""Prometheus exposition: collected from the hub's state at scrape time (no global registry)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watchkeeper.server.hub import Hub

_STATE = {"info": 0, "warning": 1, "critical": 2}


class HubCollector(Collector):
    """Per model and monitor: latest closed window's value, threshold and alert state;
    ingest counters; rows that arrived late; labels that matched no prediction."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "monitor", "column", "metric", "segment"]
        value = GaugeMetricFamily("watchkeeper_finding_value",
                                  "Value of each finding in the latest closed window",
                                  labels=labels)
        threshold = GaugeMetricFamily("watchkeeper_finding_threshold",
                                      "Threshold of each finding in the latest closed window",
                                      labels=labels)
        alert = GaugeMetricFamily("watchkeeper_alert_state",
                                  "0 ok/info, 1 warning, 2 critical, per finding", labels=labels)
        rows = GaugeMetricFamily("watchkeeper_window_rows", "Rows in the latest closed window",
                                 labels=["model"])
        ingested = CounterMetricFamily("watchkeeper_ingested_rows",
                                       "Rows accepted (durably stored) by kind",
                                       labels=["model", "kind"])
        batches = CounterMetricFamily("watchkeeper_ingested_batches",
                                      "Batches accepted by kind", labels=["model", "kind"])
        rejected = CounterMetricFamily("watchkeeper_rejected_batches",
                                       "Batches refused, by reason", labels=["reason"])
        late = CounterMetricFamily("watchkeeper_late_rows",
                                   "Rows folded into an already closed window", labels=["model"])
        dropped = GaugeMetricFamily("watchkeeper_sdk_dropped_rows",
                                    "Rows SDK clients report having dropped (buffer full, "
                                    "send failures), summed over clients", labels=["model"])
        unmatched = CounterMetricFamily("watchkeeper_unmatched_labels",
                                        "Labels whose id matched no kept prediction",
                                        labels=["model"])
        with self.hub._lock:
            models = dict(self.hub.models)
            counters = dict(self.hub.counters)
        for model, model_state in models.items():
            lives = [g.live for g in model_state.generations]
            closed = [w for live in lives for w in live.windows.values()
                      if w.state == "closed" and w.result]
            if closed:
                latest = max(closed, key=lambda w: w.key)
                rows.add_metric([model], latest.profile.rows)
                for f in latest.result.findings:  # type: ignore[union-attr]
                    key = [model, f.monitor, f.column or "", f.metric or "", f.segment or ""]
                    value.add_metric(key, f.value)
                    threshold.add_metric(key, f.threshold)
                    alert.add_metric(key, _STATE[f.severity.value])
            late.add_metric([model], sum(live.counters["late_rows"] for live in lives))
            unmatched.add_metric([model], counters.get(f"unmatched_labels:{model}", 0))
            dropped.add_metric([model], sum(self.hub.sdk_dropped.get(model, {}).values()))
        for key, n in counters.items():
            name, _, model = key.partition(":")
            if name.endswith("_rows"):
                ingested.add_metric([model, name.removesuffix("_rows")], n)
            elif name.endswith("_batches"):
                batches.add_metric([model, name.removesuffix("_batches")], n)
            elif name.startswith("rejected_") and not model:
                rejected.add_metric([name.removeprefix("rejected_")], n)
        yield from (value, threshold, alert, rows, ingested, batches, rejected, late, unmatched,
                    dropped)
