"""Vectors through the SDK: a list, tuple or numpy vector logged row by row reaches the
server as a list column its embedding monitor judges; ragged, NaN and non-number vectors
are counted as bad values, never raised into the host. End to end over real HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import READ, WRITE, Server, request, wait_for
from watchkeeper.baseline.schema import Kind
from watchkeeper.sdk import Client, RemoteSink
from watchkeeper.sdk.rows import Columns, clean_frame, events_table, unify
from watchkeeper.sdk.values import Tally

CENTRES = np.random.default_rng(5).normal(0.0, 3.0, (4, 8))
SPEC = Columns(None, "prediction", None, None)


def vectors(n: int, seed: int, mix: list[float]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    topic = rng.choice(4, n, p=mix)
    return CENTRES[topic] + rng.normal(0.0, 1.0, (n, 8))


def _row(features: dict) -> tuple:
    return (features, 1, None, None, None, None, 1.0, None)


def test_vectors_become_a_float_list_column_and_bad_ones_are_counted() -> None:
    tally = Tally()
    table = events_table([_row({"e": np.arange(4.0)}), _row({"e": [1, 2, 3, 4]}),
                          _row({"e": (1.0, float("nan"), 2.0, 3.0)}),
                          _row({"e": [1.0, 2.0]}), _row({"e": None})], SPEC, tally)
    assert table.schema.field("e").type == pa.list_(pa.float64())
    assert table.column("e").to_pylist()[:2] == [[0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]]
    assert table.column("e").null_count == 1  # the ragged and NaN vectors are kept
    assert tally.bad == 2
    assert tally.notes == {"e: vectors of a length other than 4": 1,
                           "e: vectors with NaN or inf": 1}


def test_what_is_not_a_vector_of_numbers_is_nulled_and_counted() -> None:
    tally = Tally()
    table = events_table([_row({"e": np.arange(3.0)}), _row({"e": [1, "a", 3]}),
                          _row({"e": 5.0}), _row({"e": np.zeros((2, 2))})], SPEC, tally)
    assert table.column("e").to_pylist() == [[0.0, 1.0, 2.0], None, None, None]
    assert tally.bad == 3
    strings = Tally()
    table = events_table([_row({"w": ["a", "b"]}), _row({"w": ["c"]})], SPEC, strings)
    assert table.column("w").null_count == 2 and strings.bad == 2


def test_a_set_is_not_a_vector_though_arrow_takes_it_for_a_list() -> None:
    tally = Tally()
    table = events_table([_row({"e": None}), _row({"e": {0}})], SPEC, tally)
    assert table.column("e").to_pylist() == [None, None] and tally.bad == 1


def test_parts_of_a_batch_with_vectors_and_scalars_unify_counting_the_fewer() -> None:
    tally = Tally()
    listed = events_table([_row({"e": [1.0, 2.0]})] * 3, SPEC, tally)
    scalar = events_table([_row({"e": 3.0})], SPEC, tally)
    table = unify([listed, scalar], tally)
    assert table.column("e").to_pylist() == [[1.0, 2.0]] * 3 + [None]
    assert tally.bad == 1


def test_a_frame_with_a_vector_column_keeps_it() -> None:
    tally = Tally()
    frame = pa.table({"e": pa.array([[1, 2], [3, 4], [5]], pa.list_(pa.int32())),
                      "n": pa.array([[[1.0]], None, None])})
    table = clean_frame(frame, tally)
    assert table.schema.field("e").type == pa.list_(pa.float64())
    assert table.column("n").null_count == 3
    assert tally.notes == {"e: vectors of a length other than 2": 1,
                           "n: list<item: list<item: double>> values are not scalars": 1}


@pytest.fixture
def server(tmp_path: Path):
    reference = vectors(3_000, 1, [0.25] * 4)
    suite = wk.init(pa.table({"x": np.random.default_rng(2).normal(size=3_000),
                              "emb": pa.array(list(reference))}), progress=False)
    assert {c.name: c.kind for c in suite.schema}["emb"] == Kind.EMBEDDING
    suite.save(tmp_path / "suite.yaml")
    s = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
               f"m={tmp_path / 'suite.yaml'}", "--window", "1s", "--grace", "1s").start(timeout=120)
    yield s
    s.stop()


def _findings(server: Server, since: float, monitor: str) -> list[dict]:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(since)))
    _, doc = request(server.url + f"/v1/models/m/findings?since={start}", token=READ)
    return [f for f in doc["findings"] if f["monitor"] == monitor]


def _rows_seen(server: Server) -> int:
    _, doc = request(server.url + "/v1/models/m/windows", token=READ)
    return sum(w["rows"] for w in doc["windows"])


def test_vectors_logged_row_by_row_reach_the_embedding_monitor(server: Server) -> None:
    client = Client(RemoteSink(server.url, "m", token=WRITE), flush_interval=3600)
    t0 = time.time() - 30
    shifted = vectors(1_500, 2, [0.7, 0.1, 0.1, 0.1])
    rng = np.random.default_rng(3)
    for i, v in enumerate(shifted):
        emb: object = v if i % 3 == 0 else v.tolist() if i % 3 == 1 else tuple(v)
        if i == 10:
            emb = [1.0, 2.0]  # ragged
        if i == 11:
            emb = np.where(np.arange(8) == 3, np.nan, v)  # NaN inside
        client.log({"x": float(rng.normal()), "emb": emb}, 1, ts=t0)
    client.close(timeout=30)
    stats = client.stats
    assert stats["flushed_rows"] == 1_500 and stats["rejected"] == 0, stats
    assert stats["bad_values"] == 2, stats["last_bad_values"]
    found = wait_for(lambda: _findings(server, t0, "embedding_drift"))
    assert found[0]["column"] == "emb" and found[0]["evidence"]["gained_examples"]
    assert _rows_seen(server) == 1_500


def test_clean_vectors_through_the_sdk_raise_no_drift(server: Server) -> None:
    client = Client(RemoteSink(server.url, "m", token=WRITE), flush_interval=3600)
    t0 = time.time() - 30
    for v in vectors(1_500, 4, [0.25] * 4):
        client.log({"x": 0.0, "emb": v}, 1, ts=t0)
    client.close(timeout=30)
    assert client.stats["flushed_rows"] == 1_500 and client.stats["bad_values"] == 0
    wait_for(lambda: _rows_seen(server) == 1_500)
    time.sleep(2)  # the window is judged once closed (1 s window, 1 s grace)
    assert _findings(server, t0, "embedding_drift") == []


def test_vectors_a_server_refuses_are_dropped_and_counted_not_the_rows(
        server: Server) -> None:
    """'x' takes numbers in the suite, not vectors: the server refuses the batch naming the
    column, and the SDK sends the rows again without their vectors (counted as bad)."""
    client = Client(RemoteSink(server.url, "m", token=WRITE), flush_interval=3600)
    for i in range(200):
        client.log({"x": [float(i), 1.0], "emb": vectors(1, i, [0.25] * 4)[0]}, 1)
    client.close(timeout=30)
    stats = client.stats
    assert stats["flushed_rows"] == 200 and stats["rejected"] == 0, stats
    assert stats["bad_values"] == 400  # both columns' vectors, nulled
    assert "vectors refused by the sink" in stats["last_bad_values"]
    wait_for(lambda: _rows_seen(server) == 200)
