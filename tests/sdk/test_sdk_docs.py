"""The SDK's documentation runs: every Python snippet of README's "Online" section, and
``examples/fastapi_app.py`` against a live watchkeeper server on 127.0.0.1.

Defect: the README snippet imported ``Client, RemoteSink, EmbeddedSink`` and then used
``ASGIMiddleware`` (NameError). Snippets are now extracted and executed here.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.helpers import REPO
from tests.sdk_helpers import RecordingServer, Served, recording, url_of
from tests.server_helpers import READ, WRITE, Server, request, wait_for


def sdk_snippets() -> list[str]:
    """The ```python blocks of README's "Online" section (up to the next ### heading)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Online", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with recording() as srv:
        yield srv


class TinyModel:
    """Stands for the reader's model: ``predict`` on a batch."""

    def predict(self, X: Any) -> np.ndarray:
        return np.ones(len(X), dtype=int)


def test_readme_sdk_snippets_run_as_written(receiver: RecordingServer, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    snippets = sdk_snippets()
    assert len(snippets) >= 2
    monkeypatch.setenv("WATCHKEEPER_URL", url_of(receiver))
    monkeypatch.setenv("WATCHKEEPER_WRITE_TOKEN", "t0ken")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "watchkeeper.yaml").write_text("")  # replaced below by a real suite
    wk.init(pa.table({"age": [float(i % 50) for i in range(400)],
                      "plan": ["pro", "free"] * 200}),
            progress=False).save(tmp_path / "watchkeeper.yaml")
    for code in snippets:
        namespace: dict[str, Any] = {"model": TinyModel()}
        exec(compile(code, "README.md", "exec"), namespace)
        client = namespace.get("wk")
        if client is not None:
            client.close()
    assert receiver.seen, "the snippets sent nothing"
    events = [pa.ipc.open_stream(body).read_all() for path, _, body in receiver.seen
              if path.endswith("/events")]
    first = events[0].to_pylist()[0]
    assert (first["age"], first["plan"], first["score"], first["request_id"]) == (
        41, "pro", 0.83, "r-17")
    assert all(h.get("Authorization") == "Bearer t0ken" for _, h, _ in receiver.seen)


def load_example(monkeypatch: pytest.MonkeyPatch, url: str) -> Any:
    monkeypatch.setenv("WATCHKEEPER_URL", url)
    monkeypatch.setenv("WATCHKEEPER_WRITE_TOKEN", WRITE)
    spec = importlib.util.spec_from_file_location("fastapi_app",
                                                  REPO / "examples" / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_fastapi_example_against_a_live_server(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The example app (scikit-learn on UCI Adult, middleware-only integration) serves
    people; the server counts exactly the rows it served, each with its caller."""
    server = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}",
                    "--window", "1h")
    app_module = None
    try:
        app_module = load_example(monkeypatch, "http://127.0.0.1:1")  # not started yet
        adult = app_module.load("adult.test")
        suite = wk.init(app_module.reference(app_module.model, adult.iloc[:8_000]),
                        target="label", progress=False)
        suite.save(tmp_path / "adult.yaml")
        server.args = (*server.args, "--suite", f"adult={tmp_path / 'adult.yaml'}")
        server.start()
        app_module.wk.close()
        app_module = load_example(monkeypatch, server.url)
        people = adult[app_module.FEATURES].iloc[8_000:8_200]
        body = people.astype(object).where(people.notna(), None).to_dict("records")
        with Served(app_module.app) as served:
            for i in range(40):
                status = served.request("POST", "/predict", body[i * 5:(i + 1) * 5],
                                        {"X-Client-Id": f"team-{i % 4}"})
                assert status == 200
            assert served.request("GET", "/healthz") == 200
        app_module.wk.close()
        assert app_module.wk.stats["flushed_rows"] == 200
        assert app_module.wk.stats["dropped"] == 0

        def counted() -> int:
            _, doc = request(server.url + "/v1/models/adult/windows", token=READ)
            return sum(w["rows"] for w in doc["windows"])

        assert wait_for(lambda: counted() == 200, timeout=60)
    finally:
        if app_module is not None:
            app_module.wk.close()
        server.stop()
