"""The SDK as a model server uses it: real threads, real sinks, real HTTP, real fork."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import watchkeeper as wk
from tests.sdk_helpers import RecordingServer, Served, recording, url_of, wait_until
from tests.server_helpers import free_port
from watchkeeper.errors import SinkError
from watchkeeper.sdk import (
    ASGIMiddleware,
    Client,
    EmbeddedSink,
    MemorySink,
    RemoteSink,
    Sink,
)
from watchkeeper.sdk.rows import MAX_KEY
from watchkeeper.sdk.values import MAX_STRING

NAMES = ["age", "income", "city"]
TAKEN = ["prediction", "score", "rid", "_ts", "_latency_ms", "_client", "_error"]


# -- 1. fuzz: nothing reaches the caller, every bad value is counted ---------------------------
# Each strategy draws (value, number of bad values in it), so the expected count is known by
# construction; the rules are those of watchkeeper.sdk.rows.
GOOD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    st.dates(),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(np.float32),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(np.int64),
    st.booleans().map(np.bool_),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-1e6,
                max_value=1e6),
)
HUGE = st.integers(1, 40).map(lambda n: "é" * (MAX_STRING + n))
BAD = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, np.float64("nan"), np.float32("inf"),
                     Decimal("NaN")]),
    st.binary(max_size=8),
    st.dictionaries(st.text(max_size=3), st.integers() | st.lists(st.none(), max_size=2),
                    max_size=3),
    st.sets(st.integers(), max_size=2),
    st.builds(object),
    st.complex_numbers(allow_nan=False),
    st.integers(min_value=2**63, max_value=2**80) | st.integers(max_value=-(2**63) - 1),
    HUGE,
    st.just("lone \ud800 surrogate"),
)
# Lists, tuples and 1-D arrays are left out: whether one is bad depends on its column (a
# vector column's value, or a vector among scalars): tests/sdk/test_sdk_vectors.py.
VALUE = st.one_of(GOOD.map(lambda v: (v, 0)), BAD.map(lambda v: (v, 1)))

GOOD_KEY = st.sampled_from([*NAMES, "extra_a", "extra_b", "ünï"])
BAD_KEY = st.one_of(st.integers(), st.none(), st.tuples(st.integers()), st.just(""),
                    st.sampled_from(TAKEN), st.just("k" * (MAX_KEY + 1)))
JUNK_FEATURES = st.one_of(st.integers(), st.text(max_size=5), st.binary(max_size=5),
                          st.floats(), st.builds(object), st.sets(st.integers(), max_size=2))


@st.composite
def features(draw: Any, named: bool) -> tuple[Any, int]:
    kind = draw(st.sampled_from(["none", "dict", "dict_bad_keys", "mapping", "sequence",
                                 "ndarray", "junk"]))
    if kind == "none":
        return None, 0
    if kind in ("dict", "dict_bad_keys", "mapping"):
        keys = GOOD_KEY | BAD_KEY if kind == "dict_bad_keys" else GOOD_KEY
        drawn = draw(st.dictionaries(keys, VALUE, max_size=6))
        feats = {k: v for k, (v, _) in drawn.items()}
        bad = sum(n if isinstance(k, str) and k in [*NAMES, "extra_a", "extra_b", "ünï"]
                  else 1 for k, (_, n) in drawn.items())
        return (types.MappingProxyType(feats) if kind == "mapping" else feats), bad
    if kind in ("sequence", "ndarray"):
        length = draw(st.sampled_from([len(NAMES)] * 3 + [0, 1, len(NAMES) + 2]))
        if kind == "ndarray":
            floats = draw(st.lists(st.floats(), min_size=length, max_size=length))
            seq: Any = np.array(floats, dtype=np.float64)
            counted = sum(not math.isfinite(x) for x in floats[:len(NAMES)])
        else:
            drawn_values = draw(st.lists(VALUE, min_size=length, max_size=length))
            seq = [v for v, _ in drawn_values]
            if draw(st.booleans()):
                seq = tuple(seq)
            counted = sum(n for _, n in drawn_values[:len(NAMES)])
        if not named:
            return seq, 1  # a sequence without feature_names is one bad value
        return seq, counted + (length != len(NAMES))
    return draw(JUNK_FEATURES), 1


def reserved(good: Any, bad: Any) -> Any:
    return st.one_of(good.map(lambda v: (v, 0)), bad.map(lambda v: (v, 1)))


NON_NUMBERS = st.one_of(st.text(max_size=4), st.binary(max_size=4),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                        st.lists(st.integers(), max_size=2), st.builds(object))
LATENCY = reserved(
    st.one_of(st.none(), st.floats(min_value=0, max_value=1e9), st.integers(0, 10**9),
              st.booleans()),
    st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.integers(max_value=-1),
              st.sampled_from([math.nan, math.inf]), NON_NUMBERS))
TS = reserved(
    st.one_of(st.none(), st.floats(min_value=0, max_value=4e9), st.integers(0, 4 * 10**9),
              st.datetimes(min_value=dt.datetime(1971, 1, 2),
                           max_value=dt.datetime(2100, 1, 1))),
    st.one_of(st.sampled_from([math.nan, -math.inf]), NON_NUMBERS))
CLIENT = reserved(
    st.one_of(st.none(), st.text(max_size=10), st.integers(-(10**6), 10**6)),
    st.one_of(st.binary(max_size=4), st.floats(), st.booleans(), st.lists(st.integers()),
              HUGE))
ERROR = reserved(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6),
              st.floats(allow_nan=False), st.builds(ValueError, st.text(max_size=3)),
              st.just(KeyError)),
    st.one_of(st.just(math.nan), st.binary(max_size=3), st.dictionaries(st.text(), st.none()),
              st.lists(st.none(), max_size=2), st.builds(object)))


@st.composite
def log_call(draw: Any, named: bool) -> tuple[tuple[Any, ...], dict[str, Any], int]:
    feats, bad = draw(features(named))
    prediction, n = draw(VALUE)
    bad += n
    kwargs: dict[str, Any] = {}
    for name, strategy in (("proba", VALUE), ("id", VALUE), ("latency_ms", LATENCY),
                           ("client", CLIENT), ("ts", TS), ("error", ERROR)):
        if draw(st.booleans()):  # sometimes missing altogether
            kwargs[name], n = draw(strategy)
            bad += n
    return (feats, prediction), kwargs, bad


CALLS: list[int] = []


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(st.booleans().flatmap(
    lambda named: st.tuples(st.just(named), st.lists(log_call(named), min_size=20,
                                                     max_size=50))))
def _fuzz(case: tuple[bool, list[tuple[tuple[Any, ...], dict[str, Any], int]]]) -> None:
    named, calls = case
    sink = MemorySink()
    client = Client(sink, feature_names=NAMES if named else None, proba="score", id="rid",
                    flush_rows=10**6, flush_interval=3600)
    expected = 0
    for args, kwargs, bad in calls:
        client.log(*args, **kwargs)  # must not raise
        expected += bad
    client.close(timeout=30)
    stats = client.stats
    assert stats["sink_errors"] == 0 and stats["last_error"] is None
    assert stats["logged"] == stats["flushed_rows"] == len(calls)
    assert stats["dropped"] == 0
    assert stats["bad_values"] == expected, stats["last_bad_values"]
    table = sink.events_table()
    assert table.num_rows == len(calls)
    if named:
        assert table.column_names[:len(NAMES)] == NAMES
    CALLS.append(len(calls))


@pytest.mark.slow
def test_fuzz_log_never_raises_and_counts_every_bad_value() -> None:
    CALLS.clear()
    _fuzz()
    assert sum(CALLS) >= 10_000, f"only {sum(CALLS)} calls"


def test_bad_values_are_kept_coerced_or_nulled_and_never_lose_the_row() -> None:
    sink = MemorySink()
    client = Client(sink, feature_names=["x", "s"])
    client.log({"x": math.nan, "s": "a" * (MAX_STRING + 5)}, {"nested": [1]}, latency_ms=-3,
               client=b"raw", ts="yesterday", error=math.nan)
    client.log({"x": 2**70, "s": 7, "new": dt.date(2024, 5, 1)}, 1, latency_ms=math.inf)
    client.log("not features", 2)
    assert client.flush(timeout=10)
    row = sink.events_table().to_pylist()
    assert math.isnan(row[0]["x"]) and row[1]["x"] is None  # NaN kept, int overflow nulled
    assert len(row[0]["s"]) == MAX_STRING and row[1]["s"] == "7"  # truncated; str column
    assert row[1]["new"] == "2024-05-01"
    assert [r["prediction"] for r in row] == [None, 1, 2]
    assert row[0]["_latency_ms"] is None and row[0]["_client"] is None
    assert row[0]["_ts"] is None and row[1]["_ts"] > 1e9  # bad ts nulled; else time of log
    # NaN, long string, prediction dict, latency, client, ts, error; 2**70, inf latency; str
    assert client.stats["bad_values"] == 10
    client.close()


def test_types_agree_across_the_parts_a_batch_is_converted_in() -> None:
    sink = MemorySink()
    client = Client(sink, flush_interval=3600)
    for i in range(1_500):  # numbers in the first part, strings in the second
        client.log({"x": i if i < 1_000 else f"s{i}", "y": math.nan if i == 1_200 else 1.0}, i)
    client.close()
    table = sink.events_table()
    assert table.num_rows == 1_500 and client.stats["bad_values"] == 1
    assert table.schema.field("x").type == pa.string()
    assert table.column("x").to_pylist()[998:1_001] == ["998", "999", "s1000"]


# -- 2. flood: bounded memory, every drop counted ----------------------------------------------
class SlowSink(MemorySink):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def send_events(self, table: pa.Table) -> None:
        time.sleep(self.delay)
        super().send_events(table)


def test_flood_keeps_memory_bounded_and_counts_every_drop(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watchkeeper.sdk")
    sink = SlowSink(0.2)
    client = Client(sink, capacity=1_000, flush_rows=500, flush_interval=0.01)
    event = {"x": 1.5, "city": "Boston"}
    longest = 0
    tracemalloc.start()
    for i in range(10_000):
        client.log(event, i)
        if i % 10 == 0:
            longest = max(longest, client.stats["buffered"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    client.close(timeout=30)
    stats = client.stats
    assert longest <= 1_000
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MB"
    assert stats["dropped"] > 0
    assert stats["logged"] + stats["dropped"] == 10_000
    assert stats["flushed_rows"] == stats["logged"] == sink.rows
    assert stats["dropped"] == 10_000 - sink.rows
    delivered = sink.events_table().column("prediction").to_pylist()
    assert delivered == sorted(delivered)  # in order, no row twice
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1  # at most once a minute


class BlockedSink(MemorySink):
    """Takes nothing until released, so every logged row is still in the client's memory."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send_events(self, table: pa.Table) -> None:
        self.release.wait(30)
        super().send_events(table)


