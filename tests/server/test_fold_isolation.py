"""One model whose fold is slow (a huge batch, an evaluation that takes hours) stalls no
other model, no request and no stop: each model's step runs in a thread of its own, outside
the hub's lock, and readers see alert states that are never changed once shown."""

from __future__ import annotations

import signal
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.server_helpers import (
    READ,
    WRITE,
    Server,
    _batch,
    _suite_text,
    _windowed,
    arrow,
    request,
    wait_for,
)
from watchkeeper.server.hub import Hub
from watchkeeper.server.metrics import HubCollector
from watchkeeper.store import Store

ARROW = "application/vnd.apache.arrow.stream"


def _within(seconds: float, call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args)`` in a thread; its result, or AssertionError if it takes longer."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(call(*args, **kwargs)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{call} still running after {seconds} s"
    assert out, f"{call} failed"
    return out[0], time.monotonic() - started


def test_a_model_whose_evaluation_hangs_stalls_no_other_model_no_reader_and_no_stop(
        tmp_path: Path) -> None:
    t0 = 1_700_000_000.0
    release = threading.Event()
    store = Store(f"sqlite:///{tmp_path / 'wk.db'}")
    hub = Hub(store, window=timedelta(seconds=10), grace=timedelta(0), clock=lambda: t0,
              lease_ttl=None)
    try:
        hub.register("slow", _suite_text())  # first: the old fold loop met it first
        hub.register("fast", _suite_text())
        suite = hub.models["slow"].current.suite
        evaluate = suite.evaluate_sequence

        def hang(result: Any) -> None:  # as 50,000 findings did: hours in one window
            release.wait(60)
            evaluate(result)

        suite.evaluate_sequence = hang  # type: ignore[method-assign]
        for model in ("slow", "fast"):
            hub.append(model, _batch(100, t0, 1), "events")
        _, took = _within(10, hub.step, now=t0 + 20, wait=0.5)  # both windows are due
        assert took < 5
        [fast] = store.load_windows("fast")
        assert (fast.rows, fast.state) == (100, "closed")  # folded, closed, judged, saved
        assert hub.models["fast"].alerts.last_start == fast.start
        assert [w.state for w in store.load_windows("slow")] == ["open"]  # still at it

        # readers and people's changes answer meanwhile
        _within(1, hub.states)  # the hub's locked reads answer
        _within(1, hub.alert_view, "slow")
        metrics, _ = _within(5, lambda: list(HubCollector(hub).collect()))
        assert any(m.name == "watchkeeper_window_rows" for m in metrics)
        silence, _ = _within(5, hub.silence, "slow", {"column": "x"},
                             datetime.fromtimestamp(t0 + 3600, UTC), created_by="ana")
        assert [s.id for s in hub.models["slow"].alerts.silences] == [silence.id]

        # the fast model folds on, step after step; the slow one is skipped while busy
        for i in range(1, 4):
            hub.append("fast", _batch(50, t0 + 20 * i, 1 + i), "events")
            _within(10, hub.step, now=t0 + 20 * i + 20, wait=0.5)
        assert _windowed(store, "fast") == 250
        assert hub.counters["fold_busy"] >= 3

        _, took = _within(10, hub.stop, timeout=1.0)  # a stop does not wait for it either
        assert took < 3
    finally:
        release.set()
        for worker in hub.workers.threads():
            worker.join(30)
        store.close()
    with Store(f"sqlite:///{tmp_path / 'wk.db'}") as again:  # it finished, once released
        assert _windowed(again, "slow") == 100


#: Loaded by the server process (PYTHONPATH): model "slow"'s windows take an hour to judge.
HANG = textwrap.dedent("""
    import time
    from watchkeeper.online import monitor as online

    _evaluate = online.OnlineMonitor._evaluate

    def _slow(self, w):
        if self.model == "slow":
            time.sleep(3600)
        return _evaluate(self, w)

    online.OnlineMonitor._evaluate = _slow
""")


@pytest.mark.slow
def test_a_server_whose_model_hangs_counts_the_others_answers_and_stops_on_sigterm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HANG)
    monkeypatch.setenv("PYTHONPATH", str(hook))
    suite = tmp_path / "suite.yaml"
    suite.write_text(_suite_text())
    url = f"sqlite:///{tmp_path / 'wk.db'}"
    server = Server(tmp_path, "--store", url, "--suite", f"slow={suite}", "--suite",
                    f"fast={suite}", "--window", "1s", "--grace", "1s",
                    "--lease-ttl", "3s").start()
    store = Store(url)
    try:
        past = time.time() - 60  # windows long due: closed at the next step
        for i, model in enumerate(["slow", "fast", "fast"]):
            status, _ = request(f"{server.url}/v1/models/{model}/events",
                                arrow(_batch(100, past + i, i)), token=WRITE,
                                content_type=ARROW)
            assert status == 200
        wait_for(lambda: [w.state for w in store.load_windows("fast")] == ["closed"] * 2,
                 timeout=30)
        assert all(w.state == "open" for w in store.load_windows("slow"))  # it hangs
        for path in ("/metrics", "/healthz"):
            (status, _), took = _within(5, request, server.url + path, token=READ,
                                        timeout=5)
            assert status == 200 and took < 2, (path, took)
        for path in ("/v1/models/slow/incidents", "/v1/models/fast/incidents"):
            (status, _), took = _within(5, request, server.url + path, token=READ,
                                        timeout=5)
            assert status == 200 and took < 2, (path, took)
        status, _ = request(f"{server.url}/v1/models/fast/events",
                            arrow(_batch(100, past + 10, 9)), token=WRITE, content_type=ARROW)
        assert status == 200
        wait_for(lambda: _windowed(store, "fast") == 300, timeout=30)  # folds on
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        server.proc.wait(30)
        assert time.monotonic() - started < 15
    finally:
        server.stop()
        store.close()
