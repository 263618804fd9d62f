"""Vectors over real HTTP on 127.0.0.1: a suite's embedding column takes one JSON list (or
Arrow list) a row, profiled into codes and judged for drift; a list in any other column is
still refused with a 422 naming it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import READ, WRITE, Server, arrow, wait_for
from tests.server_helpers import request as http

EVENTS = "/v1/models/m/events"
CENTRES = np.random.default_rng(5).normal(0.0, 3.0, (4, 8))


def rows(n: int, seed: int, mix: list[float]) -> list[dict]:
    rng = np.random.default_rng(seed)
    topic = rng.choice(4, n, p=mix)
    x = CENTRES[topic] + rng.normal(0.0, 1.0, (n, 8))
    return [{"x": float(rng.normal()), "emb": v.tolist()} for v in x]


@pytest.fixture
def server(tmp_path: Path):
    suite = wk.init(pa.Table.from_pylist(rows(3_000, 1, [0.25] * 4)))
    suite.save(tmp_path / "suite.yaml")
    s = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
               f"m={tmp_path / 'suite.yaml'}", "--window", "1s", "--grace", "1s").start()
    yield s
    s.stop()


def post(server: Server, body: bytes, content_type: str = "application/json"):
    return http(server.url + EVENTS, body, token=WRITE, content_type=content_type)


def test_json_vectors_are_profiled_and_judged(server: Server) -> None:
    t0 = time.time() - 30
    shifted = [{**r, "_ts": t0} for r in rows(1_500, 2, [0.7, 0.1, 0.1, 0.1])]
    shifted[0]["emb"] = [1.0, 2.0]  # the wrong length: counted invalid, not refused
    status, answer = post(server, json.dumps(shifted).encode())
    assert status == 200 and answer["accepted"] == 1_500, answer
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t0)))

    def drift():
        _, doc = http(server.url + f"/v1/models/m/findings?since={start}", token=READ)
        return [f for f in doc["findings"] if f["monitor"] == "embedding_drift"]

    found = wait_for(drift)
    assert found[0]["column"] == "emb" and found[0]["evidence"]["gained_examples"]


def test_a_list_outside_the_vector_columns_is_refused_naming_it(server: Server) -> None:
    body = json.dumps([{"x": [1.0, 2.0], "emb": [0.0] * 8}]).encode()
    status, answer = post(server, body)
    assert status == 422 and "'x' (list" in answer["detail"]
    assert "'emb'" in answer["detail"]  # the hint names the columns that take vectors
    nested = arrow(pa.table({"emb": pa.array([[[1.0]]])}))
    status, answer = post(server, nested, "application/vnd.apache.arrow.stream")
    assert status == 422 and "'emb' (list<item: list" in answer["detail"]