class Observed(Client):
    """Reads ``stats`` after each batch a round posts to its outbox (a flood's caller can
    read them there too: CI once saw 1,500 buffered rows under a capacity of 1,000)."""

    seen: list[tuple[int, int]]

    def _post(self, tables: list[tuple[str, pa.Table]], taken: list[int]) -> None:
        for table in tables:
            super()._post([table], taken)
            stats = self.stats
            self.seen.append((stats["buffered"], stats["logged"]))


def test_buffered_counts_each_row_once_while_a_round_posts_its_batches() -> None:
    sink = BlockedSink()
    client = Observed(sink, capacity=10_000, flush_rows=100, flush_interval=0.01)
    client.seen = []
    try:
        for i in range(1_000):
            client.log({"x": 1.5}, i)
        wait_until(lambda: client.seen, timeout=10)
    finally:
        sink.release.set()
        client.close(timeout=30)
    assert all(buffered == logged for buffered, logged in client.seen), client.seen
    assert sink.rows == 1_000


def test_many_threads_lose_nothing() -> None:
    sink = MemorySink()
    client = Client(sink, capacity=1_000_000, flush_rows=2_000, flush_interval=0.01)

    def work(k: int) -> None:
        for i in range(10_000):
            client.log({"k": k}, i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    client.close(timeout=30)
    assert client.stats["logged"] == client.stats["flushed_rows"] == sink.rows == 40_000
    table = sink.events_table()
    assert sorted(zip(table.column("k").to_pylist(), table.column("prediction").to_pylist(),
                      strict=True)) == [(k, i) for k in range(4) for i in range(10_000)]


def test_a_failing_sink_is_counted_and_the_thread_carries_on() -> None:
    class Flaky(MemorySink):
        calls = 0

        def send_events(self, table: pa.Table) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("disk full")
            super().send_events(table)

    sink = Flaky()
    client = Client(sink)
    for i in range(5):
        client.log({"x": i}, i)
    assert client.flush(timeout=10)
    client.log({"x": 9}, 9)
    assert client.flush(timeout=10)
    stats = client.stats
    assert stats["sink_errors"] == 1 and stats["dropped"] == 5 and stats["flushed_rows"] == 1
    assert stats["last_error"] == "RuntimeError: disk full"
    client.close()
    client.log({"x": 1}, 1)  # after close: counted, not raised
    assert client.stats["dropped"] == 6
    assert sink.closed


def test_log_batch_and_labels() -> None:
    import pandas as pd
    import polars as pl

    sink = MemorySink()
    client = Client(sink, id="rid", target="label", capacity=1_000)
    client.log_batch(pd.DataFrame({"x": [1.0, math.nan], "prediction": [0, 1]}))  # NaN: null
    client.log_batch(pl.DataFrame({"x": [3.0], "prediction": [1]}))
    client.log_batch(pa.table({"x": [math.inf], "blob": [[[1, 2]]], "vec": [[1, 2]],
                               "_ts": [5.0]}))
    client.log_batch([{"x": 5.0, "prediction": 0}, {"x": {"bad": 1}}])
    client.log_batch(pd.DataFrame({"x": np.zeros(2_000)}))  # over capacity: all dropped
    client.log_batch("not a frame")
    client.log_labels(["a", "b", "c"], np.array([1, 0]))  # one id too many
    assert client.flush(timeout=10)
    stats = client.stats
    assert stats["logged"] == 2 + 1 + 1 + 2 + 2
    assert stats["dropped"] == 2_000
    # inf; the nested list in blob (vec's list of numbers is a vector); the dict; the string
    # frame; the unmatched id
    assert stats["bad_values"] == 5, stats["last_bad_values"]
    events = sink.events_table()
    assert events.num_rows == 6
    assert events.column("x").to_pylist()[1:] == [None, 3.0, math.inf, 5.0, None]
    assert events.column("_ts").to_pylist()[3] == 5.0  # a batch's own event time is kept
    assert events.column("vec").to_pylist()[3] == [1.0, 2.0]
    assert sink.labels_table().to_pydict() == {"rid": ["a", "b"], "label": [1, 0]}
    client.close()


# -- 3. decorator ------------------------------------------------------------------------------
def test_timed_logs_latency_and_counts_errors_reraising_them_unchanged() -> None:
    sink = MemorySink()
    client = Client(sink)
    boom = ValueError("boom")

    @client.timed
    def predict(features: dict[str, float]) -> int:
        time.sleep(0.002)
        return int(features["x"] > 0)

    class Model:
        @client.timed  # features: the first argument after self
        def predict(self, features: dict[str, float]) -> int:
            raise boom

    assert predict({"x": 3.0}) == 1 and predict.__name__ == "predict"
    with pytest.raises(ValueError) as info:
        Model().predict(features={"x": -1.0})
    assert info.value is boom
    assert info.traceback[-1].name == "predict"  # raised where it was, not re-wrapped
    client.close()
    rows = sink.events_table().to_pylist()
    assert [(r["x"], r["prediction"], r["_error"]) for r in rows] == [(3.0, 1, False),
                                                                     (-1.0, None, True)]
    assert rows[0]["_latency_ms"] >= 2.0 and rows[1]["_latency_ms"] > 0


def test_timed_async() -> None:
    sink = MemorySink()
    client = Client(sink)

    @client.timed
    async def predict(features: dict[str, float]) -> float:
        await asyncio.sleep(0.002)
        return features["x"] * 2

    @client.timed(features_arg=1)
    async def failing(model: object, features: dict[str, float]) -> float:
        raise KeyError("missing")

    assert asyncio.run(predict({"x": 2.0})) == 4.0
    with pytest.raises(KeyError, match="missing"):
        asyncio.run(failing(None, {"x": 1.0}))
    assert asyncio.iscoroutinefunction(predict)
    client.close()
    rows = sink.events_table().to_pylist()
    assert [(r["x"], r["prediction"], r["_error"]) for r in rows] == [(2.0, 4.0, False),
                                                                     (1.0, None, True)]
    assert rows[0]["_latency_ms"] >= 2.0


# -- 4. ASGI middleware on a real FastAPI app over real HTTP ---------------------------------------
def _fastapi_app() -> Any:
    fastapi = pytest.importorskip("fastapi")
    from fastapi.responses import JSONResponse

    app = fastapi.FastAPI()

    @app.post("/predict")
    async def predict(body: dict[str, float]) -> dict[str, float]:
        await asyncio.sleep(0.001)
        return {"score": body.get("x", 0.0) / 2}

    @app.post("/predict/broken")
    async def broken() -> None:
        raise RuntimeError("model exploded")

    @app.post("/predict/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"detail": "warming up"}, status_code=503)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def test_asgi_middleware_times_requests_over_real_http() -> None:
    app = _fastapi_app()
    sink = MemorySink()
    client = Client(sink, flush_interval=0.05)
    app.add_middleware(ASGIMiddleware, client=client, prefix="/predict")
    with Served(app) as served:
        assert served.request("POST", "/predict", {"x": 4.0}, {"X-Client-Id": "team-a"}) == 200
        assert served.request("POST", "/predict", {"x": 1.0}) == 200
        assert served.request("POST", "/predict/broken") == 500
        assert served.request("POST", "/predict/unavailable") == 503
        assert served.request("GET", "/health") == 200  # outside the prefix: not logged
    client.close()
    rows = sink.events_table().to_pylist()
    assert [(r["_client"], r["_error"]) for r in rows] == [
        ("team-a", False), ("127.0.0.1", False), ("127.0.0.1", True), ("127.0.0.1", True)]
    assert all(r["_latency_ms"] > 0 for r in rows)
    assert rows[0]["_latency_ms"] >= 1.0


def test_asgi_middleware_never_breaks_the_app() -> None:
    app = _fastapi_app()
    broken_client: Any = object()  # its log() does not even exist
    with Served(ASGIMiddleware(app, broken_client)) as served:
        assert served.request("POST", "/predict", {"x": 4.0}) == 200
        assert served.request("GET", "/health") == 200
        assert served.request("POST", "/predict/broken") == 500


def test_asgi_middleware_passes_other_scopes_through() -> None:
    seen = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    sink = MemorySink()
    client = Client(sink)
    middleware = ASGIMiddleware(app, client)
    asyncio.run(middleware({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    asyncio.run(middleware({"type": "websocket", "path": "/ws"}, None, None))  # type: ignore[arg-type]
    client.close()
    assert seen == ["lifespan", "websocket"] and sink.rows == 0


# -- 5. fork ---------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_parent_and_child_both_flush_without_deadlock() -> None:
    sink = MemorySink(max_rows=10**7)
    client = Client(sink, flush_interval=0.01, flush_rows=1_000, capacity=10**7)
    stop = threading.Event()

    def busy() -> None:  # keeps the buffer and its locks in use while we fork
        i = 0
        while not stop.is_set():
            client.log({"who": "parent-thread"}, i)
            i += 1
            if i % 100 == 0:
                time.sleep(0.001)

    worker = threading.Thread(target=busy)
    worker.start()
    time.sleep(0.05)
    for i in range(100):
        client.log({"who": "parent"}, i)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: log, flush, report, leave without running parent code
        try:
            before = sink.rows
            for i in range(100):
                client.log({"who": "child"}, i)
            ok = client.flush(timeout=10)
            tables = list(sink.events)
            mine = [w for t in tables[-10:] for w in t.column("who").to_pylist()]
            report = {"ok": ok, "stats": client.stats, "new_rows": sink.rows - before,
                      "child_rows": mine.count("child")}
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child deadlocked")
    report = json.loads(os.read(read, 1 << 16).decode())
    os.close(read)
    stop.set()
    worker.join(10)
    assert report["ok"]
    assert report["stats"]["logged"] == report["stats"]["flushed_rows"] == 100
    assert report["new_rows"] == 100 and report["child_rows"] == 100  # nothing of the parent's
    assert client.flush(timeout=10)
    client.close(timeout=10)
    stats = client.stats
    assert stats["logged"] == stats["flushed_rows"] == sink.rows
    assert stats["dropped"] == 0


# -- 6. RemoteSink against a real HTTP server -----------------------------------------------------
@pytest.fixture
def server() -> Any:
    with recording() as srv:
        yield srv


def test_remote_sink_posts_arrow_streams_with_auth(server: RecordingServer) -> None:
    sink = RemoteSink(url_of(server) + "/", "churn model", token="s3cret")
    assert isinstance(sink, Sink)
    client = Client(sink, feature_names=["age", "city"], id="rid", target="churned")
    client.log({"age": 41, "city": "Boston"}, 1, id="r1", latency_ms=2.5, client="team-a")
    client.log({"age": 29, "city": "Salem"}, 0, id="r2")
    client.log_labels(["r1", "r2"], [1, 1])
    client.close()
    assert [p for p, _, _ in server.seen] == ["/v1/models/churn%20model/events",
                                             "/v1/models/churn%20model/labels"]
    _, headers, body = server.seen[0]
    assert headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    assert headers["Authorization"] == "Bearer s3cret"
    events = pa.ipc.open_stream(body).read_all().to_pylist()
    assert [(e["age"], e["city"], e["prediction"], e["rid"]) for e in events] == [
        (41, "Boston", 1, "r1"), (29, "Salem", 0, "r2")]
    assert events[0]["_latency_ms"] == 2.5 and events[0]["_client"] == "team-a"
    labels = pa.ipc.open_stream(server.seen[1][2]).read_all()
    assert labels.to_pydict() == {"rid": ["r1", "r2"], "churned": [1, 1]}
    assert sink.accepted == 4 and client.stats["flushed_rows"] == 4


def test_remote_sink_retries_a_500(server: RecordingServer) -> None:
    server.plan = [500, 200]
    sink = RemoteSink(url_of(server), "m", retries=3, backoff=0.01, compression="zstd")
    client = Client(sink)
    client.log({"x": 1.0}, 1)
    client.close()
    assert len(server.seen) == 2 and server.seen[0][2] == server.seen[1][2]
    assert pa.ipc.open_stream(server.seen[1][2]).read_all().num_rows == 1
    assert client.stats["sink_errors"] == 0 and client.stats["flushed_rows"] == 1
    assert "Authorization" not in server.seen[0][1]


def test_remote_sink_waits_as_long_as_a_busy_server_asks(server: RecordingServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 with Retry-After (the server's ingest budget is full) is retried no sooner
    than asked, even with a tiny backoff; an absurd Retry-After is capped."""
    server.plan, server.retry_after = [503, 200], "1"
    sink = RemoteSink(url_of(server), "m", retries=3, backoff=0.001)
    sink.send_events(pa.table({"x": [1.0]}))
    assert len(server.seen) == 2 and server.times[1] - server.times[0] >= 0.95
    assert sink.accepted == 1
    import watchkeeper.sdk.sinks as sinks

    monkeypatch.setattr(sinks, "MAX_RETRY_AFTER", 0.05)
    server.plan, server.retry_after = [503, 200], "3600"
    started = time.monotonic()
    sink.send_events(pa.table({"x": [2.0]}))
    assert time.monotonic() - started < 10 and sink.accepted == 2


@pytest.mark.parametrize(("plan", "requests", "message"), [
    ([401], 1, "HTTP 401"), ([422], 1, "status 422 as planned"), ([413], 1, "HTTP 413")])
def test_remote_sink_refusals_are_counted_not_raised(
        server: RecordingServer, plan: list[int], requests: int, message: str) -> None:
    server.plan = plan
    client = Client(RemoteSink(url_of(server), "m", token="x", retries=2, backoff=0.01))
    for i in range(3):
        client.log({"x": i}, i)
    assert client.flush(timeout=10)
    stats = client.stats
    assert len(server.seen) == requests
    assert stats["sink_errors"] == 1 and stats["dropped"] == stats["rejected"] == 3
    assert stats["flushed_rows"] == 0 and stats["buffered"] == 0
    assert message in stats["last_error"]
    client.close()


def test_a_busy_server_keeps_the_batch_for_a_later_try(server: RecordingServer) -> None:
    """503s beyond the sink's own retries: the batch waits (nothing dropped) and goes out
    with the same Idempotency-Key once the server answers."""
    server.plan = [503] * 3
    client = Client(RemoteSink(url_of(server), "m", retries=2, backoff=0.01), backoff=0.05)
    for i in range(3):
        client.log({"x": i}, i)
    assert not client.flush(timeout=10)
    stats = client.stats
    assert len(server.seen) == 3 and "after 3 attempts" in stats["last_error"]
    assert stats["dropped"] == 0 and stats["buffered"] == 3 and stats["retried"] == 1
    assert client.flush(timeout=10)
    assert client.stats["flushed_rows"] == 3 and client.stats["buffered"] == 0
    keys = {headers["Idempotency-Key"] for _, headers, _ in server.seen}
    assert len(server.seen) == 4 and len(keys) == 1
    client.close()


def test_remote_sink_with_the_server_down_keeps_rows_until_it_is_up() -> None:
    """Defect: with the server refusing connections every batch was dropped after 4 tries
    (~2 s) though the buffer had room. Now the rows wait, and arrive once it listens."""
    port = free_port()  # a port nobody listens on
    sink = RemoteSink(f"http://127.0.0.1:{port}", "m", timeout=1, retries=1, backoff=0.01)
    client = Client(sink, flush_interval=0.02, backoff=0.05)
    client.log({"x": 1.0}, 1)
    client.log_labels([1], [0])
    start = time.monotonic()
    assert not client.flush(timeout=20)
    assert time.monotonic() - start < 10
    assert wait_until(lambda: client.stats["retried"] >= 3)  # it keeps trying, backing off
    stats = client.stats
    assert stats["dropped"] == 0 and stats["buffered"] == 2
    assert "ConnectionRefusedError" in stats["last_error"]
    with pytest.raises(SinkError):  # used on its own, the sink does raise
        sink.send_events(pa.table({"x": [1]}))
    with recording(port) as srv:
        assert wait_until(lambda: client.stats["flushed_rows"] == 2, 30)
        assert [p.rsplit("/", 1)[1] for p, _, _ in srv.seen] == ["events", "labels"]
        client.close()
        assert client.stats["dropped"] == 0


# -- 7. EmbeddedSink end to end --------------------------------------------------------------
def test_embedded_sink_profiles_evaluates_and_stores_windows(tmp_path: Path) -> None:
    from watchkeeper.io.datasets import synthetic_drift_pair
    from watchkeeper.store import Store

    reference, current = synthetic_drift_pair(4_000, seed=5)
    suite = wk.init(reference, progress=False)
    url = f"sqlite:///{tmp_path / 'wk.db'}"
    sink = EmbeddedSink(suite, store_url=url, model="churn", window="1m")
    names = [c for c in current.column_names]
    client = Client(sink, feature_names=names, flush_rows=1_000)
    start = 1_700_000_040.0  # two whole past minutes: both windows close at once
    for i, row in enumerate(current.slice(0, 2_000).to_pylist()):
        client.log(row, None, ts=start + 60 * (i >= 1_000) + (i % 1_000) * 0.05,
                   latency_ms=5.0, error=i % 100 == 0)
    client.close(timeout=60)
    assert client.stats["flushed_rows"] == 2_000 and client.stats["sink_errors"] == 0
    with Store(url) as store:
        windows = store.load_windows("churn")
        assert [(w.rows, w.state) for w in windows] == [(1_000, "closed"), (1_000, "closed")]
        drifted = {f["column"] for f in store.findings("churn") if f["family"] == "drift"}
        assert "num_00" in drifted
        assert store.active_suite("churn") is not None


# -- at exit --------------------------------------------------------------------------------------
def _run_script(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


def test_exit_flushes_what_is_buffered(tmp_path: Path) -> None:
    out = tmp_path / "rows.txt"
    done = _run_script(f"""
        import pyarrow as pa
        from watchkeeper.sdk import Client
        class FileSink:
            def send_events(self, table): open({str(out)!r}, "a").write(f"{{table.num_rows}}\\n")
            def send_labels(self, table): pass
            def close(self): open({str(out)!r}, "a").write("closed\\n")
        wk = Client(FileSink(), flush_interval=3600)
        for i in range(250):
            wk.log({{"x": i}}, i)
        """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_text().split() == ["250", "closed"]


def test_exit_is_bounded_when_the_sink_hangs() -> None:
    start = time.monotonic()
    done = _run_script("""
        import time
        from watchkeeper.sdk import Client
        class Hanging:
            def send_events(self, table): time.sleep(600)
            def send_labels(self, table): pass
            def close(self): pass
        wk = Client(Hanging(), flush_interval=3600)
        wk.log({"x": 1}, 1)
        """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 30
    assert "close() timed out" in done.stderr
