"""Benchmark: a model server at a fixed request rate through an outage of its watchkeeper
server, then stopped with SIGTERM. Are rows counted = rows served, and is the model
server's latency unchanged?

The model server is a FastAPI app under uvicorn: a scikit-learn logistic regression on UCI
Adult's numeric columns, called through ``wk.timed(model.predict_proba)`` on a 2-D array,
with :class:`~watchkeeper.sdk.RemoteSink` and :class:`~watchkeeper.sdk.ASGIMiddleware`
(:data:`APP`; ``examples/fastapi_app.py``'s full pipeline costs too much per request for
200 req/s on two shared cores). The watchkeeper server is ``watchkeeper serve`` with a
SQLite store; both on 127.0.0.1 in processes of their own. A load generator sends
``--rate`` requests per second (one person each, open loop: latency is measured from each
request's scheduled time, so a stall is not hidden) for ``--seconds``. Two runs:

* ``steady``: the watchkeeper server is up throughout;
* ``outage``: it is killed (SIGKILL: connections refused) ``--outage-at`` seconds in and
  started again on the same port and store ``--outage`` seconds later.

After the load, the model server gets SIGTERM (its SDK flushes what it still holds), and
the rows in the watchkeeper server's windows are counted. Reported per run: requests
served, rows counted, latency p50/p99/max over the run and over the outage's span, and the
SDK's own figures from the model server's log.

Run it from the repository root with the project venv (about 2 minutes with defaults)::

    .venv/bin/python benchmarks/bench_sdk_outage.py
    .venv/bin/python benchmarks/bench_sdk_outage.py --seconds 40 --outage-at 5 --outage 30

The Markdown report goes to stdout and ``benchmarks/results/sdk_outage.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))

from tests.server_helpers import READ, WRITE, Server, free_port, request  # noqa: E402

RESULT = BENCH_DIR / "results" / "sdk_outage.md"
ADULT = REPO / "data" / "adult"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income"]
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]

APP = f"""
import os
import numpy as np
import pandas as pd
from fastapi import FastAPI
from sklearn.linear_model import LogisticRegression
from watchkeeper.sdk import ASGIMiddleware, Client, RemoteSink, lifespan

NUMERIC = {NUMERIC!r}
train = pd.read_csv({str(ADULT / "adult.data")!r}, names={COLUMNS!r}, skipinitialspace=True)
model = LogisticRegression(max_iter=1000).fit(train[NUMERIC].to_numpy(float),
                                              train["income"] == ">50K")
wk = Client(RemoteSink(os.environ["WATCHKEEPER_URL"], "adult",
                       token=os.environ["WATCHKEEPER_WRITE_TOKEN"]),
            feature_names=NUMERIC, proba="score")
predict_proba = wk.timed(model.predict_proba)
app = FastAPI(lifespan=lifespan(wk))
app.add_middleware(ASGIMiddleware, client=wk)


@app.post("/predict")
def predict(rows: list[list[float]]) -> dict[str, list[float]]:
    return {{"scores": predict_proba(np.asarray(rows, dtype=float))[:, 1].tolist()}}


@app.get("/healthz")
def health() -> dict[str, str]:
    return {{"status": "ok"}}
