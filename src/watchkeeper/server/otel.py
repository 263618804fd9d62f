"""The server's own metrics to OpenTelemetry: what ``/metrics`` collects (HubCollector),
pushed every ``interval`` seconds through the OTLP exporter, under the same names, with the
labels of the ``ml.*`` conventions (``model`` → ``ml.model``, ...). Collection stays in
metrics.py; this only reads the registry, as a Prometheus scrape does."""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry

log = logging.getLogger("watchkeeper.server")
#: Prometheus labels → OTel attributes
LABELS = {"model": "ml.model", "monitor": "ml.monitor", "column": "ml.column",
          "metric": "ml.metric", "segment": "ml.segment", "family": "ml.family"}


def collect(registry: CollectorRegistry) -> list[tuple[str, str, bool,
                                                         list[tuple[dict[str, Any], float]]]]:
    """Each sample of the registry as ``(name, description, counter, [(attributes, value)])``
    (counters' ``_created`` samples left out)."""
    out = []
    for family in registry.collect():
        counter = family.type == "counter"
        by_name: dict[str, list[tuple[dict[str, Any], float]]] = {}
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            by_name.setdefault(s.name, []).append(
                ({LABELS.get(k, k): v for k, v in s.labels.items()}, s.value))
        out += [(name, family.documentation, counter, samples)
                for name, samples in by_name.items()]
    return out


class MetricsPusher:
    """Every ``interval`` seconds, the registry's metrics to ``exporter.export_samples``
    (queued, never blocking); once more when stopped."""

    def __init__(self, registry: CollectorRegistry, exporter: Any, interval: float = 60.0
                 ) -> None:
        self.registry = registry
        self.exporter = exporter
        self.interval = max(0.1, float(interval))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchkeeper-otlp-metrics",
                                        daemon=True)

    def push(self) -> None:
        try:
            self.exporter.export_samples(collect(self.registry))
        except Exception:  # the server goes on whatever the export does
            log.exception("OTLP: collecting the server's metrics failed")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.push()
