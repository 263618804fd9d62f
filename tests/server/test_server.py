"""The server over real HTTP on 127.0.0.1: ingest formats, auth, windows, metrics, crash."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import (
    READ,
    WRITE,
    Server,
    arrow,
    assert_stored_like_batch,
    post,
    request,
    wait_for,
)
from watchkeeper.store import Store


def events(n: int, seed: int, start: int = 0, ts: float | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    proba = 1 / (1 + np.exp(-x))
    return pa.table({
        "id": np.arange(start, start + n),
        "x": x,
        "colour": rng.choice(["red", "green", "blue"], n),
        "proba": proba,
        "prediction": (proba > 0.5).astype(int),
        "_ts": np.full(n, time.time() if ts is None else ts),
        "_latency_ms": rng.lognormal(2.0, 0.3, n),
    })


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("server")
    reference = events(5_000, 0).append_column(
        "label", pa.array((np.random.default_rng(1).random(5_000) < 0.5).astype(int)))
    wk.init(reference.drop_columns(["_ts"]), target="label").save(d / "suite.yaml")
    return d


@pytest.fixture(scope="module")
def server(workdir: Path):
    s = Server(workdir, "--store", f"sqlite:///{workdir / 'wk.db'}", "--suite",
               f"clicks={workdir / 'suite.yaml'}", "--window", "1s", "--grace", "1s").start()
    yield s
    s.stop()


def test_tokens_are_required_and_separate(server: Server) -> None:
    body = json.dumps(events(3, 1).to_pylist()).encode()
    assert post(server, "/v1/models/clicks/events", body, token=None)[0] == 401
    assert post(server, "/v1/models/clicks/events", body, token=READ)[0] == 403
    assert post(server, "/v1/models/clicks/events", body, token="guess")[0] == 403
    assert request(server.url + "/v1/models", token=None)[0] == 401
    assert request(server.url + "/v1/models", token=READ) == (200, {"models": ["clicks"]})


def test_three_ingest_formats_are_accepted(server: Server) -> None:
    rows = events(100, 2, start=10_000)
    status, answer = post(server, "/v1/models/clicks/events",
                          json.dumps(rows.to_pylist()).encode())
    assert (status, answer["accepted"]) == (200, 100)
    ndjson = "\n".join(json.dumps(r) for r in events(50, 3, start=20_000).to_pylist()).encode()
    status, answer = post(server, "/v1/models/clicks/events", ndjson,
                          content_type="application/x-ndjson")
    assert (status, answer["accepted"]) == (200, 50)
    status, answer = post(server, "/v1/models/clicks/events", arrow(events(70, 4, 30_000)),
                          content_type="application/vnd.apache.arrow.stream")
    assert (status, answer["accepted"]) == (200, 70)
    columns = {"columns": {k: v for k, v in events(5, 5, 40_000).to_pydict().items()}}
    assert post(server, "/v1/models/clicks/events", json.dumps(columns).encode())[0] == 200


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    (b"{not json", "application/json", 422, "not valid JSON"),
    (b"", "application/json", 422, "empty body"),
    (b"[]", "application/json", 422, "empty batch"),
    (b"\x00\x01", "application/vnd.apache.arrow.stream", 422, "Arrow IPC"),
    (b"a,b\n1,2", "text/csv", 422, "unsupported content type"),
    (b'{"x": 1}', "application/json", 422, "expected a list of row objects"),
])
def test_malformed_requests_get_clear_errors(server: Server, body: bytes, content_type: str,
                                             status: int, message: str) -> None:
    got, answer = post(server, "/v1/models/clicks/events", body, content_type=content_type)
    assert got == status and message in answer["detail"]


def test_unknown_model_is_404(server: Server) -> None:
    status, answer = post(server, "/v1/models/nope/events", b'[{"x": 1}]')
    assert status == 404 and "no suite deployed" in answer["detail"]


def test_windows_close_and_are_evaluated(server: Server) -> None:
    t0 = time.time() - 30  # a whole window in the past: it closes at once
    batch = events(400, 6, start=50_000, ts=t0)
    batch = batch.set_column(batch.column_names.index("colour"), "colour",
                             pa.array(["purple"] * 400))  # an unseen category
    assert post(server, "/v1/models/clicks/events", arrow(batch),
                content_type="application/vnd.apache.arrow.stream")[0] == 200
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t0)))

    def evaluated():
        _, doc = request(server.url + f"/v1/models/clicks/findings?since={start}Z",
                         token=READ)
        return [f for f in doc["findings"] if f["monitor"] == "unseen_category"]

    found = wait_for(evaluated)
    assert found[0]["column"] == "colour" and found[0]["value"] == 1.0
    _, doc = request(server.url + f"/v1/models/clicks/windows?since={start}Z", token=READ)
    first = doc["windows"][0]
    assert first["rows"] == 400 and first["state"] == "closed" and first["suite_version"] == 1
    assert first["metrics"]["latency_ms"]["p50"] > 0
    labels = {"rows": [{"id": 50_000 + i, "label": 1} for i in range(400)]}
    assert post(server, "/v1/models/clicks/labels", json.dumps(labels).encode())[0] == 200

    def labeled():
        _, doc = request(server.url + f"/v1/models/clicks/windows?since={start}Z", token=READ)
        return doc["windows"][0]["metrics"].get("label_coverage") == 1.0

    wait_for(labeled)


def test_metrics_are_exposed(server: Server) -> None:
    status, text = request(server.url + "/metrics", token=READ)
    assert status == 200
    assert 'watchkeeper_ingested_rows_total{kind="events",model="clicks"}' in text
    assert "watchkeeper_rejected_batches_total" in text
    assert request(server.url + "/openapi.json")[0] == 200
    # event times naming no calendar time are windowed at arrival and counted
    batch = events(3, 9, start=90_000)
    batch = batch.set_column(batch.column_names.index("_ts"), "_ts",
                             pa.array([1e300, float("inf"), 1.7e12]))
    assert post(server, "/v1/models/clicks/events", arrow(batch),
                content_type="application/vnd.apache.arrow.stream")[0] == 200
    wait_for(lambda: 'watchkeeper_bad_timestamp_rows_total{model="clicks"} 3.0'
             in request(server.url + "/metrics", token=READ)[1])


def _acknowledged_stream(server: Server, stop: threading.Event, acked: list[int]) -> None:
    i = 0
    while not stop.is_set() and i < 2_000:
        batch = events(500, 100 + i, start=1_000_000 + i * 500, ts=time.time() - 5 + i * 0.01)
        try:
            status, answer = post(server, "/v1/models/clicks/events", arrow(batch),
                                  content_type="application/vnd.apache.arrow.stream")
        except OSError:
            return  # the server was killed mid-request: that batch was never acknowledged
        if status == 200:
            acked.append(answer["accepted"])
        i += 1


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_event(workdir: Path) -> None:
    db = workdir / "crash.db"
    args = ("--store", f"sqlite:///{db}", "--suite", f"clicks={workdir / 'suite.yaml'}",
            "--window", "1s", "--grace", "1s")
    first = Server(workdir, *args).start()
    stop, acked = threading.Event(), []
    streamer = threading.Thread(target=_acknowledged_stream, args=(first, stop, acked))
    streamer.start()
    wait_for(lambda: len(acked) >= 40, timeout=60)
    first.kill9()
    stop.set()
    streamer.join(30)
    first.stop()
    acknowledged = sum(acked)
    store = Store(f"sqlite:///{db}")
    stored = sum(e.rows for e in store.events_after("clicks", 0, limit=100_000))
    print(f"acknowledged {acknowledged} rows in {len(acked)} batches, stored {stored}")
    assert stored >= acknowledged  # every acknowledged batch is durable
    second = Server(workdir, *args).start()  # windows resume from the store
    try:
        def folded() -> bool:
            return store.watermark("clicks") == max(
                e.seq for e in store.events_after("clicks", 0, limit=100_000))
        wait_for(folded, timeout=60)
        windowed = wait_for(lambda: sum(w.rows for w in store.load_windows("clicks")) or None)
        assert windowed == stored  # each stored event counted exactly once after the restart
    finally:
        second.stop()
        store.close()


def _labels(ids: np.ndarray, values: np.ndarray) -> bytes:
    return arrow(pa.table({"id": ids, "label": values}))


@pytest.mark.slow
def test_a_label_corrected_after_a_restart_replaces_the_first(workdir: Path) -> None:
    db = workdir / "labels.db"
    args = ("--store", f"sqlite:///{db}", "--suite", f"clicks={workdir / 'suite.yaml'}",
            "--window", "1s", "--grace", "1s")
    t0 = np.floor(time.time()) - 60  # two one-second windows in the past
    predictions = [events(300, 11, start=7_000_000, ts=t0),
                   events(300, 12, start=7_000_300, ts=t0 + 1)]
    ids = np.arange(7_000_000, 7_000_600)
    rng = np.random.default_rng(13)
    labels = {int(i): int(v) for i, v in zip(ids, rng.random(600) < 0.5, strict=True)
              if rng.random() < 0.8}  # most rows get a first label
    corrected = rng.choice(ids, 200, replace=False)  # some corrected, some labeled at last
    store = Store(f"sqlite:///{db}")

    def folded() -> bool:
        return store.watermark("clicks") == max(
            e.seq for e in store.events_after("clicks", 0, limit=100_000))

    arrow_type = "application/vnd.apache.arrow.stream"
    first = Server(workdir, *args).start()
    try:
        for table in predictions:
            assert post(first, "/v1/models/clicks/events", arrow(table),
                        content_type=arrow_type)[0] == 200
        first_ids = np.array(list(labels))
        assert post(first, "/v1/models/clicks/labels",
                    _labels(first_ids, np.array([labels[i] for i in first_ids])),
                    content_type=arrow_type)[0] == 200
        wait_for(folded)
    finally:
        first.kill9()
        first.stop()
    second = Server(workdir, *args).start()  # the same store
    try:
        fixes = np.array([1 - labels.get(int(i), 0) for i in corrected])
        assert post(second, "/v1/models/clicks/labels", _labels(corrected, fixes),
                    content_type=arrow_type)[0] == 200
        labels.update(zip(corrected.tolist(), fixes.tolist(), strict=True))
        wait_for(folded)
        final = pa.table({"id": list(labels), "label": list(labels.values())})
        suite = wk.Suite.load(workdir / "suite.yaml")
        windows = store.load_windows("clicks")
        assert [w.rows for w in windows] == [300, 300]
        assert_stored_like_batch(suite, predictions, windows, final)
    finally:
        second.stop()
        store.close()


def test_refused_requests_are_a_monitored_signal(workdir: Path) -> None:
    """More than 10 invalid payloads or 5 authentication failures in a window are flagged.
    The requests are counted in the window they arrive in, so they are sent within one
    5 s window or across two, in numbers over twice the limits: one window of the two has
    more than the limit (with the module's 1 s windows, 12 sent on a loaded machine could
    be split between two windows, neither over 10: in one full run none was flagged)."""
    server = Server(workdir, "--store", f"sqlite:///{workdir / 'refused.db'}", "--suite",
                    f"clicks={workdir / 'suite.yaml'}", "--window", "5s",
                    "--grace", "1s").start()
    try:
        started = time.monotonic()
        for _ in range(21):
            post(server, "/v1/models/clicks/events", b"{broken",
                 content_type="application/json")
        for _ in range(11):
            post(server, "/v1/models/clicks/events", b"[]", token=READ)
        assert time.monotonic() - started < 5  # else three windows could share them

        def flagged():
            _, doc = request(server.url + "/v1/models/clicks/findings", token=READ)
            return {f["metric"] for f in doc["findings"]
                    if f["monitor"] == "rejected_requests"}

        # judged when the window closes (5 s and 1 s of grace), on the fold's next step
        assert wait_for(lambda: flagged() >= {"invalid", "auth"} or None, timeout=90)
    finally:
        server.stop()


def test_sdk_drops_are_reported_in_metrics(server: Server) -> None:
    from watchkeeper.sdk import Client, RemoteSink

    client = Client(RemoteSink(server.url, "clicks", token=WRITE),
                    feature_names=["x", "colour"], capacity=20, flush_interval=5.0)
    for i in range(500):  # far more than the buffer holds before the next flush
        client.log({"x": float(i), "colour": "red"}, 1, proba=0.9, id=900_000 + i)
    client.flush(timeout=30)
    dropped = client.stats["dropped"]
    assert dropped > 0
    client.log({"x": 1.0, "colour": "red"}, 1, proba=0.9, id=999_999)
    client.close()

    def reported() -> bool:
        _, text = request(server.url + "/metrics", token=READ)
        return f'watchkeeper_sdk_dropped_rows{{model="clicks"}} {float(dropped)}' in text

    assert wait_for(reported, timeout=30)
