"""Shared by tests of several stages: where the data sets are, the CLI as a user runs it,
fairness tables with known rates, a stored window record, an HTTP receiver on loopback."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import types
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from watchkeeper.store import WindowRecord
from watchkeeper.suite import file as suitefile

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
ACS = DATA / "acs_employment_ma"
ADULT = DATA / "adult"
#: tests/data: suite files and inputs written for the tests
TEST_DATA = Path(__file__).resolve().parent / "data"
WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")


def benchmark(name: str) -> types.ModuleType:
    """The module ``benchmarks/<name>.py`` (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true"}
    return subprocess.run([str(WATCHKEEPER), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def two_groups(rate_a: float, rate_b: float = 0.5, n: int = 20_000) -> pa.Table:
    """Groups a and b of n/2 rows each, with exactly these selection rates."""
    group = np.where(np.arange(n) < n // 2, "a", "b")
    step = np.arange(n) % (n // 2) % 200
    pred = np.where(group == "a", step < 200 * rate_a, step < 200 * rate_b).astype(int)
    return pa.table({"id": np.arange(n), "gender": group, "target": (step % 2).astype(int),
                     "prediction": pred})


def policy_suite(reference: pa.Table, min_di_ratio: float) -> wk.Suite:
    """A suite whose fairness monitor's ``min_di_ratio`` is edited in its suite file."""
    document = wk.init(reference).to_dict()
    monitor = next(m for m in document["monitors"] if m["type"] == "fairness")
    monitor["min_di_ratio"] = min_di_ratio
    return wk.Suite.from_dict(suitefile.parse(suitefile.dump(document), "suite"))


def window(start: datetime, *, rows: int = 10, state: str = "closed", **profile) -> WindowRecord:
    return WindowRecord(
        model="m",
        start=start,
        end=start + timedelta(hours=1),
        suite_version=1,
        rows=rows,
        state=state,
        profile={"rows": rows, **profile},
        metrics={"accuracy": 0.9},
    )


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (a free port) in a thread, for ``with`` blocks."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Receiver(LoopbackServer):
    """A JSON-recording HTTP server on 127.0.0.1 (notifier tests); answers with scripted
    status codes."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "json": json.loads(body)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)


class OtlpReceiver(LoopbackServer):
    """A real OTLP/HTTP receiver on 127.0.0.1: decodes each POST to /v1/metrics and /v1/logs
    with the opentelemetry-proto classes and answers as a collector does (200, the export
    response in protobuf). ``hold`` (a threading.Event) makes it wait before answering."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics

        self.metrics: list[Any] = []  # ExportMetricsServiceRequest, in arrival order
        self.logs: list[Any] = []  # ExportLogsServiceRequest
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hold is not None:
                    hold.wait(30)
                receiver.content_types.append(self.headers.get("Content-Type", ""))
                if self.path == "/v1/metrics":
                    receiver.metrics.append(metrics.ExportMetricsServiceRequest.FromString(body))
                    answer = metrics.ExportMetricsServiceResponse().SerializeToString()
                elif self.path == "/v1/logs":
                    receiver.logs.append(logs.ExportLogsServiceRequest.FromString(body))
                    answer = logs.ExportLogsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)

    def points(self) -> list[tuple[str, dict[str, Any], float]]:
        """Every data point received (gauges and sums): (metric name, attributes, value)."""
        return [(m.name, otlp_attributes(p.attributes), p.as_double)
                for request in self.metrics for rm in request.resource_metrics
                for sm in rm.scope_metrics for m in sm.metrics
                for p in (m.gauge.data_points if m.HasField("gauge") else m.sum.data_points)]

    def records(self) -> list[Any]:
        """Every log record received."""
        return [r for request in self.logs for rl in request.resource_logs
                for sl in rl.scope_logs for r in sl.log_records]



def otlp_attributes(kvs: Any) -> dict[str, Any]:
    """OTLP KeyValues as a dict (arrays as lists)."""
    def value(v: Any) -> Any:
        kind = v.WhichOneof("value")
        if kind == "array_value":
            return [value(x) for x in v.array_value.values]
        return getattr(v, kind)
    return {kv.key: value(kv.value) for kv in kvs}


def write_delta(root: Path, parts: list[pa.Table]) -> list[pa.Table]:
    """A Delta table written by hand as the protocol lays it out (no Delta library):
    part ``i`` in ``part-i.parquet``; commit 0 adds parts 0 and 1, commit 1 adds part 2,
    commit 2 removes part 1 and adds part 3, then a checkpoint at version 2
    (``_last_checkpoint``) after which the commits up to it are cleaned away (only the
    checkpoint knows them), commit 3 adds part 4 and removes part 0. Returns the parts
    live at the end (2, 3, 4), whose rows alone are the table's; the removed files stay
    on disk."""
    import pyarrow.parquet as pq

    log = root / "_delta_log"
    log.mkdir(parents=True)
    paths = [f"part-{i}.parquet" for i in range(len(parts))]
    for path, part in zip(paths, parts, strict=True):
        pq.write_table(part, root / path)

    def add(i: int) -> dict[str, Any]:
        return {"path": paths[i], "partitionValues": {}, "size": (root / paths[i]).stat().st_size,
                "modificationTime": 1_700_000_000_000 + i, "dataChange": True}

    def remove(i: int) -> dict[str, Any]:
        return {"path": paths[i], "deletionTimestamp": 1_700_000_100_000, "dataChange": True}

    schema = {"type": "struct", "fields": [
        {"name": f.name, "type": {"double": "double", "string": "string",
                                  "int64": "long"}[str(f.type)], "nullable": True,
         "metadata": {}} for f in parts[0].schema]}
    commits = [
        [{"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
         {"metaData": {"id": "t", "format": {"provider": "parquet", "options": {}},
                       "schemaString": json.dumps(schema), "partitionColumns": [],
                       "configuration": {}, "createdTime": 1_700_000_000_000}},
         {"add": add(0)}, {"add": add(1)}],
        [{"commitInfo": {"operation": "WRITE"}}, {"add": add(2)}],
        [{"remove": remove(1)}, {"add": add(3)}],
        [{"add": add(4)}, {"remove": remove(0)}],
    ]
    for version, actions in enumerate(commits):
        text = "\n".join(json.dumps(a) for a in actions) + "\n"
        (log / f"{version:020d}.json").write_text(text)
    live2 = [add(2), add(3)]
    checkpoint = pa.table({
        "add": pa.array([*live2, None], pa.struct([("path", pa.string()),
                                                   ("size", pa.int64()),
                                                   ("dataChange", pa.bool_())])),
        "remove": pa.array([None, None, {"path": paths[1], "deletionTimestamp": 1,
                                         "dataChange": True}],
                           pa.struct([("path", pa.string()), ("deletionTimestamp", pa.int64()),
                                      ("dataChange", pa.bool_())]))})
    pq.write_table(checkpoint, log / f"{2:020d}.checkpoint.parquet")
    (log / "_last_checkpoint").write_text(json.dumps({"version": 2, "size": 3}))
    for version in range(3):  # cleaned up: only the checkpoint has them now
        (log / f"{version:020d}.json").unlink()
    return [parts[2], parts[3], parts[4]]
