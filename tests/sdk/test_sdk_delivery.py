"""Delivery through outages, hangs and restarts: every batch has one id, sent as the
``Idempotency-Key`` header on every try; what the sink cannot take waits in memory (within
``capacity``) or in the spool (within ``spool_bytes``), and every lost row is counted by
cause."""

from __future__ import annotations

import http.client
import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from tests.sdk_helpers import (
    RecordingServer,
    assert_one_key_per_batch,
    keyed_bodies,
    recording,
    url_of,
    wait_until,
)
from tests.server_helpers import free_port
from watchkeeper.sdk import Client, RemoteSink
from watchkeeper.sdk.sinks import batch_id
from watchkeeper.sdk.spool import Spool


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with recording() as srv:
        yield srv


def test_a_retry_after_a_timeout_carries_the_same_key(receiver: RecordingServer) -> None:
    """Defect: a server that stored a batch but answered too late got it again as a new
    batch (stored three times after a 20 s hang). Every try now carries the batch's key."""
    receiver.plan = [1.5, 1.5, 200]  # two answers that come after the sink's timeout
    client = Client(RemoteSink(url_of(receiver), "m", timeout=0.5, retries=1, backoff=0.01),
                    backoff=0.05, flush_interval=0.05)
    for i in range(5):
        client.log({"x": float(i)}, i)
    assert wait_until(lambda: client.stats["flushed_rows"] == 5, 30)
    for i in range(5, 8):
        client.log({"x": float(i)}, i)
    client.close(timeout=20)
    sent = keyed_bodies(receiver)
    assert len(sent) == 4  # 3 tries of the first batch, then the second
    assert len({key for key, _ in sent[:3]}) == 1 and sent[3][0] != sent[0][0]
    assert all(len(key) == 32 for key, _ in sent)
    assert_one_key_per_batch(receiver)
    stats = client.stats
    assert stats["flushed_rows"] == 8 and stats["dropped"] == 0 and stats["retried"] == 1


def test_an_outage_fills_the_buffer_then_counts_what_does_not_fit() -> None:
    port = free_port()
    client = Client(RemoteSink(f"http://127.0.0.1:{port}", "m", timeout=1, retries=0),
                    capacity=50, flush_rows=10, flush_interval=0.02, backoff=0.05)
    for i in range(30):
        client.log({"x": float(i)}, i)
    assert wait_until(lambda: client.stats["retried"] >= 1)
    for i in range(30, 80):
        client.log({"x": float(i)}, i)
    stats = client.stats
    assert stats["buffered"] == 50 and stats["dropped_full"] == 30
    with recording(port) as srv:
        assert wait_until(lambda: client.stats["flushed_rows"] == 50, 30)
        client.close()
        stats = client.stats
        assert stats["dropped"] == stats["dropped_full"] == 30
        assert stats["dropped_shutdown"] == stats["rejected"] == 0
        assert_one_key_per_batch(srv)


def test_rows_not_sent_by_close_are_counted_as_lost_at_shutdown() -> None:
    client = Client(RemoteSink(f"http://127.0.0.1:{free_port()}", "m", timeout=1,
                               retries=0), backoff=0.05, shutdown_timeout=2)
    for i in range(7):
        client.log({"x": float(i)}, i)
    client.close()
    stats = client.stats
    assert stats["dropped"] == stats["dropped_shutdown"] == 7 and stats["spooled"] == 0


def _spool_script(url: str, spool: Path, rows: int) -> str:
    return textwrap.dedent(f"""
        from watchkeeper.sdk import Client, RemoteSink
        wk = Client(RemoteSink({url!r}, "m", timeout=1, retries=0), spool_dir={str(spool)!r},
                    shutdown_timeout=3)
        for i in range({rows}):
            wk.log({{"x": float(i)}}, i)
        """)


