"""Text descriptors and multivariate drift through the server: rows posted over HTTP are
profiled with the suite's text plan and joint model, and the closed window's findings name
the text column and descriptor, and the pair whose correlation broke."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import READ, Server, post, request, wait_for

WORDS = ["fast", "delivery", "great", "price", "late", "order", "refund", "thanks", "broken",
         "works", "again", "never", "service", "staff", "friendly", "quality"]
NEW = ["zebra", "quantum", "violin", "glacier", "orbit", "saffron"]


def rows(n: int, seed: int, words: list[str] = WORDS, rho: float = 0.9) -> pa.Table:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    vocab = np.array(words, dtype=object)
    return pa.table({
        "a": a, "b": rho * a + np.sqrt(1 - rho ** 2) * rng.normal(size=n),
        "c": rng.choice(["x", "y"], n),
        "review": [" ".join(rng.choice(vocab, size=k)) for k in rng.integers(1, 12, n)],
    })


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("text")
    wk.init(rows(20_000, 0), multivariate=True).save(d / "suite.yaml")
    s = Server(d, "--store", f"sqlite:///{d / 'wk.db'}", "--suite", f"m={d / 'suite.yaml'}",
               "--window", "1s", "--grace", "1s").start()
    yield s
    s.stop()


@pytest.mark.slow
def test_posted_text_and_a_broken_correlation_are_found(server: Server) -> None:
    t0 = time.time() - 30  # a whole window in the past: it closes at once
    batch = rows(3_000, 1, words=WORDS + NEW, rho=0.0)
    body = [{**r, "_ts": t0} for r in batch.to_pylist()]
    assert post(server, "/v1/models/m/events", json.dumps(body).encode())[0] == 200
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t0)))

    def evaluated() -> list[dict]:
        _, doc = request(server.url + f"/v1/models/m/findings?since={start}Z", token=READ)
        return [f for f in doc["findings"]
                if f["monitor"] in ("text_drift", "multivariate_drift")]

    found = {(f["monitor"], f["column"], f["metric"]): f for f in wait_for(evaluated)}
    assert ("text_drift", "review", "oov_rate") in found
    assert found[("text_drift", "review", "oov_rate")]["evidence"]["descriptor"] == "oov_rate"
    joint = found[("multivariate_drift", None, "reconstruction_error")]
    assert joint["evidence"]["top_pair"] == "a × b"
