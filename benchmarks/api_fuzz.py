"""Fuzz every operation of the HTTP API with schemathesis (issue #19): 0 server errors, and
no traceback in any answer or in the server's log.

A fresh ``watchkeeper serve`` runs on 127.0.0.1 (``tests/server_helpers.py``) with a SQLite
store and model ``m`` (the suite of ``tests/server_helpers.py``), fed a few batches first
so that windows and findings exist. schemathesis (``pip install schemathesis``; not a
dependency of watchkeeper) then runs ``st run <server>/openapi.json`` twice with the write
token, the ``not_a_server_error`` check, ``--max-examples`` cases per operation and phase and
a fixed seed: once with every parameter generated (unknown models mostly: 404s), once with
the model fixed to ``m`` (``schemathesis.toml``: ``parameters."path.model"``). Counted from
its NDJSON report: requests by status, and answers whose body holds "Traceback". The server
log is searched for tracebacks too. It asserts nothing; the Markdown report goes to stdout
and to ``benchmarks/results/api_fuzz.md``. Run from the repository root::

    .venv/bin/python benchmarks/api_fuzz.py                    # 40 examples per operation
    .venv/bin/python benchmarks/api_fuzz.py --max-examples 100
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.server_helpers import WRITE, Server, _suite_text, request
from watchkeeper.wire import to_ipc

RESULTS = Path(__file__).parent / "results" / "api_fuzz.md"


def responses(report: Path) -> Iterator[dict[str, Any]]:
    """Every response recorded in a schemathesis NDJSON report."""

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "response" and isinstance(value, dict) and "status_code" in value:
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for line in report.read_text().splitlines():
        yield from walk(json.loads(line))


def text_of(response: dict[str, Any]) -> str:
    content = response.get("content") or ""
    if isinstance(content, dict) and "$base64" in content:
        return base64.b64decode(content["$base64"]).decode("utf-8", "replace")
    return str(content)


def fuzz(server: Server, workdir: Path, name: str, config: str,
         max_examples: int) -> dict[str, Any]:
    run = workdir / name
    run.mkdir()
    (run / "schemathesis.toml").write_text(config)
    st = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    started = time.monotonic()
    done = subprocess.run(
        [st, "run", f"{server.url}/openapi.json", "-H", f"Authorization: Bearer {WRITE}",
         "-c", "not_a_server_error", "-n", str(max_examples), "--seed", "19", "--workers", "1",
         "--request-timeout", "30", "--report", "ndjson", "--report-dir", str(run)],
        cwd=run, capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - started
    statuses: Counter[int] = Counter()
    tracebacks = 0
    for report in run.glob("*.ndjson"):
        for response in responses(report):
            statuses[response["status_code"]] += 1
            tracebacks += "Traceback" in text_of(response)
    summary = [line for line in done.stdout.splitlines()
               if "generated" in line or "Server error" in line or "failure" in line]
    if "= FAILURES =" in done.stdout:  # what to reproduce, as schemathesis words it
        print(done.stdout.split("= FAILURES =", 1)[1].split("= WARNINGS =", 1)[0])
    return {"requests": sum(statuses.values()), "by status": dict(sorted(statuses.items())),
            "server errors (5xx)": sum(n for s, n in statuses.items() if s >= 500),
            "tracebacks in answers": tracebacks, "schemathesis": " / ".join(summary),
            "seconds": round(took)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-examples", type=int, default=40)
    args = parser.parse_args()
    lines = ["# schemathesis over the OpenAPI (issue #19)", "",
             f"`{' '.join(sys.argv[1:]) or '(defaults)'}`; {time.strftime('%Y-%m-%d %H:%M')}",
             ""]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "suite.yaml").write_text(_suite_text())
        server = Server(workdir, "--store", f"sqlite:///{workdir / 'wk.db'}", "--suite",
                        "m=suite.yaml", "--window", "1s", "--grace", "1s").start(timeout=60)
        try:
            rng = np.random.default_rng(0)
            for i in range(5):
                table = pa.table({"x": rng.normal(3, 1, 500), "y": rng.choice(["a", "c"], 500),
                                  "_ts": np.full(500, time.time() - 10 + i)})
                request(server.url + "/v1/models/m/events", to_ipc(table), token=WRITE,
                        content_type="application/vnd.apache.arrow.stream")
            for name, config in (("any model", ""),
                                 ("model m", '[parameters]\n"path.model" = "m"\n')):
                result = fuzz(server, workdir, name.replace(" ", "-"), config,
                              args.max_examples)
                line = f"- **{name}**: " + "; ".join(f"{k} {v}" for k, v in result.items())
                print(line, flush=True)
                lines.append(line)
        finally:
            server.stop()
        log = server.logs()
        if "Traceback" in log:
            print(log[log.index("Traceback"):][:3000])
        line = f"- server log: {log.count('Traceback')} tracebacks, " \
               f"{len(log.splitlines())} lines"
        print(line)
        lines.append(line)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