def test_a_restarted_process_sends_what_the_last_one_spooled(tmp_path: Path) -> None:
    """The model server stops during an outage: its rows wait in the spool, and the next
    process on the same directory sends them, under the keys they were first given."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spool = tmp_path / "spool"
    done = subprocess.run([sys.executable, "-c", _spool_script(url, spool, 120)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    files = sorted(spool.glob("*.arrow"))
    assert files and Spool(spool).rows() == 120
    keys = {batch_id(pa.ipc.open_file(pa.memory_map(str(f))).read_all()) for f in files}
    with recording(port) as srv:
        client = Client(RemoteSink(url, "m"), spool_dir=spool, flush_interval=0.05)
        client.log({"x": -1.0}, -1)
        assert client.flush(timeout=20)
        client.close()
        rows = sum(pa.ipc.open_stream(body).read_all().num_rows for _, _, body in srv.seen)
        assert rows == 121 and not list(spool.glob("*.arrow*"))
        assert keys <= {key for key, _ in keyed_bodies(srv)}
        assert_one_key_per_batch(srv)


def test_the_spool_is_bounded_by_bytes(tmp_path: Path) -> None:
    client = Client(RemoteSink(f"http://127.0.0.1:{free_port()}", "m", timeout=1, retries=0),
                    spool_dir=tmp_path, spool_bytes=20_000, flush_rows=100,
                    flush_interval=0.02, backoff=0.05, shutdown_timeout=2)
    for i in range(2_000):
        client.log({"x": float(i), "y": "abc"}, i)
        if i % 100 == 99:
            client.flush(timeout=5)
    client.close()
    stats = client.stats
    assert Spool(tmp_path).size() <= 20_000
    assert 0 < stats["spooled"] < 2_000
    assert stats["spooled"] + stats["dropped"] == 2_000
    assert Spool(tmp_path).rows() == stats["spooled"]


def test_a_file_taken_by_a_dead_process_is_put_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.put("labels", "k1", pa.table({"id": ["a"], "target": [1]}))
    taken = spool.take()
    assert taken is not None and spool.take() is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    taken.rename(taken.with_name(taken.name.replace(f".{os.getpid()}.", f".{dead}.")))
    again = Spool(tmp_path).take()
    assert again is not None
    kind, table = Spool.read(again)
    assert kind == "labels" and batch_id(table) is None and table.num_rows == 1


def test_many_small_batches_go_out_as_one_request(receiver: RecordingServer) -> None:
    """Defect found while measuring: each ``log_batch`` call was its own HTTP request, so a
    server logging one row per request fell behind (848 rows lost at close)."""
    client = Client(RemoteSink(url_of(receiver), "m"), flush_interval=3600, flush_rows=150)
    for i in range(300):
        client.log_batch([{"x": float(i)}], [i])
    client.close()
    sizes = [pa.ipc.open_stream(body).read_all().num_rows for _, _, body in receiver.seen]
    assert sum(sizes) == 300 and len(sizes) <= 4  # not 300 requests
    assert_one_key_per_batch(receiver)


class HangingProxy(http.server.ThreadingHTTPServer):
    """Forwards POSTs to a real server; the first ``hangs`` answers are held back
    ``delay`` seconds (longer than the sink waits), as a hung network would."""

    daemon_threads = True

    def __init__(self, upstream: str, hangs: int, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.hangs = hangs
        self.delay = delay
        self.keys: list[str] = []
        self.lock = threading.Lock()


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HangingProxy

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.keys.append(self.headers.get("Idempotency-Key", ""))
            hang = self.server.hangs > 0
            self.server.hangs -= hang
        up = http.client.HTTPConnection(self.server.upstream.hostname,
                                        self.server.upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        up.request("POST", self.path, body=body, headers=headers)
        answer = up.getresponse()
        data = answer.read()
        up.close()
        if hang:
            time.sleep(self.server.delay)
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.getheader("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the sink gave up waiting and closed the connection
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_a_hang_counts_no_row_twice_end_to_end(tmp_path: Path) -> None:
    """A real server behind a proxy that holds its answers past the sink's timeout: the
    batch is stored, the sink retries it with the same key, and the server counts it once."""
    import watchkeeper as wk
    from tests.server_helpers import READ, WRITE, Server, request, wait_for

    wk.init(pa.table({"x": [float(i % 10) for i in range(500)]}),
            progress=False).save(tmp_path / "s.yaml")
    server = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
                    f"m={tmp_path / 's.yaml'}", "--window", "1h").start()
    proxy = HangingProxy(server.url, hangs=2, delay=3.0)
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        sink = RemoteSink(f"http://127.0.0.1:{proxy.server_address[1]}", "m", token=WRITE,
                          timeout=1.0, retries=3, backoff=0.05)
        client = Client(sink, flush_interval=3600)
        for i in range(409):
            client.log({"x": float(i % 10)}, None)
        client.close(timeout=30)
        assert client.stats["flushed_rows"] == 409
        assert len(proxy.keys) == 3 and len(set(proxy.keys)) == 1  # the SDK's half

        def counted() -> int:
            _, doc = request(server.url + "/v1/models/m/windows", token=READ)
            return sum(w["rows"] for w in doc["windows"])

        wait_for(lambda: counted() >= 409, timeout=30)
        assert counted() == 409  # stored once, though it reached the server three times
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)
        server.stop()
