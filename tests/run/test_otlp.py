"""OpenTelemetry export against a real OTLP/HTTP receiver on 127.0.0.1 that decodes the
protobuf payloads: metric names, values and attributes, finding and incident events; a
dead or stuck receiver fails nothing."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from tests.helpers import OtlpReceiver, otlp_attributes, run
from watchkeeper.monitors.base import FAMILIES, Finding, Severity
from watchkeeper.run.check import WindowResult
from watchkeeper.run.otlp import OtlpExporter, window_metrics

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def drifting(n: int = 4_000, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """A reference and four windows of 1000 rows, the last three with x shifted."""
    rng = np.random.default_rng(seed)
    ref = pa.table({"x": rng.normal(size=n), "y": rng.choice(["a", "b", "c"], n),
                    "ts": [T0 - timedelta(days=1, seconds=i) for i in range(n)]})
    x = rng.normal(size=4_000)
    x[1_000:] += 1.5
    ts = [T0 + timedelta(hours=i // 1_000) for i in range(4_000)]
    cur = pa.table({"x": x, "y": rng.choice(["a", "b", "c"], 4_000), "ts": ts})
    return ref, cur


@pytest.fixture(scope="module")
def result() -> wk.CheckResult:
    ref, cur = drifting()
    return wk.init(ref, timestamp="ts").check(cur, window="1h")


def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_check_is_exported_as_metrics_and_events(result: wk.CheckResult):
    assert [len(w.findings) > 0 for w in result.windows][1:] == [True] * 3
    with OtlpReceiver() as r:
        e = OtlpExporter(r.url + "/v1/metrics")  # a signal's URL is taken as the base too
        e.export_check(result, model="churn")
        e.close()
    assert e.stats["failed"] == e.stats["dropped"] == e.stats["errors"] == 0
    assert set(r.content_types) == {"application/x-protobuf"}
    resource = otlp_attributes(r.metrics[0].resource_metrics[0].resource.attributes)
    assert resource["service.name"] == "watchkeeper" and resource["service.version"]
    assert r.metrics[0].resource_metrics[0].scope_metrics[0].scope.name == "watchkeeper"
    points = r.points()
    last = result.windows[-1]
    # per window: rows, and per column the drift distance and threshold
    rows = [v for name, a, v in points if name == "ml.window.rows"]
    assert rows == [float(w.rows) for w in result.windows] == [1000.0] * 4
    drift = last.metrics["drift"]["x"]
    got = {a["ml.monitor"]: v for name, a, v in points[-100:]  # the last window's
           if name == "ml.drift.distance" and a["ml.column"] == "x"}
    assert got == {"feature_drift": pytest.approx(drift["js"])}
    [threshold] = [(a, v) for name, a, v in points if name == "ml.drift.threshold"
                   and a["ml.column"] == "x"][-1:]
    assert threshold == ({"ml.model": "churn", "ml.column": "x", "ml.monitor": "feature_drift"},
                         pytest.approx(drift["threshold"]))
    # every finding of the last window: value, threshold, severity level, by its attributes
    f = next(f for f in last.findings if f.column == "x")
    attrs = {"ml.model": "churn", "ml.monitor": f.monitor, "ml.family": f.family,
             "ml.column": "x", "ml.severity": f.severity.value}
    if f.metric:
        attrs["ml.metric"] = f.metric
    assert (("ml.finding.value", attrs, pytest.approx(f.value)) in points
            and ("ml.finding.threshold", attrs, pytest.approx(f.threshold)) in points)
    assert ("ml.finding.severity", attrs, {"warning": 1.0, "critical": 2.0}[f.severity.value]
            ) in points
    # times: the window's start and end
    metric = r.metrics[-1].resource_metrics[0].scope_metrics[0].metrics[0]
    point = metric.gauge.data_points[0]
    assert (point.start_time_unix_nano, point.time_unix_nano) == (
        int(last.start.timestamp() * 1e9), int(last.end.timestamp() * 1e9))
    # events: one ml.finding per finding, then the incident's transitions
    records = r.records()
    findings = [x for x in records if x.event_name == "ml.finding"]
    assert len(findings) == sum(len(w.findings) for w in result.windows)
    rec = next(x for x in findings if otlp_attributes(x.attributes)["ml.window"] == last.label
               and otlp_attributes(x.attributes)["ml.monitor"] == f.monitor
               and otlp_attributes(x.attributes).get("ml.column") == "x")
    assert rec.body.string_value == f.message
    assert (rec.severity_text, rec.severity_number) == (
        {"warning": ("WARN", 13), "critical": ("ERROR", 17)}[f.severity.value])
    assert otlp_attributes(rec.attributes)["ml.value"] == pytest.approx(f.value)
    incidents = [otlp_attributes(x.attributes) for x in records if x.event_name == "ml.incident"]
    assert incidents and incidents[0]["ml.incident.transition"] == "open"
    assert incidents[0]["ml.model"] == "churn"
    assert incidents[0]["ml.family"] and set(incidents[0]["ml.family"]) <= set(FAMILIES)
    assert incidents[0]["ml.incident.id"] == result.incidents()[0]["id"]


def test_window_metrics_name_every_family():
    metrics = {
        "realised": {"rows": 500.0, "labeled": 400.0, "accuracy": 0.81, "f1": float("nan")},
        "estimated": {"accuracy": 0.8}, "estimated_band": {"accuracy": [0.78, 0.83]},
        "fairness": {"SEX": {"dp_difference": [0.12, 0.05, 0.19], "eo_difference": 0.07,
                             "di_ratio": 0.85}},
        "security": {"ood_share": 0.02, "ood_rows": 10},
        "latency_ms": {"p50": 12.5, "p99": 80.0}, "label_coverage": 0.8,
        "drift": {"AGEP": {"js": 0.21, "threshold": 0.06}}}
    finding = Finding("demographic_parity", "fairness", "SEX", 0.12, 0.1, Severity.WARNING,
                      "gap", segment="SEX=2", metric="dp_difference")
    w = WindowResult("w1", 500, [finding], None, T0, T0 + timedelta(hours=1),  # type: ignore[arg-type]
                     metrics)
    got = {(m.name, tuple(sorted(otlp_attributes(p.attributes).items())), p.as_double)
           for m in window_metrics("m", w) for p in m.gauge.data_points}
    model = ("ml.model", "m")
    assert got == {
        ("ml.window.rows", (model,), 500.0),
        ("ml.drift.distance", (("ml.column", "AGEP"), model, ("ml.monitor", "feature_drift")),
         0.21),
        ("ml.drift.threshold", (("ml.column", "AGEP"), model, ("ml.monitor", "feature_drift")),
         0.06),
        ("ml.performance.realised", (("ml.metric", "accuracy"), model), 0.81),  # f1 NaN: none
        ("ml.performance.estimated", (("ml.metric", "accuracy"), model), 0.8),
        ("ml.performance.estimated.lower", (("ml.metric", "accuracy"), model), 0.78),
        ("ml.performance.estimated.upper", (("ml.metric", "accuracy"), model), 0.83),
        ("ml.fairness.gap", (("ml.column", "SEX"), ("ml.metric", "dp_difference"), model), 0.12),
        ("ml.fairness.gap", (("ml.column", "SEX"), ("ml.metric", "eo_difference"), model), 0.07),
        ("ml.fairness.di_ratio", (("ml.column", "SEX"), model), 0.85),
        ("ml.ood.share", (model,), 0.02), ("ml.ood.rows", (model,), 10.0),
        ("ml.service.latency", (model, ("ml.statistic", "p50")), 12.5),
        ("ml.service.latency", (model, ("ml.statistic", "p99")), 80.0),
        ("ml.label_coverage", (model,), 0.8),
        *((name, (("ml.column", "SEX"), ("ml.family", "fairness"), ("ml.metric", "dp_difference"),
                  model, ("ml.monitor", "demographic_parity"), ("ml.segment", "SEX=2"),
                  ("ml.severity", "warning")), v)
          for name, v in [("ml.finding.value", 0.12), ("ml.finding.threshold", 0.1),
                          ("ml.finding.severity", 1.0)]),
    }
    units = {m.name: m.unit for m in window_metrics("m", w)}
    assert units["ml.service.latency"] == "ms" and units["ml.window.rows"] == "{row}"


def test_a_dead_receiver_fails_nothing(result: wk.CheckResult):
    e = OtlpExporter(dead_url(), timeout=2.0, retries=1, backoff=0.0)
    e.export_check(result)  # never raises
    e.close()
    assert e.stats["failed"] == e.stats["queued"] > 0 and e.stats["sent"] == 0


def test_a_stuck_receiver_drops_what_does_not_fit_and_never_blocks(result: wk.CheckResult):
    hold = threading.Event()
    with OtlpReceiver(hold) as r:
        e = OtlpExporter(r.url, queue_size=2, timeout=30.0)
        for _ in range(5):
            e.export_window("m", result.windows[-1])  # 2 requests each (metrics and events)
        assert e.stats["dropped"] >= 10 - 2 - 1  # queued 2, one more being sent at most
        hold.set()
        assert e.flush(timeout=30)
        e.close()
    assert e.stats["sent"] == e.stats["queued"] == len(r.metrics) + len(r.logs)
    assert e.stats["sent"] + e.stats["dropped"] == 10


def test_check_cli_exports_and_a_dead_collector_is_one_warning(tmp_path: Path):
    ref, cur = drifting()
    wk.init(ref, timestamp="ts").save(tmp_path / "s.yaml")
    pq.write_table(cur, tmp_path / "cur.parquet")
    with OtlpReceiver() as r:
        done = run("check", "cur.parquet", "--suite", "s.yaml", "--window", "1h",
                   "--otlp", r.url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted({a["ml.model"] for _, a, _ in r.points()}) == ["s"]
    assert len([p for p in r.points() if p[0] == "ml.window.rows"]) == 4
    dead = run("check", "cur.parquet", "--suite", "s.yaml", "--window", "1h", "--fail-on",
               "critical", "--otlp", dead_url(), cwd=tmp_path)
    assert dead.returncode in (0, 1)  # as without --otlp: the export decides nothing
    assert "--otlp: 0 request(s) sent" in dead.stderr

