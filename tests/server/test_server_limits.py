"""The server's limits over real HTTP on 127.0.0.1: request bodies ingested at once (503 with
Retry-After beyond them, nothing acknowledged lost) and failed dashboard logins per client
address (429 with Retry-After)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.server_helpers import READ, WRITE, Server, _suite_text, arrow, metric, request, wait_for
from watchkeeper.server.auth import LoginLimiter
from watchkeeper.store import Store

ARROW = "application/vnd.apache.arrow.stream"
MIB = 2**20
PATH = "/v1/models/m/events"


def batch(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.normal(size=n), "y": rng.choice(["a", "b"], n),
                     "_ts": np.full(n, time.time())})


def sized(target: int, seed: int) -> tuple[bytes, int]:
    """An Arrow IPC body of about ``target`` bytes (a little under), and its rows."""
    n = max(1, int(target / len(arrow(batch(1000, seed))) * 1000 * 0.98))
    body = arrow(batch(n, seed))
    assert len(body) <= target, (len(body), target)
    return body, n


def post(server: Server, body: bytes, *, source: str = "127.0.0.1", path: str = PATH,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """POST over a fresh connection; status, headers (lower-case names) and decoded body."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60,
                                      source_address=(source, 0))
    try:
        conn.request("POST", path, body=body, headers={
            "Authorization": f"Bearer {WRITE}", "Content-Type": ARROW, **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        got = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    try:
        return response.status, got, json.loads(raw)
    except ValueError:
        return response.status, got, raw.decode(errors="replace")


class Held:
    """A request whose headers and body but its last KiB are sent, the rest held back: the
    server has taken what arrived from the ingest budget and waits for the rest."""

    def __init__(self, server: Server, body: bytes) -> None:
        self.body = body
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        self.conn.putrequest("POST", PATH)
        for name, value in (("Authorization", f"Bearer {WRITE}"), ("Content-Type", ARROW),
                            ("Content-Length", str(len(body)))):
            self.conn.putheader(name, value)
        self.conn.endheaders(body[:-1024])

    def finish(self) -> tuple[int, Any]:
        self.conn.send(self.body[-1024:])
        response = self.conn.getresponse()
        try:
            return response.status, json.loads(response.read())
        finally:
            self.conn.close()


IN_FLIGHT = "watchkeeper_ingest_inflight_bytes"
BUSY = 'watchkeeper_rejected_batches_total{reason="busy"}'


def stored_rows(db: Path) -> int:
    with Store(f"sqlite:///{db}") as store:
        return sum(e.rows for e in store.events_after("m", 0, limit=100_000))


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("limits") / "suite.yaml"
    path.write_text(_suite_text())
    return path


@pytest.fixture
def limited(tmp_path: Path, suite_path: Path):
    """A server that ingests at most 1 MiB of request bodies at once."""
    s = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
               f"m={suite_path}", "--window", "1s", "--grace", "1s", "--ingest-mib", "1")
    s.db = tmp_path / "wk.db"
    s.start()
    yield s
    s.stop()


# -- request bodies ingested at once ------------------------------------------------------------
def test_a_request_beyond_the_ingest_budget_gets_503_with_retry_after(limited: Server) -> None:
    big, big_rows = sized(int(0.7 * MIB), 1)
    held = Held(limited, big)
    wait_for(lambda: metric(limited, IN_FLIGHT) == len(big) - 1024, timeout=30)
    other, _ = sized(int(0.4 * MIB), 2)
    status, headers, answer = post(limited, other)  # 0.7 + 0.4 MiB > 1 MiB: refused
    assert status == 503 and headers["retry-after"] == "1"
    assert "send it again in 1 s" in answer["detail"] and "nothing of this batch" in \
        answer["detail"]
    small, small_rows = sized(int(0.25 * MIB), 3)
    assert post(limited, small)[0] == 200  # what fits in what is left is taken
    status, answer = held.finish()
    assert status == 200 and answer["accepted"] == big_rows
    assert post(limited, other)[0] == 200  # given back once answered
    assert metric(limited, BUSY) == 1.0 and metric(limited, IN_FLIGHT) == 0.0
    # a body that can never fit is too large (413), not "busy": retrying would not help
    huge, _ = sized(int(1.5 * MIB), 4)
    status, _, answer = post(limited, huge)
    assert status == 413 and f"body over {MIB} bytes" in answer["detail"]
    # a chunked body (no Content-Length) is taken as it comes, and cut off the same way
    assert post_chunked(limited, small) == 200
    assert post_chunked(limited, huge) == 413
    assert metric(limited, BUSY) == 1.0 and metric(limited, IN_FLIGHT) == 0.0
    assert stored_rows(limited.db) == big_rows + 2 * small_rows + \
        pa.ipc.open_stream(other).read_all().num_rows


def post_chunked(server: Server, body: bytes) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        parts = (body[i:i + 65536] for i in range(0, len(body), 65536))
        conn.request("POST", PATH, body=parts, encode_chunked=True,
                     headers={"Authorization": f"Bearer {WRITE}", "Content-Type": ARROW,
                              "Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_concurrent_posts_beyond_the_budget_are_refused_and_nothing_acknowledged_is_lost(
        limited: Server) -> None:
    held_body, held_rows = sized(int(0.9 * MIB), 10)
    held = Held(limited, held_body)  # while it is held, no other batch fits
    wait_for(lambda: metric(limited, IN_FLIGHT) == len(held_body) - 1024, timeout=30)
    acked: list[int] = []
    refused: list[dict[str, str]] = []
    failures: list[str] = []
    sent: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def client(i: int) -> None:
        start.wait()
        for j in range(3):
            body, rows = sized(int(0.3 * MIB), 100 + 10 * i + j)
            with lock:
                sent.append(rows)
            for _ in range(60):  # bounded: retried as Retry-After says, as the SDK does
                status, headers, answer = post(limited, body)
                with lock:
                    if status == 200:
                        acked.append(answer["accepted"])
                        break
                    if status != 503:
                        failures.append(f"{status}: {answer}")
                        return
                    refused.append(headers)
                time.sleep(float(headers["retry-after"]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: metric(limited, BUSY) >= 8, timeout=30)  # every client refused once
    status, answer = held.finish()
    assert status == 200
    acked.append(answer["accepted"])
    for t in threads:
        t.join(120)
    assert not failures and not any(t.is_alive() for t in threads)
    assert len(acked) == 1 + 8 * 3 and len(refused) >= 8
    assert all(h["retry-after"] == "1" and h["content-type"] == "application/json"
               for h in refused)
    acknowledged = sum(acked)
    print(f"{len(acked)} batches acknowledged ({acknowledged} rows), {len(refused)} refused")
    assert acknowledged == held_rows + sum(sent)  # every batch got through in the end
    assert stored_rows(limited.db) == acknowledged  # refused batches left nothing behind
    assert metric(limited, BUSY) == len(refused)  # every refusal counted
    assert metric(limited, "watchkeeper_ingest_inflight_peak_bytes") <= MIB
    assert metric(limited, IN_FLIGHT) == 0.0

    def windowed() -> float:
        _, doc = request(limited.url + "/v1/models/m/windows", token=READ)
        return sum(w["rows"] for w in doc["windows"])

    wait_for(lambda: windowed() == acknowledged, timeout=60)  # each folded once


def test_the_sdk_retries_a_batch_refused_for_want_of_budget(limited: Server) -> None:
    from watchkeeper.sdk import RemoteSink

    held_body, _ = sized(int(0.9 * MIB), 20)
    held = Held(limited, held_body)
    wait_for(lambda: metric(limited, IN_FLIGHT) == len(held_body) - 1024, timeout=30)
    sink = RemoteSink(limited.url, "m", token=WRITE, retries=6, backoff=0.2)
    table = batch(20_000, 21)  # ~0.3 MiB: does not fit while the other is held
    sending = threading.Thread(target=sink.send_events, args=(table,))
    sending.start()
    wait_for(lambda: sink.last_status == 503, timeout=30)
    assert held.finish()[0] == 200
    sending.join(60)
    assert not sending.is_alive() and sink.accepted == 20_000 and sink.requests >= 2
    sink.close()


# -- failed logins per client address ----------------------------------------------------------
def login(server: Server, token: str, source: str, *, scripted: bool = False
          ) -> tuple[int, dict[str, str], str]:
    """A login from a client address of the loopback network (127.0.0.0/8)."""
    if scripted:
        body = json.dumps({"token": token}).encode()
        headers = {"Content-Type": "application/json", "X-Watchkeeper": "1"}
    else:
        body = f"token={token}&next=/dashboard".encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("POST", "/login", body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text
    finally:
        conn.close()


def test_failed_logins_from_one_address_are_limited(guarded: Server) -> None:
    attacker, colleague = "127.0.0.2", "127.0.0.3"
    for _ in range(3):
        assert login(guarded, "guess", attacker)[0] == 403
    status, headers, text = login(guarded, "guess", attacker)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 3
    assert "too many failed logins" in text.lower()
    # refused whatever the token: a right guess must not show through the limit
    status, headers, _ = login(guarded, READ, attacker)
    assert status == 429 and "retry-after" in headers
    status, headers, text = login(guarded, WRITE, attacker, scripted=True)
    assert status == 429 and "try again in" in json.loads(text)["detail"]
    wait = int(headers["retry-after"])
    # another address is not affected, nor are its successful logins counted
    status, headers, _ = login(guarded, READ, colleague)
    assert status == 303 and "watchkeeper_session=" in headers["set-cookie"]
    assert login(guarded, "typo", colleague)[0] == 403
    assert login(guarded, WRITE, colleague, scripted=True)[0] == 200
    assert metric(guarded, 'watchkeeper_rejected_batches_total{reason="login_limited"}') == 3
    assert metric(guarded, 'watchkeeper_login_failing_addresses{state="blocked"}') == 1
    assert metric(guarded, 'watchkeeper_login_failing_addresses{state="tracked"}') == 2
    # once the window has passed, the address may log in again
    time.sleep(wait)
    wait_for(lambda: login(guarded, READ, attacker)[0] == 303, timeout=10, every=0.5)
    assert metric(guarded, 'watchkeeper_login_failing_addresses{state="blocked"}') == 0


def test_the_login_limiter_stays_bounded_and_counts_what_it_forgets() -> None:
    now = [0.0]
    limiter = LoginLimiter(failures=2, window=60, capacity=3, clock=lambda: now[0])
    for address in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"):
        limiter.failed(address)
        now[0] += 1
    assert limiter.retry_after("10.0.0.1") == pytest.approx(60 - 4)
    assert limiter.state() == (3, 1) and limiter.forgotten == 0
    limiter.failed("10.0.0.4")  # over capacity: the address idle longest is forgotten
    assert limiter.state() == (3, 0) and limiter.forgotten == 1
    assert limiter.retry_after("10.0.0.1") == 0.0
    # IPv6 clients count per /64: changing the low bits does not buy more guesses
    limiter.failed("2001:db8::1")
    limiter.failed("2001:db8::ffff:2")
    assert limiter.retry_after("2001:db8::3") > 0 and limiter.forgotten == 2
    assert limiter.retry_after("2001:db8:0:1::1") == 0.0
    now[0] += 61  # everything out of the window is forgotten without counting it
    assert limiter.state() == (0, 0) and limiter.forgotten == 2
    off = LoginLimiter(failures=0)
    for _ in range(100):
        off.failed("10.0.0.9")
    assert off.retry_after("10.0.0.9") == 0.0 and off.state() == (0, 0)
