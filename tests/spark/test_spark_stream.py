"""The foreachBatch sink writes each micro-batch into the store's windows exactly once,
also when the query fails after a write and restarts from its checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession

import watchkeeper as wk
from watchkeeper.spark.stream import StoreSink
from watchkeeper.store import Store

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # a Spark session takes seconds to start

HOUR0 = datetime(2026, 12, 2, 8, tzinfo=UTC)


def _rows(n: int, seed: int, hours: list[int]) -> pa.Table:
    rng = np.random.default_rng(seed)
    stamps = [HOUR0 + timedelta(hours=int(h), seconds=int(s))
              for h, s in zip(rng.choice(hours, n), rng.integers(0, 3600, n), strict=True)]
    return pa.table({"ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
                     "x": rng.normal(size=n), "c": rng.choice(["a", "b", "c"], n)})


@pytest.mark.slow
def test_a_restarted_query_counts_every_micro_batch_once(spark: SparkSession,
                                                          tmp_path: Path) -> None:
    suite = wk.init(_rows(2_000, 1, [0]), timestamp="ts")
    parts = [_rows(300, 10 + i, [i, i + 1]) for i in range(3)]
    sink = StoreSink(Store(f"sqlite:///{tmp_path / 'wk.db'}"), "m", suite, window="1h")
    written: list[int] = []

    def died() -> None:
        written.append(sink.store.watermark("m"))  # batches 0 and 1 are in the store

    calls = _crash_and_restart(spark, tmp_path, parts, sink, "ts timestamp, x double, "
                               "c string", died)
    assert written == [2]
    assert calls == [0, 1, 1, 2]
    assert sink.store.watermark("m") == 3
    stored = sink.windows()
    everything = pa.concat_tables(parts)
    want = suite.check(everything, window="1h")
    assert [w.rows for w in stored] == [w.rows for w in want.windows]
    assert [w.start for w in stored] == [HOUR0 + timedelta(hours=h) for h in range(4)]
    assert sum(w.rows for w in stored) == 900  # none lost, none twice
    for record, window in zip(stored, want.windows, strict=True):
        got = wk.Profile.from_dict(record.profile)
        assert got.columns["c"].bins.tolist() == window.profile.columns["c"].bins.tolist()
        assert got.columns["x"].bins.tolist() == window.profile.columns["x"].bins.tolist()
        assert got.columns["x"].moments.mean == pytest.approx(
            window.profile.columns["x"].moments.mean, rel=1e-12)
        assert "drift" in record.metrics


def _events(n: int, seed: int, first: float, shift: float) -> pa.Table:
    """``n`` events over the 5 one-second windows from ``first`` (Unix seconds)."""
    rng = np.random.default_rng(seed)
    return pa.table({"_ts": first + rng.integers(0, 5, n) + rng.random(n) * 0.99,
                     "x": rng.normal(size=n) + shift, "c": rng.choice(["a", "b", "c"], n)})


@pytest.mark.slow
def test_a_running_server_judges_the_micro_batches_once(spark: SparkSession,
                                                         tmp_path: Path) -> None:
    """A real ``watchkeeper serve`` and a file-source query fed through ServerSink, which
    fails once right after a write and restarts from its checkpoint: the server's windows
    count every row once, and its findings and incidents are served by the API."""
    import time

    from tests.server_helpers import READ, Server, metric, request, wait_for
    from watchkeeper.spark.stream import ServerSink

    rng = np.random.default_rng(0)
    wk.init(pa.table({"x": rng.normal(size=3_000), "c": rng.choice(["a", "b", "c"], 3_000)})
            ).save(tmp_path / "suite.yaml")
    url = f"sqlite:///{tmp_path / 'wk.db'}"
    server = Server(tmp_path, "--store", url, "--suite", f"m={tmp_path / 'suite.yaml'}",
                    "--window", "1s", "--grace", "1s", "--lease-ttl", "0").start(timeout=180)
    try:
        first = float(int(time.time())) - 600  # past windows: closed as soon as folded
        parts = [_events(300, 20 + i, first + 5 * i, 4.0) for i in range(3)]
        # 5 rows of the last micro-batch over a day ahead: no window of theirs (they would
        # open one that closes in two days), windowed when logged and counted, as the
        # server does for such rows posted to it
        ahead = parts[2].slice(0, 5)
        ahead = ahead.set_column(0, "_ts", pa.array(np.full(5, time.time() + 2 * 86_400)))
        parts[2] = pa.concat_tables([ahead, parts[2].slice(5)])
        sink = ServerSink(url, "m", window="1s")
        calls = _crash_and_restart(spark, tmp_path, parts, sink,
                                   "_ts double, x double, c string")
        assert calls == [0, 1, 1, 2]
        logged = sink.store.events_after("m", 0, limit=100, max_bytes=1 << 30)
        assert len(logged) == 3  # the replayed micro-batch was not logged again

        def windows() -> list[dict[str, Any]]:
            found = request(server.url + "/v1/models/m/windows", token=READ)[1]
            rows = sum(w["rows"] for w in found["windows"])
            return found["windows"] if rows == 900 else []

        served = wait_for(windows, timeout=120)
        everything = pa.concat_tables([*parts[:2], parts[2].slice(5)])  # a usable time
        seconds = np.floor(everything.column("_ts").to_numpy()).astype(int)
        want = dict(zip(*np.unique(seconds, return_counts=True), strict=True))
        got = {int(datetime.fromisoformat(w["start"]).timestamp()): w["rows"] for w in served
               if w["rows"]}
        logged_at = [k for k in got if k > first + 60]  # the window the batch was logged in
        assert len(logged_at) == 1 and time.time() - 600 < logged_at[0] <= time.time()
        assert got.pop(logged_at[0]) == 5
        assert got == {int(k): int(v) for k, v in want.items()}  # every row once, in its window
        assert metric(server, 'watchkeeper_bad_timestamp_rows_total{model="m"}') == 5

        def incidents() -> list[dict[str, Any]]:
            return request(server.url + "/v1/models/m/incidents?status=open",
                           token=READ)[1]["incidents"]

        opened = wait_for(incidents, timeout=120)
        assert any("x" in json.dumps(i) for i in opened)
        findings = request(server.url + "/v1/models/m/findings", token=READ)[1]
        assert any(f.get("column") == "x" for f in findings["findings"])
    finally:
        server.stop()


def _predictions(n: int, seed: int, first: float, start_id: int) -> pa.Table:
    """``n`` predictions with ids over the 5 one-second windows from ``first``; every
    tenth without an id (kept by neither path)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    proba = 1 / (1 + np.exp(-x))
    ids = pa.array([None if i % 10 == 9 else start_id + i for i in range(n)], pa.int64())
    return pa.table({"_ts": first + rng.integers(0, 5, n) + rng.random(n) * 0.99,
                     "id": ids, "x": x, "proba": proba,
                     "prediction": (proba > 0.5).astype(np.int64),
                     "region": rng.choice(["north", "south"], n)})


