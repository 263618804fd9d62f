"""Ingest over real HTTP on 127.0.0.1: every acknowledged row counted exactly once, whatever
clients and the network do. Idempotency keys (retries through a stalled store, a kill -9
between commit and answer, copies sent at once), bodies that stall or stop short, batches
too wide, and batches the fold could not take (refused at ingest, or counted)."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import READ, WRITE, Server, arrow, metric, request, wait_for
from watchkeeper.sdk import RemoteSink
from watchkeeper.store import Store

ARROW = "application/vnd.apache.arrow.stream"
EVENTS, LABELS = "/v1/models/m/events", "/v1/models/m/labels"


def batch(n: int, seed: int, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pa.table({"id": np.arange(start, start + n), "x": x,
                     "colour": rng.choice(["red", "blue"], n),
                     "prediction": (x > 0).astype(int), "_ts": np.full(n, time.time())})


def post(server: Server, path: str, body: bytes, *, key: str | None = None,
         content_type: str = ARROW) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return request(server.url + path, body, token=WRITE, content_type=content_type,
                   headers=headers)


def stored(db: Path, kind: str = "events") -> int:
    with Store(f"sqlite:///{db}") as store:
        return sum(e.rows for e in store.events_after("m", 0, kinds=(kind,), limit=100_000))


def windowed(server: Server) -> int:
    _, doc = request(server.url + "/v1/models/m/windows", token=READ)
    return sum(w["rows"] for w in doc["windows"])


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ingest") / "suite.yaml"
    reference = batch(3_000, 0).drop_columns(["_ts"])
    reference = reference.append_column("label", pa.array(
        (np.random.default_rng(1).random(3_000) < 0.5).astype(int)))
    wk.init(reference, target="label", id="id", prediction="prediction").save(path)
    return path


def serve(tmp_path: Path, suite_path: Path, *args: str) -> Server:
    s = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
               f"m={suite_path}", "--window", "1s", "--grace", "1s", *args)
    s.db = tmp_path / "wk.db"
    return s


@pytest.fixture
def server(tmp_path: Path, suite_path: Path):
    s = serve(tmp_path, suite_path, "--body-timeout", "1s", "--max-columns", "50").start()
    yield s
    s.stop()


# -- idempotency keys ----------------------------------------------------------------------------
def test_a_batch_sent_again_with_its_idempotency_key_is_acknowledged_and_stored_once(
        server: Server) -> None:
    body = arrow(batch(100, 1))
    status, first = post(server, EVENTS, body, key="batch-1")
    assert status == 200 and first == {"accepted": 100, "seq": first["seq"]}
    status, again = post(server, EVENTS, body, key="batch-1")
    assert status == 200 and again == {**first, "duplicate": True}
    labels = arrow(pa.table({"id": [1, 2], "label": [0, 1]}))
    assert post(server, LABELS, labels, key="labels-1")[1]["accepted"] == 2
    assert post(server, LABELS, labels, key="labels-1")[1]["duplicate"] is True
    # eight copies of one batch at once: each acknowledged, one stored
    answers: list[tuple[int, Any]] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        answers.append(post(server, EVENTS, arrow(batch(50, 2, 100)), key="batch-2"))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [s for s, _ in answers] == [200] * 8
    assert sum("duplicate" not in a for _, a in answers) == 1
    assert len({a["seq"] for _, a in answers}) == 1
    assert post(server, EVENTS, body)[0] == 200  # without a key: stored each time
    assert stored(server.db) == 100 + 50 + 100 and stored(server.db, "labels") == 2
    wait_for(lambda: windowed(server) == 250, timeout=30)
    assert metric(server, 'watchkeeper_ingested_rows_total{kind="events",model="m"}') == 250
    assert metric(server, 'watchkeeper_duplicate_batches_total{model="m"}') == 1 + 1 + 7


@pytest.mark.slow
def test_copies_sent_at_once_to_two_servers_on_one_store_are_stored_once(
        tmp_path: Path, suite_path: Path, store_url: str) -> None:
    servers = [Server(tmp_path, "--store", store_url, "--suite", f"m={suite_path}",
                      "--window", "1s", "--grace", "1s").start(timeout=60) for _ in range(2)]
    try:
        answers: list[tuple[int, Any]] = []
        start = threading.Barrier(8)

        def send(i: int) -> None:
            start.wait()
            for j in range(5):
                answers.append(post(servers[i % 2], EVENTS, arrow(batch(10 * (j + 1), j)),
                                    key=f"both-{j}"))

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert [s for s, _ in answers] == [200] * 40
        assert sum("duplicate" not in a for _, a in answers) == 5
        with Store(store_url) as store:
            assert sorted(e.rows for e in store.events_after("m", 0)) == [10, 20, 30, 40, 50]
        wait_for(lambda: windowed(servers[0]) == 150, timeout=60)
    finally:
        for s in servers:
            s.stop()


def test_idempotency_keys_are_checked(server: Server) -> None:
    body = arrow(batch(10, 3))
    for bad in ("x" * 256, "two words", "caf\u00e9"):
        status, answer = post(server, EVENTS, body, key=bad.encode().decode("latin-1"))
        assert status == 400 and "Idempotency-Key must be 1 to 255 printable ASCII" in \
            answer["detail"]
    assert post(server, EVENTS, body, key="k" * 255)[0] == 200
    status, answer = post(server, EVENTS, arrow(batch(11, 4)), key="k" * 255)  # another batch
    assert status == 422 and "was used for another batch (10 rows of events" in \
        answer["detail"]
    status, answer = post(server, LABELS, arrow(pa.table({"id": [1], "label": [1]})),
                          key="k" * 255)
    assert status == 422 and "use a new key for each batch" in answer["detail"]
    assert stored(server.db) == 10 and stored(server.db, "labels") == 0


@pytest.mark.slow
def test_sdk_retries_through_a_stalled_store_are_counted_once(server: Server) -> None:
    """The store's write lock is held for 4 s by another connection; the SDK times out after
    1 s and sends again, each copy waits for the store and is then committed... once."""
    sink = RemoteSink(server.url, "m", token=WRITE, timeout=1.0, retries=8, backoff=0.2)
    blocker = sqlite3.connect(server.db, timeout=30, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the store stalls
    try:
        sending = threading.Thread(target=sink.send_events, args=(batch(100, 5),))
        sending.start()
        wait_for(lambda: sink.requests >= 3, timeout=30)  # two abandoned, one waiting
        time.sleep(1.0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    sending.join(60)
    assert not sending.is_alive() and sink.accepted == 100
    assert stored(server.db) == 100
    wait_for(lambda: windowed(server) == 100, timeout=30)
    assert metric(server, 'watchkeeper_ingested_rows_total{kind="events",model="m"}') == 100
    sink.close()


def test_a_batch_committed_before_a_kill_9_is_stored_once_when_sent_again(
        tmp_path: Path, suite_path: Path) -> None:
    first = serve(tmp_path, suite_path).start()
    body = arrow(batch(100, 6))
    with socket.create_connection((first.host, first.port)) as conn:  # its answer is lost
        conn.sendall(f"POST {EVENTS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\n"
                     f"Content-Type: {ARROW}\r\nIdempotency-Key: lost-answer\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_for(lambda: stored(first.db) == 100, timeout=30)  # committed
        first.kill9()
    first.stop()
    second = serve(tmp_path, suite_path).start()
    try:
        status, answer = post(second, EVENTS, body, key="lost-answer")  # the client's retry
        assert status == 200 and answer["duplicate"] is True and answer["accepted"] == 100
        assert stored(second.db) == 100
        wait_for(lambda: windowed(second) == 100, timeout=30)
    finally:
        second.stop()


def test_parameters_out_of_range_are_refused_not_server_errors(server: Server) -> None:
    """Found by schemathesis (benchmarks/api_fuzz.py): each was a 503 or a 500."""
    base = server.url + "/v1/models/m"
    assert request(base + "/findings?min_severity=null", token=READ)[0] == 422
    assert request(base + "/suites/85289860561457518996818493440", token=READ)[0] == 422
    assert request(base + f"/suites/{2**31}/activate", b"", token=WRITE)[0] == 422
    assert request(base + "/suites/1", token=READ)[0] == 200


# -- request bodies that stall or stop short ---------------------------------------------------
def stall(server: Server, declared: int, sent: bytes, path: str = EVENTS,
          content_type: str = ARROW) -> socket.socket:
    """A request declaring ``declared`` bytes of body that sends ``sent`` and then nothing."""
    conn = socket.create_connection((server.host, server.port))
    conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\n"
                 f"Content-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n"
                 .encode() + sent)
    return conn


def answer_of(conn: socket.socket, timeout: float = 30.0) -> bytes:
    conn.settimeout(timeout)
    out = b""
    while chunk := conn.recv(65536):
        out += chunk
    conn.close()
    return out


@pytest.mark.slow
def test_a_stalled_upload_does_not_starve_other_clients(tmp_path: Path,
                                                         suite_path: Path) -> None:
    """256 MiB declared, one byte sent, then silence: the others ingest as usual meanwhile,
    and the stalled one is answered 408 once its body has not moved for --body-timeout."""
    s = serve(tmp_path, suite_path, "--body-timeout", "3s").start()
    try:
        stalled = stall(s, 256 * 2**20, b"x")
        time.sleep(0.5)
        acked = [post(s, EVENTS, arrow(batch(100, 10 + i), ))[0] for i in range(20)]
        assert acked == [200] * 20
        assert metric(s, "watchkeeper_ingest_inflight_bytes") <= 1  # what arrived of it
        reply = answer_of(stalled)
        assert reply.startswith(b"HTTP/1.1 408 ") and b"nothing of it was stored" in reply
        assert stored(s.db) == 2_000
    finally:
        s.stop()
    log = s.logs()
    assert log.count("no byte of the body for 3 s after 1 bytes; answered 408") == 1
    assert "Traceback" not in log


def test_a_body_cut_short_is_refused_in_one_log_line(server: Server) -> None:
    conn = stall(server, 1000, arrow(batch(1, 7))[:100])
    conn.shutdown(socket.SHUT_WR)  # the client is gone before its body was whole
    answer_of(conn)
    conn = stall(server, 1000, b"[1")  # the client waits for an answer that never comes
    reply = answer_of(conn)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert stored(server.db) == 0
    assert metric(server, 'watchkeeper_rejected_batches_total{reason="incomplete"}') == 2
    log = server.logs()
    assert "the connection closed after 100 bytes of the body; answered 400" in log
    assert "no byte of the body for 1 s after 2 bytes; answered 408" in log
    assert "Traceback" not in log and len(log.strip().splitlines()) == 2


def test_a_stalled_silence_is_answered_408_like_a_stalled_upload(server: Server) -> None:
    conn = stall(server, 1000, b'{"matchers": {', "/v1/models/m/silences", "application/json")
    assert answer_of(conn).startswith(b"HTTP/1.1 408 ")
    assert "no byte of the body for 1 s after 14 bytes; answered 408" in server.logs()


# -- batches too wide, or that the fold could not take -------------------------------------------
def test_a_batch_wider_than_the_column_limit_is_refused(server: Server) -> None:
    row = {f"c{i}": i for i in range(50_000)}
    for body, content_type in ((json.dumps([row]).encode(), "application/json"),
                               (json.dumps(row).encode(), "application/x-ndjson"),
                               (json.dumps({"columns": {k: [v] for k, v in row.items()}}
                                           ).encode(), "application/json"),
                               (arrow(pa.table({k: [v] for k, v in list(row.items())[:60]})),
                                ARROW)):
        status, answer = post(server, EVENTS, body, content_type=content_type)
        assert status == 422, answer
        assert "columns, more than the 59 this server takes for the model (its suite's " \
               "columns, the reserved ones and watchkeeper serve --max-columns others)" in \
               answer["detail"]
    # rows each narrow enough, but wider together (50 others, 5 of the suite's, 4 reserved)
    rows = [{f"a{i}": 1 for i in range(30)}, {f"b{i}": 1 for i in range(30)}]
    status, answer = post(server, EVENTS, json.dumps(rows).encode(), content_type=JSON)
    assert status == 422 and "the batch has 60 columns" in answer["detail"]
    wide = {**{f"a{i}": 1.0 for i in range(50)}, **batch(1, 9).to_pylist()[0],
            "_latency_ms": 1.0, "_client": "c", "_error": False}
    assert post(server, EVENTS, json.dumps([wide]).encode(), content_type=JSON)[0] == 200
    assert post(server, EVENTS, arrow(batch(10, 8)))[0] == 200  # the model's own: taken


JSON, NDJSON = "application/json", "application/x-ndjson"


def test_every_batch_is_refused_at_ingest_or_counted(server: Server) -> None:
    """Batches the fold used to set aside: refused with 422 naming the column, or counted
    (an event time beyond any window falls back to arrival, counted as a bad timestamp)."""
    now = time.time()
    refused = [
        (EVENTS, b'{"x":1}\n{"x":"x","colour":[1]}\n', NDJSON, "'colour' (list<item: int64>)"),
        (EVENTS, arrow(pa.table({"x": [1.0], "tags": pa.array([["a", "b"]])})), ARROW,
         "'tags' (list<item: string>) holds nested values"),
        (EVENTS, arrow(pa.table({"x": [1.0], "where": pa.array([{"lat": 1.0}])})), ARROW,
         "'where' (struct<lat: double>)"),
        (EVENTS, json.dumps([{"id": [1], "x": 1.0}]).encode(), JSON, "'id' (list<item: int64>)"),
        (LABELS, json.dumps([{"label": 1}]).encode(), JSON, "missing 'id'"),
        (LABELS, json.dumps([{"id": 1}]).encode(), JSON, "missing 'label'"),
        (LABELS, json.dumps([{"id": [1], "label": 1}]).encode(), JSON, "'id' (list"),
        (LABELS, json.dumps([{"id": {"a": 1}, "label": 1}]).encode(), JSON, "'id' (struct"),
        (EVENTS, arrow(pa.table({"id": pa.array([1], pa.float16())})), ARROW,
         "'id' holds half-precision floats"),
        (EVENTS, arrow(pa.table({"x": [1.0], "_client": pa.array([b"\xff"])})), ARROW,
         "'_client' holds bytes"),
    ]
    for path, body, content_type, named in refused:
        status, answer = post(server, path, body, content_type=content_type)
        assert status == 422 and named in answer["detail"], answer
    counted = [
        (EVENTS, json.dumps([{"id": 1, "x": 1.0, "_ts": "9999-12-31T00:00:00Z"},
                             {"id": 2, "x": 2.0, "_ts": now}]).encode(), JSON),
        (EVENTS, arrow(pa.table({"x": [1.0], "_ts": pa.array([datetime(9999, 12, 31)],
                                                             pa.timestamp("s"))})), ARROW),
        (EVENTS, b'{"x":1}\n{"x":"x","colour":"red"}\n', NDJSON),  # "x": counted invalid
        (LABELS, json.dumps([{"id": 1.5, "label": 1}, {"id": "x", "label": 0}]).encode(),
         JSON),
        (EVENTS, json.dumps([{"x": 2**62, "_ts": 2**62, "_latency_ms": 2**63}]).encode(),
         JSON),  # integers past 2**53: rounded; that _ts names no window
    ]
    for path, body, content_type in counted:
        assert post(server, path, body, content_type=content_type)[0] == 200
    wait_for(lambda: windowed(server) == 6, timeout=30)
    wait_for(lambda: metric(server, 'watchkeeper_bad_timestamp_rows_total{model="m"}') == 3)
    status, aside = request(server.url + "/v1/models/m/quarantine", token=READ)
    assert status == 200 and aside["batches"] == []
    assert request(server.url + "/healthz")[1]["fold_errors"] == 0


def test_counters_survive_the_reload_after_a_failed_batch(tmp_path: Path,
                                                          suite_path: Path) -> None:
    from datetime import timedelta

    from watchkeeper.server.hub import Hub

    t0 = float(np.floor(time.time() / 10) * 10)  # (arrival times are real)
    now = [t0]
    with Store(f"sqlite:///{tmp_path / 'wk.db'}") as store:
        hub = Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
                  clock=lambda: now[0])
        hub.register("m", suite_path.read_text())
        bad = batch(5, 1).set_column(4, "_ts", pa.array([1e300, np.inf, t0, t0, t0]))
        hub.append("m", bad, "events")
        hub.step()
        now[0] += 30  # the window closes; then rows arrive late for it
        hub.step()
        hub.append("m", batch(7, 2).set_column(4, "_ts", pa.array(np.full(7, t0))), "events")
        hub.step()

        def counted(name: str) -> int:
            return sum(g.live.counters[name] for g in hub.models["m"].generations)

        assert (counted("bad_timestamps"), counted("late_rows")) == (2, 7)
        before = hub.models["m"]
        # a batch that gets past ingest's checks (written to the store directly) and fails
        # half-way through a fold step
        store.append_events("m", arrow(pa.table({"id": pa.array([[1]]), "label": [1]})), 1,
                            "labels")
        hub.step()
        hub.append("m", batch(3, 3).set_column(4, "_ts", pa.array(np.full(3, t0))), "events")
        for _ in range(5):  # reloaded from the store after each failure; set aside at the 3rd
            hub.step()
        assert hub.models["m"] is not before and hub.counters["fold_errors"] == 4
        assert (counted("bad_timestamps"), counted("late_rows")) == (2, 10)
