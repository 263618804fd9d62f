"""Segments through the real server over HTTP: a window whose drift is confined to one
segment gets a finding on that segment, the window's segment metrics, and a too small
segment reported as not evaluated."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import READ, Server, arrow, post, request, wait_for


def events(n: int, seed: int, start: int = 0, ts: float | None = None,
           shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", "tiny"], n, p=[0.3, 0.4, 0.29, 0.01])
    x = rng.normal(size=n) + shift * (region == "north")
    return pa.table({
        "id": np.arange(start, start + n),
        "region": region,
        "x": x,
        "colour": rng.choice(["red", "green", "blue"], n),
        "_ts": np.full(n, time.time() if ts is None else ts),
    })


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("segments")
    wk.init(events(20_000, 0).drop_columns(["_ts"]), segments="region",
            progress=False).save(d / "suite.yaml")
    s = Server(d, "--store", f"sqlite:///{d / 'wk.db'}", "--suite",
               f"m={d / 'suite.yaml'}", "--window", "1s", "--grace", "1s").start()
    yield s
    s.stop()


def test_a_segment_drift_is_found_by_the_server(server: Server) -> None:
    t0 = time.time() - 30  # a whole window in the past: it closes at once
    batch = events(3_000, 1, start=100_000, ts=t0, shift=1.5)
    assert post(server, "/v1/models/m/events", arrow(batch),
                content_type="application/vnd.apache.arrow.stream")[0] == 200
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t0)))

    def evaluated():
        _, doc = request(server.url + f"/v1/models/m/findings?since={start}Z", token=READ)
        return [f for f in doc["findings"] if f["segment"]]

    found = wait_for(evaluated)
    assert {(f["monitor"], f["column"], f["segment"]) for f in found} == {
        ("feature_drift", "x", "region=north")}
    _, doc = request(server.url + f"/v1/models/m/windows?since={start}Z", token=READ)
    metrics = doc["windows"][0]["metrics"]["segments"]
    assert metrics["region=north"]["status"] == "alert"
    assert metrics["region=south"]["status"] == "ok"
    assert metrics["region=tiny"]["status"] == "not_evaluated"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory):
    from tests.suite.test_segments import rows

    d = tmp_path_factory.mktemp("segment-labels")
    wk.init(rows(30_000, 0), target="label", segments="region",
            progress=False).save(d / "suite.yaml")
    s = Server(d, "--store", f"sqlite:///{d / 'wk.db'}", "--suite",
               f"m={d / 'suite.yaml'}", "--window", "1s", "--grace", "1s").start()
    yield d, s
    s.stop()


def test_late_labels_give_the_segments_performance_as_a_batch_check(labelled) -> None:
    """Labels posted after their rows' window was judged and stored join their rows'
    segments through the stored prediction records: the same per-segment metrics and
    findings as a batch check of the same rows with their labels."""
    from tests.suite.test_segments import rows

    d, server = labelled
    data = rows(8_000, 21, flip=0.5)  # the north region's labels half flipped
    t0 = np.floor(time.time()) - 30
    arrow_type = "application/vnd.apache.arrow.stream"
    unlabelled = data.drop_columns(["label"]).append_column("_ts", pa.array(np.full(8_000, t0)))
    assert post(server, "/v1/models/m/events", arrow(unlabelled),
                content_type=arrow_type)[0] == 200
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t0)))

    def window() -> dict | None:
        _, doc = request(server.url + f"/v1/models/m/windows?since={start}Z", token=READ)
        ws = [w for w in doc["windows"] if w["metrics"].get("segments")]
        return ws[0] if ws else None

    judged = wait_for(window)
    assert "accuracy" not in judged["metrics"]["segments"]["region=north"].get("realised", {})
    labels = data.select(["id", "label"])
    for part in (labels.slice(5_000), labels.slice(0, 5_000)):  # later, in two parts
        assert post(server, "/v1/models/m/labels", arrow(part),
                    content_type=arrow_type)[0] == 200

    def labelled_window() -> dict | None:
        w = window()
        return w if w and w["metrics"].get("label_coverage") == 1.0 else None

    served = wait_for(labelled_window)
    batch = wk.Suite.load(d / "suite.yaml").check(data, window_rows=8_000, progress=False)
    expected = batch.to_dict()["windows"][0]
    for label, entry in expected["metrics"]["segments"].items():
        got = served["metrics"]["segments"][label]
        assert got["status"] == entry["status"], label
        assert got.get("realised", {}).keys() == entry.get("realised", {}).keys(), label
        for k, v in entry.get("realised", {}).items():
            assert got["realised"][k] == pytest.approx(v, rel=1e-5, abs=1e-6), (label, k)
    _, doc = request(server.url + f"/v1/models/m/findings?since={start}Z", token=READ)

    def key(f: dict) -> tuple:
        return f["monitor"], f["column"], f["segment"], f["metric"], f["severity"]

    assert sorted(map(str, map(key, doc["findings"]))) == \
        sorted(map(str, map(key, expected["findings"])))
    assert ("performance", "region=north") in {(f["monitor"], f["segment"])
                                               for f in doc["findings"]}
