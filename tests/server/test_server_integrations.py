"""The server with the integrations on: PagerDuty paged through one incident's whole life
(trigger, an acknowledgement taken by the API, resolve), routed by family; OTLP export of
windows, findings, incident transitions and the server's own metrics to a real receiver; a
dead collector fails nothing; an acknowledgement is sent at least once across a crash."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.helpers import OtlpReceiver, Receiver, otlp_attributes
from tests.server_helpers import READ, WRITE, Server, arrow, post, request, wait_for
from watchkeeper.alerts.notifiers import Dispatcher
from watchkeeper.errors import StoreError
from watchkeeper.server.hub import Hub
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile

KEY = "R0UTINGkey0123456789abcdef012345"


def batch(ts: float, broken: bool, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = 400
    x = rng.normal(size=n)
    if broken:
        x[rng.random(n) < 0.7] = np.nan  # the upstream producer stops filling x
    return pa.table({"x": x, "y": rng.choice(["a", "b"], n), "_ts": np.full(n, ts)})


def send(server: Server, ts: float, broken: bool, seed: int) -> None:
    assert post(server, "/v1/models/m/events", arrow(batch(ts, broken, seed)),
                content_type="application/vnd.apache.arrow.stream")[0] == 200


def suite(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    wk.init(pa.table({"x": rng.normal(size=5_000), "y": rng.choice(["a", "b"], 5_000)})).save(
        tmp_path / "s.yaml")
    return tmp_path / "s.yaml"


def test_pagerduty_lifecycle_and_otlp_export_from_the_server(tmp_path: Path):
    with Receiver([202] * 20) as pd, Receiver() as hook, OtlpReceiver() as otlp:
        server = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
                        f"m={suite(tmp_path)}", "--window", "1s", "--grace", "1s",
                        "--pagerduty", "env:PD_KEY", "--pagerduty-url", f"{pd.url}/v2/enqueue",
                        "--webhook", hook.url, "--notify", "quality=pagerduty",
                        "--otlp", otlp.url, "--otlp-interval", "1s",
                        env={"PD_KEY": KEY}).start()
        try:
            t0 = time.time()
            for i, broken in enumerate([False] * 4 + [True] * 4):
                send(server, t0 - 40 + i, broken, i)
            wait_for(lambda: pd.requests)
            trigger = pd.requests[0]["json"]
            assert (trigger["event_action"], trigger["routing_key"]) == ("trigger", KEY)
            assert trigger["payload"]["component"] == "m"
            assert trigger["payload"]["group"] == "quality"
            [incident] = request(server.url + "/v1/models/m/incidents", token=READ)[1][
                "incidents"]
            assert trigger["dedup_key"] == f"watchkeeper/m/{incident['id']}"
            status, _ = request(server.url + f"/v1/models/m/incidents/{incident['id']}/ack"
                                "?by=ops", b"", token=WRITE)
            assert status == 200
            wait_for(lambda: any(q["json"]["event_action"] == "acknowledge"
                                 for q in pd.requests))
            t1 = time.time()
            for i in range(4):
                send(server, t1 - 8 + i, False, 100 + i)
            wait_for(lambda: any(q["json"]["event_action"] == "resolve" for q in pd.requests))
            actions = [q["json"]["event_action"] for q in pd.requests]
            assert actions[0] == "trigger" and actions[-1] == "resolve"
            assert actions.index("acknowledge") < actions.index("resolve")
            assert {q["json"]["dedup_key"] for q in pd.requests} == {trigger["dedup_key"]}
            # the webhook is in no route: every notification but the acknowledgement
            wait_for(lambda: len(hook.requests) >= 2)
            assert [q["json"]["status"] for q in hook.requests] == ["firing", "resolved"]
            # OTLP: windows' metrics, finding events and the incident's transitions
            events = wait_for(lambda: (e := [otlp_attributes(r.attributes)
                                             for r in otlp.records()
                                             if r.event_name == "ml.incident"])
                              and e[-1]["ml.incident.transition"] == "resolve" and e)
            assert [e["ml.incident.transition"] for e in events] == [
                "open", "acknowledge", "resolve"]
            assert {e["ml.incident.id"] for e in events} == {incident["id"]}
            assert events[1]["ml.incident.acknowledged_by"] == "ops"
            points = otlp.points()
            assert {a["ml.model"] for name, a, _ in points if name.startswith("ml.")} == {"m"}
            assert any(name == "ml.window.rows" and v == 400.0 for name, _, v in points)
            assert any(name == "ml.finding.value" and a["ml.monitor"] == "missing_rate"
                       and a["ml.column"] == "x" for name, a, _ in points)
            # the server's own metrics (those of /metrics), under their Prometheus names
            wait_for(lambda: ("watchkeeper_ingested_rows_total",
                              {"ml.model": "m", "kind": "events"}, 4800.0) in otlp.points())
            assert ("watchkeeper_fold_leader", {}, 1.0) in otlp.points()
            sums = [m for q in otlp.metrics for rm in q.resource_metrics
                    for sm in rm.scope_metrics for m in sm.metrics
                    if m.name == "watchkeeper_ingested_rows_total"]
            assert sums[0].sum.is_monotonic and sums[0].sum.aggregation_temporality == 2
            found = [otlp_attributes(r.attributes) for r in otlp.records()
                     if r.event_name == "ml.finding"]
            assert any(f["ml.monitor"] == "missing_rate" and f["ml.family"] == "quality"
                       for f in found)
        finally:
            server.stop()
    assert KEY not in server.logs()


def test_a_dead_collector_fails_nothing_on_the_server(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with Receiver() as hook:
        server = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
                        f"m={suite(tmp_path)}", "--window", "1s", "--grace", "1s",
                        "--webhook", hook.url, "--otlp", dead).start()
        try:
            t0 = time.time()
            for i, broken in enumerate([False] * 4 + [True] * 4):
                send(server, t0 - 40 + i, broken, i)
            wait_for(lambda: hook.requests)
            assert hook.requests[0]["json"]["status"] == "firing"
            assert request(server.url + "/healthz")[0] == 200
        finally:
            server.stop()
    assert "OTLP export to" in server.logs()


class Pager:
    """A notifier that takes acknowledgements and keeps what it is sent."""

    acknowledges = True

    def __init__(self) -> None:
        self.notes: list = []

    def send(self, notification) -> None:
        self.notes.append((notification.kind, notification.incident))


def test_an_acknowledgement_is_sent_at_least_once_across_a_crash(store_url: str) -> None:
    """An acknowledgement waits in the stored alert state's outbox: the folding server sends
    it at its next step, and again after a crash between sending and saving; then never
    again."""
    rng = np.random.default_rng(0)
    text = suitefile.dump(wk.init(pa.table({"x": rng.normal(size=5_000),
                                            "y": rng.choice(["a", "b"], 5_000)})).to_dict())
    t0 = 1_700_000_000.0
    now = [t0]
    pager = Pager()
    store = Store(store_url)

    def hub() -> Hub:
        h = Hub(store, window=timedelta(seconds=1), grace=timedelta(0),
                retention=timedelta(days=1), clock=lambda: now[0],
                dispatcher=Dispatcher([pager], retries=0))
        h.load()
        return h

    def window(h: Hub, i: int, broken: bool) -> None:
        h.append("m", batch(t0 + i, broken, i), "events")
        now[0] = t0 + i + 1
        h.step()

    try:
        first = hub()
        first.register("m", text)
        for i in range(6):
            window(first, i, i >= 4)
        [(kind, incident)] = pager.notes
        assert kind == "open"
        first.acknowledge("m", incident, "ops")  # saved; not sent by the request
        assert pager.notes == [("open", incident)]
        store.save_alert_state = lambda *a: (_ for _ in ()).throw(StoreError("crash"))
        with pytest.raises(StoreError):  # sent, then the process dies before saving
            first.step()
        assert pager.notes[-1] == ("acknowledge", incident)
        del store.save_alert_state

        second = hub()
        second.step()  # the outbox as saved: sent again
        second.step()  # and then no more
        assert pager.notes == [("open", incident), ("acknowledge", incident),
                               ("acknowledge", incident)]
        assert store.alert_state("m")["outbox"] == []
    finally:
        store.close()