@pytest.mark.slow
def test_late_labels_join_rows_streamed_as_rows_posted(spark: SparkSession,
                                                       tmp_path: Path) -> None:
    """The same predictions with ids, streamed through ServerSink (the query dies after a
    write and restarts from its checkpoint) to one model and posted over HTTP to another of
    the same suite; then the same labels posted to both: every label joins on both, and the
    served windows have the same rows, label coverage and realised performance."""
    import time

    from tests.server_helpers import ARROW, READ, Server, arrow, metric, post, request, wait_for
    from watchkeeper.spark.stream import ServerSink

    rng = np.random.default_rng(0)
    reference = _predictions(3_000, 1, 0.0, 0).drop_columns(["_ts"])
    reference = reference.append_column("label", pa.array(
        (rng.random(3_000) < reference.column("proba").to_numpy()).astype(np.int64)))
    suite = wk.init(reference, target="label", segments="region")
    assert suite.segments is not None
    suite.segments.min_rows = 20  # the test's windows hold ~90 rows of each region
    suite.save(tmp_path / "suite.yaml")
    url = f"sqlite:///{tmp_path / 'wk.db'}"
    server = Server(tmp_path, "--store", url, "--suite", f"spark={tmp_path / 'suite.yaml'}",
                    "--suite", f"http={tmp_path / 'suite.yaml'}", "--window", "1s",
                    "--grace", "1s", "--lease-ttl", "0").start(timeout=180)
    try:
        first = float(int(time.time())) - 600  # past windows: closed as soon as folded
        parts = [_predictions(300, 20 + i, first + 5 * i, 1_000 * i) for i in range(3)]
        for part in parts:
            assert post(server, "/v1/models/http/events", arrow(part),
                        content_type=ARROW)[0] == 200
        sink = ServerSink(url, "spark", window="1s")
        calls = _crash_and_restart(spark, tmp_path, parts, sink,
                                   "_ts double, id long, x double, proba double, "
                                   "prediction long, region string")
        assert calls == [0, 1, 1, 2]
        with_ids = sum(p.num_rows - p.column("id").null_count for p in parts)

        def folded(model: str) -> list[dict[str, Any]]:
            found = request(server.url + f"/v1/models/{model}/windows", token=READ)[1]
            rows = sum(w["rows"] for w in found["windows"])
            return found["windows"] if rows == 900 else []

        for model in ("spark", "http"):
            wait_for(lambda m=model: folded(m), timeout=120)
            # the replayed micro-batch's records were not written twice
            assert sink.store.label_record_count(model) == with_ids == 810
        everything = pa.concat_tables(parts)
        ids = everything.column("id").drop_null().to_numpy()
        labelled = ids[rng.random(len(ids)) < 0.7]
        values = (rng.random(len(labelled)) < 0.5).astype(np.int64)
        labels = pa.table({"id": np.concatenate([labelled, [99_999]]),
                           "label": np.concatenate([values, [1]])})  # one id never predicted
        for model in ("spark", "http"):
            assert post(server, f"/v1/models/{model}/labels", arrow(labels),
                        content_type=ARROW)[0] == 200

        def joined(model: str) -> list[dict[str, Any]]:
            windows = folded(model)
            covered = sum(w["rows"] * w["metrics"].get("label_coverage", 0.0) for w in windows)
            return windows if round(covered) == len(labelled) else []

        served = {m: wait_for(lambda m=m: joined(m), timeout=120) for m in ("spark", "http")}
        assert [(w["start"], w["rows"]) for w in served["spark"]] == \
            [(w["start"], w["rows"]) for w in served["http"]]
        judged = 0
        for a, b in zip(served["spark"], served["http"], strict=True):
            assert a["metrics"]["label_coverage"] == pytest.approx(
                b["metrics"]["label_coverage"], rel=1e-12)
            assert a["metrics"]["realised"].keys() >= {"labeled", "accuracy", "roc_auc"}
            assert a["metrics"]["realised"] == pytest.approx(b["metrics"]["realised"],
                                                             rel=1e-9, nan_ok=True)
            # late labels move the streamed rows in their segments too
            segments = a["metrics"]["segments"]
            assert segments.keys() == b["metrics"]["segments"].keys() \
                == {"region=north", "region=south"}
            for label, entry in segments.items():
                mine = entry.get("realised")
                theirs = b["metrics"]["segments"][label].get("realised")
                assert (mine is None) == (theirs is None), label
                if mine is not None:
                    assert mine == pytest.approx(theirs, rel=1e-9, nan_ok=True)
                    judged += "accuracy" in mine
        assert judged >= 4  # segment windows with realised performance from late labels
        for model in ("spark", "http"):
            assert metric(server, f'watchkeeper_unmatched_labels_total{{model="{model}"}}') \
                == 1
    finally:
        server.stop()