"""


def adult(name: str) -> Any:
    import pandas as pd

    frame = pd.read_csv(ADULT / name, names=COLUMNS, skipinitialspace=True, comment="|")
    frame["label"] = (frame["income"].str.rstrip(".") == ">50K").astype(int)
    return frame


class ModelServer:
    """The example app under uvicorn, as a process of its own."""

    def __init__(self, workdir: Path, watchkeeper_url: str) -> None:
        self.port = free_port()
        self.log_path = workdir / f"model-{self.port}.log"
        env = {**os.environ, "WATCHKEEPER_URL": watchkeeper_url,
               "WATCHKEEPER_WRITE_TOKEN": WRITE, "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1"}
        (workdir / "model_app.py").write_text(APP)
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(workdir), "model_app:app",
             "--port", str(self.port), "--log-level", "warning"],
            cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log_path.read_text())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(self.log_path.read_text())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        self.log.close()
        return code


def drive(port: int, people: list[str], rate: float, seconds: float, threads: int = 8
          ) -> tuple[np.ndarray, np.ndarray, int]:
    """Open-loop load: request k is due at start + k / rate. Returns each request's due time
    (seconds from start), its latency from that time (ms) and the failures."""
    total = int(rate * seconds)
    due = np.arange(total) / rate
    latency = np.full(total, np.nan)
    failures = [0]
    start = time.perf_counter() + 0.5

    def worker(first: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for k in range(first, total, threads):
            wait = start + due[k] - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                conn.request("POST", "/predict", body=people[k % len(people)],
                             headers={"Content-Type": "application/json",
                                      "X-Client-Id": f"client-{k % 20}"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            if ok:
                latency[k] = (time.perf_counter() - start - due[k]) * 1e3
            else:
                failures[0] += 1
        conn.close()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return due, latency, failures[0]


def counted(server: Server) -> int:
    _, doc = request(server.url + "/v1/models/adult/windows", token=READ)
    return sum(w["rows"] for w in doc["windows"])


def run(workdir: Path, suite: Path, people: list[str], args: argparse.Namespace,
        outage: bool) -> dict[str, Any]:
    store = workdir / f"{'outage' if outage else 'steady'}.db"
    server = Server(workdir, "--store", f"sqlite:///{store}", "--suite", f"adult={suite}",
                    "--window", "1h").start()
    model = ModelServer(workdir, server.url)
    timeline: list[str] = []
    try:
        def break_and_mend() -> None:
            time.sleep(0.5 + args.outage_at)
            server.kill9()
            timeline.append(f"killed at {args.outage_at:g} s")
            time.sleep(args.outage)
            server.start()
            timeline.append(f"back at {args.outage_at + args.outage:g} s")

        chaos = threading.Thread(target=break_and_mend) if outage else None
        if chaos is not None:
            chaos.start()
        due, latency, failures = drive(model.port, people, args.rate, args.seconds)
        if chaos is not None:
            chaos.join()
        served = int(np.isfinite(latency).sum())
        stopped = time.monotonic()
        code = model.stop()
        deadline = time.monotonic() + 120
        rows = counted(server)
        while rows < served and time.monotonic() < deadline:
            time.sleep(0.5)
            rows = counted(server)
        settle = time.monotonic() - stopped
    finally:
        if model.proc.poll() is None:
            model.proc.kill()
        server.stop()
    ok = latency[np.isfinite(latency)]
    span = (due >= args.outage_at) & (due < args.outage_at + args.outage) & np.isfinite(latency)
    log = model.log_path.read_text(errors="replace")
    return {"run": "outage" if outage else "steady", "served": served, "failed": failures,
            "counted": rows, "exit": code, "settle_s": settle,
            "p50": float(np.percentile(ok, 50)), "p99": float(np.percentile(ok, 99)),
            "max": float(ok.max()),
            "span_p99": float(np.percentile(latency[span], 99)) if span.any() else None,
            "timeline": ", ".join(timeline), "sdk_warnings": [
                line for line in log.splitlines() if "watchkeeper" in line][:3]}


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# SDK through an outage of the watchkeeper server",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), Python {platform.python_version()}. "
        f"FastAPI + scikit-learn (`APP` in the script) under uvicorn, {args.rate:g} req/s "
        f"open loop for {args.seconds:g} s, one person per request; outage: watchkeeper "
        f"server killed (SIGKILL) at {args.outage_at:g} s for {args.outage:g} s, restarted "
        "on the same port and store; then SIGTERM to the model server.",
        "",
        "| run | served | failed | rows counted | counted = served | p50 ms | p99 ms | max ms "
        "| p99 ms during the outage span | model server exit | settle s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        span = f"{r['span_p99']:.1f}" if r["span_p99"] is not None else "–"
        lines.append(f"| {r['run']} | {r['served']} | {r['failed']} | {r['counted']} | "
                     f"{'yes' if r['counted'] == r['served'] else 'NO'} | {r['p50']:.1f} | "
                     f"{r['p99']:.1f} | {r['max']:.0f} | {span} | {r['exit']} | "
                     f"{r['settle_s']:.1f} |")
    lines += ["", "Latency is from each request's scheduled time (a stall shows). "
              "`settle s`: from SIGTERM to the model server until the watchkeeper server "
              "counted every served row.", ""]
    for r in results:
        if r["timeline"] or r["sdk_warnings"]:
            lines.append(f"- {r['run']}: {r['timeline']}; SDK log: "
                         f"{json.dumps(r['sdk_warnings'])}")
    lines += ["", "Rerun: `.venv/bin/python benchmarks/bench_sdk_outage.py "
              f"--rate {args.rate:g} --seconds {args.seconds:g} --outage-at "
              f"{args.outage_at:g} --outage {args.outage:g}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--outage-at", type=float, default=5.0)
    parser.add_argument("--outage", type=float, default=30.0)
    args = parser.parse_args()
    if args.outage_at + args.outage >= args.seconds:
        parser.error("the outage must end before the load does")
    from sklearn.linear_model import LogisticRegression

    import watchkeeper as wk

    train, test = adult("adult.data"), adult("adult.test")
    model = LogisticRegression(max_iter=1000).fit(train[NUMERIC].to_numpy(float),
                                                  train["label"])
    scores = model.predict_proba(test[NUMERIC].to_numpy(float))[:, 1]
    reference = test[NUMERIC].iloc[:8_000].assign(
        prediction=(scores[:8_000] >= 0.5).astype(int), score=scores[:8_000],
        label=test["label"].iloc[:8_000])
    with tempfile.TemporaryDirectory(prefix="wk-outage-") as tmp:
        workdir = Path(tmp)
        suite = workdir / "adult.yaml"
        wk.init(reference, target="label", progress=False).save(suite)
        bodies = [json.dumps([row]) for row in test[NUMERIC].iloc[8_000:].to_numpy(
            float).tolist()]
        results = [run(workdir, suite, bodies, args, outage=False),
                   run(workdir, suite, bodies, args, outage=True)]
    text = report(results, args)
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
