"""SIGTERM, as Docker, Kubernetes and systemd send it, under real web servers: every row
served arrives at the sink before the process ends.

Defect: uvicorn restores the handler it found and raises SIGTERM again after its graceful
shutdown; the default handler then killed the process before the SDK's exit flush (94 of
401 rows arrived, no warning). Each server here runs in its own process group against a
loopback receiver; the app logs one row per request and never flushes by itself.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from tests.sdk_helpers import RecordingServer, assert_one_key_per_batch, recording, url_of
from tests.server_helpers import free_port

APP = """
    import os
    from watchkeeper.sdk import ASGIMiddleware, Client, RemoteSink

    wk = Client(RemoteSink(os.environ["WK_URL"], "m"), flush_interval=3600,
                shutdown_timeout=10, handle_signals=os.environ.get("WK_SIGNALS") != "0")

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        wk.log({"x": 1.0, "pid": os.getpid()}, 1)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    watched = ASGIMiddleware(app, wk)

    def wsgi(environ, start_response):
        wk.log({"x": 1.0, "pid": os.getpid()}, 1)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    """

SERVERS = {
    "uvicorn": ["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "{port}"],
    "uvicorn-2-workers": ["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port",
                          "{port}", "--workers", "2"],
    "gunicorn-sync": ["-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "app:wsgi"],
    "gunicorn-uvicorn-worker": ["-m", "gunicorn", "-w", "2", "-k",
                                "uvicorn.workers.UvicornWorker", "-b", "127.0.0.1:{port}",
                                "app:app"],
    "hypercorn": ["-m", "hypercorn", "--bind", "127.0.0.1:{port}", "app:app"],
    # preloaded, the client is made before the workers reset their signal handlers: the
    # middleware's flush at lifespan shutdown is what saves the rows there
    "gunicorn-preload-uvicorn-worker": ["-m", "gunicorn", "--preload", "-w", "2", "-k",
                                        "uvicorn.workers.UvicornWorker", "-b",
                                        "127.0.0.1:{port}", "app:watched"],
}


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with recording() as srv:
        yield srv


def serve(tmp_path: Path, argv: list[str], url: str, env: dict[str, str] | None = None
          ) -> tuple[subprocess.Popen[bytes], int]:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, *[a.format(port=port) for a in argv]],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "WK_URL": url, **(env or {})},
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        try:
            if get(port) == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError((tmp_path / "server.log").read_text())


def get(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/predict")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)  # to the server (a master passes it to its workers)
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def rows_received(srv: RecordingServer) -> int:
    return sum(pa.ipc.open_stream(body).read_all().num_rows for _, _, body in srv.seen)


@pytest.mark.slow
@pytest.mark.parametrize("server", list(SERVERS))
def test_sigterm_after_n_requests_loses_no_row(tmp_path: Path, receiver: RecordingServer,
                                               server: str) -> None:
    proc, port = serve(tmp_path, SERVERS[server], url_of(receiver))
    served = 1  # the readiness probe
    for _ in range(60):
        assert get(port) == 200
        served += 1
    code = stop(proc)
    log = (tmp_path / "server.log").read_text()
    assert rows_received(receiver) == served, log
    assert_one_key_per_batch(receiver)
    # the server still ends as it meant to: by the signal, or with its own exit code
    assert code in (0, -signal.SIGTERM), log


@pytest.mark.slow
def test_the_handler_chains_to_one_installed_later_and_to_the_default(tmp_path: Path,
                                                                       receiver: RecordingServer
                                                                       ) -> None:
    """A plain script: SIGTERM with no other handler flushes, then dies by the signal; a
    handler the program installs afterwards (it replaces the SDK's) is left alone."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from watchkeeper.sdk import Client, RemoteSink
        wk = Client(RemoteSink({url_of(receiver)!r}, "m"), flush_interval=3600)
        for i in range(25):
            wk.log({{"x": float(i)}}, i)
        print("ready", flush=True)
        time.sleep(60)
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    assert rows_received(receiver) == 25