def _crash_and_restart(spark: SparkSession, tmp_path: Path, parts: list[pa.Table], sink: Any,
                       schema: str, died: Callable[[], None] | None = None) -> list[int]:
    """Stream ``parts`` (one Parquet file, one micro-batch each) into ``sink`` with a query
    that dies right after writing micro-batch 1, before Spark commits it (``died`` is called
    then), then restarts from its checkpoint (Spark replays batch 1, then runs batch 2);
    returns the batch ids of the sink's calls."""
    source = tmp_path / "in"
    source.mkdir()
    for i, part in enumerate(parts):
        pq.write_table(part, source / f"part-{i}.parquet")
    calls: list[int] = []

    def crash_once(df: DataFrame, batch_id: int) -> None:
        calls.append(batch_id)
        sink(df, batch_id)
        if batch_id == 1 and calls.count(1) == 1:
            raise RuntimeError("the driver dies after the write, before Spark commits")

    def run() -> None:
        stream = (spark.readStream.schema(schema).option("maxFilesPerTrigger", 1)
                  .parquet(str(source)))
        query = (stream.writeStream.foreachBatch(crash_once)
                 .option("checkpointLocation", str(tmp_path / "chk"))
                 .trigger(availableNow=True).start())
        query.awaitTermination()

    with pytest.raises(StreamingQueryException, match="the driver dies"):
        run()
    if died is not None:
        died()
    run()
    return calls


