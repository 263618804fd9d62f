"""Prometheus exposition: collected from the hub's state at scrape time (no global registry)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watchkeeper.run.series import SERIES, window_series
from watchkeeper.server.auth import LoginLimiter
from watchkeeper.server.hub import Hub
from watchkeeper.server.ingest import IngestBudget

_STATE = {"info": 0, "warning": 1, "critical": 2}


class HubCollector(Collector):
    """Per model and monitor: latest closed window's value, threshold and alert state, and
    its measures (drift per column, performance, fairness, OOD share, latency, rules: see
    :mod:`watchkeeper.run.series`);
    ingest counters; rows that arrived late; labels that matched no prediction; batches set
    aside; whether this server folds, and how often it took or lost the fold lease; the
    ingest budget in use and the login limiter's state."""

    def __init__(self, hub: Hub, *, budget: IngestBudget | None = None,
                 limiter: LoginLimiter | None = None) -> None:
        self.hub = hub
        self.budget = budget
        self.limiter = limiter

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
        duplicates = CounterMetricFamily(
            "watchkeeper_duplicate_batches", "Batches sent again with the Idempotency-Key of "
            "one stored already: acknowledged again, not stored", labels=["model"])
        rejected = CounterMetricFamily("watchkeeper_rejected_batches",
                                       "Batches refused, by reason", labels=["reason"])
        late = CounterMetricFamily("watchkeeper_late_rows",
                                   "Rows folded into an already closed window", labels=["model"])
        bad_ts = CounterMetricFamily("watchkeeper_bad_timestamp_rows",
                                     "Rows whose _ts can name no window (±inf, before 1970, "
                                     "over a day ahead): windowed at their arrival time",
                                     labels=["model"])
        dropped = GaugeMetricFamily("watchkeeper_sdk_dropped_rows",
                                    "Rows SDK clients report having dropped (buffer full, "
                                    "send failures), summed over clients", labels=["model"])
        unmatched = CounterMetricFamily("watchkeeper_unmatched_labels",
                                        "Labels whose id matched no kept prediction",
                                        labels=["model"])
        personal = CounterMetricFamily(
            "watchkeeper_personal_data_columns",
            "Columns not in the suite that looked like personal data, hashed or dropped "
            "before storage (once per batch)", labels=["model", "action"])
        quarantined = GaugeMetricFamily(
            "watchkeeper_quarantined_batches",
            "Event batches set aside in the store (kept, not folded) because folding them "
            "failed repeatedly", labels=["model"])
        measures = {name: GaugeMetricFamily(f"watchkeeper_{name}", f"{text}, in the latest "
                                            "closed window", labels=["model", *names])
                    for name, (text, names) in SERIES.items()}
        models = self.hub.states()
        counters = dict(self.hub.counters)
        set_aside = self.hub.quarantined
        for model, model_state in models.items():
            lives = [g.live for g in model_state.generations]
            closed = [(w, w.result) for live in lives for w in list(live.windows.values())
                      if w.state == "closed" and w.result]
            if closed:
                latest, result = max(closed, key=lambda pair: pair[0].key)
                rows.add_metric([model], latest.profile.rows)
                for f in result.findings:
                    names = [model, f.monitor, f.column or "", f.metric or "", f.segment or ""]
                    value.add_metric(names, f.value)
                    threshold.add_metric(names, f.threshold)
                    alert.add_metric(names, _STATE[f.severity.value])
                for name, series_labels, number in window_series(result.metrics):
                    measures[name].add_metric(
                        [model, *(series_labels[k] for k in SERIES[name][1])], number)
            late.add_metric([model], sum(live.counters["late_rows"] for live in lives))
            bad_ts.add_metric([model], sum(live.counters["bad_timestamps"] for live in lives))
            unmatched.add_metric([model], counters.get(f"unmatched_labels:{model}", 0))
            dropped.add_metric([model], sum(self.hub.sdk_dropped.get(model, {}).values()))
        for model in sorted(set(models) | set(set_aside)):
            quarantined.add_metric([model], set_aside.get(model, 0))
        for key, n in counters.items():
            name, _, model = key.partition(":")
            if name.endswith("_rows"):
                ingested.add_metric([model, name.removesuffix("_rows")], n)
            elif name.endswith("_batches"):
                batches.add_metric([model, name.removesuffix("_batches")], n)
            elif name.startswith("personal_columns_"):
                personal.add_metric([model, name.removeprefix("personal_columns_")], n)
            elif name == "duplicates":
                duplicates.add_metric([model], n)
            elif name.startswith("rejected_") and not model:
                rejected.add_metric([name.removeprefix("rejected_")], n)
        yield from (value, threshold, alert, rows, ingested, batches, duplicates, rejected,
                    late, bad_ts, unmatched, dropped, quarantined, personal)
        yield from measures.values()
        yield from self._fold(counters)
        yield from self._limits()

    def _fold(self, counters: dict[str, int]) -> Iterator[Metric]:
        """Whether this server folds the event log; the fold lease changing hands."""
        leader = GaugeMetricFamily("watchkeeper_fold_leader",
                                   "1 when this server folds the event log (holds the fold "
                                   "lease, or runs without one), else 0")
        leader.add_metric([], 1 if self.hub.folding else 0)
        changes = CounterMetricFamily("watchkeeper_fold_lease_changes",
                                      "Times this server took the fold lease (taken) and "
                                      "stopped folding because it lost it (lost)",
                                      labels=["change"])
        changes.add_metric(["taken"], counters.get("lease_taken", 0))
        changes.add_metric(["lost"], counters.get("lease_lost", 0))
        errors = CounterMetricFamily("watchkeeper_fold_lease_errors",
                                     "Failed attempts to take or renew the fold lease")
        errors.add_metric([], counters.get("lease_errors", 0))
        failed = CounterMetricFamily("watchkeeper_fold_errors",
                                     "Fold steps that failed (retried at the next step)")
        failed.add_metric([], counters.get("fold_errors", 0))
        yield from (leader, changes, errors, failed)

    def _limits(self) -> Iterator[Metric]:
        """The ingest budget and the login limiter (refusals are in rejected_batches)."""
        if self.budget is not None:
            budget = self.budget
            limit = GaugeMetricFamily("watchkeeper_ingest_budget_bytes",
                                      "Most bytes of request bodies ingested at once")
            limit.add_metric([], budget.limit)
            used = GaugeMetricFamily("watchkeeper_ingest_inflight_bytes",
                                     "Bytes of request bodies being ingested now")
            used.add_metric([], budget.in_use)
            peak = GaugeMetricFamily("watchkeeper_ingest_inflight_peak_bytes",
                                     "Most bytes of request bodies ingested at once so far")
            peak.add_metric([], budget.peak)
            yield from (limit, used, peak)
        if self.limiter is not None:
            tracked, blocked = self.limiter.state()
            addresses = GaugeMetricFamily("watchkeeper_login_failing_addresses",
                                          "Client addresses with failed logins or wrong "
                                          "bearer tokens in the window (tracked), and those "
                                          "refused now (blocked)",
                                          labels=["state"])
            addresses.add_metric(["tracked"], tracked)
            addresses.add_metric(["blocked"], blocked)
            forgotten = CounterMetricFamily("watchkeeper_login_forgotten_addresses",
                                            "Addresses the login limiter stopped tracking to "
                                            "stay within its capacity")
            forgotten.add_metric([], self.limiter.forgotten)
            yield from (addresses, forgotten)