@pytest.mark.slow
def test_personal_data_is_hashed_on_spark_with_the_servers_key(spark: SparkSession,
                                                                tmp_path: Path) -> None:
    """A suite with a personal-data column: ServerSink hashes it on the executors with the
    server's key before profiling, so no raw value reaches the store and the windows equal
    those of the same rows posted over HTTP; a sink with another key is set aside."""
    import time

    from tests.server_helpers import ARROW, READ, Server, arrow, post, request, wait_for
    from watchkeeper.spark.stream import ServerSink

    def rows(n: int, seed: int, first: float) -> pa.Table:
        rng = np.random.default_rng(seed)
        return pa.table({"_ts": first + rng.integers(0, 3, n) + rng.random(n) * 0.99,
                         "x": rng.normal(size=n),
                         "email": [None if i % 9 == 0 else f"user{int(k)}@example.com"
                                   for i, k in enumerate(rng.integers(0, 500, n))]})

    wk.init(rows(2_000, 1, 0.0).drop_columns(["_ts"]), pii="email").save(
        tmp_path / "suite.yaml")
    url = f"sqlite:///{tmp_path / 'wk.db'}"
    server = Server(tmp_path, "--store", url, "--suite", f"spark={tmp_path / 'suite.yaml'}",
                    "--suite", f"http={tmp_path / 'suite.yaml'}", "--suite",
                    f"other={tmp_path / 'suite.yaml'}", "--window", "1s", "--grace", "1s",
                    "--lease-ttl", "0", env={"WATCHKEEPER_PII_KEY": "the-servers-key"}
                    ).start(timeout=180)
    try:
        first = float(int(time.time())) - 600
        parts = [rows(200, 10 + i, first + 3 * i) for i in range(3)]
        for part in parts:
            assert post(server, "/v1/models/http/events", arrow(part),
                        content_type=ARROW)[0] == 200
        _crash_and_restart(spark, tmp_path, parts,
                           ServerSink(url, "spark", window="1s", pii_key="the-servers-key"),
                           "_ts double, x double, email string")
        ServerSink(url, "other", window="1s", pii_key="another-key", query="by-hand")(
            spark.createDataFrame(parts[0].to_pandas()), 0)

        def folded(model: str) -> list[dict[str, Any]]:
            found = request(server.url + f"/v1/models/{model}/windows", token=READ)[1]
            rows = sum(w["rows"] for w in found["windows"])
            return found["windows"] if rows == 600 else []

        served = {m: wait_for(lambda m=m: folded(m), timeout=120) for m in ("spark", "http")}
        assert [(w["start"], w["rows"]) for w in served["spark"]] == \
            [(w["start"], w["rows"]) for w in served["http"]]
        store = Store(url)
        try:
            mine, theirs = store.load_windows("spark"), store.load_windows("http")
            for a, b in zip(mine, theirs, strict=True):
                assert a.profile["columns"]["email"] == b.profile["columns"]["email"]

            def set_aside() -> list[Any]:
                return store.quarantined_events("other")

            errors = [e.error or "" for e in wait_for(set_aside, timeout=120)]
            assert "not hashed with this server's key" in errors[0]
        finally:
            store.close()
        for name in ("wk.db", "wk.db-wal"):
            if (tmp_path / name).exists():
                assert b"@example.com" not in (tmp_path / name).read_bytes()
    finally:
        server.stop()
