"""The foreachBatch sink writes each micro-batch into the store's windows exactly once,
also when the query fails after a write and restarts from its checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    source = tmp_path / "in"
    source.mkdir()
    parts = [_rows(300, 10 + i, [i, i + 1]) for i in range(3)]
    for i, part in enumerate(parts):
        pq.write_table(part, source / f"part-{i}.parquet")
    sink = StoreSink(Store(f"sqlite:///{tmp_path / 'wk.db'}"), "m", suite, window="1h")
    calls: list[int] = []

    def crash_once(df: DataFrame, batch_id: int) -> None:
        calls.append(batch_id)
        sink(df, batch_id)
        if batch_id == 1 and calls.count(1) == 1:
            raise RuntimeError("the driver dies after the write, before Spark commits")

    def run() -> None:
        stream = (spark.readStream.schema("ts timestamp, x double, c string")
                  .option("maxFilesPerTrigger", 1).parquet(str(source)))
        query = (stream.writeStream.foreachBatch(crash_once)
                 .option("checkpointLocation", str(tmp_path / "chk"))
                 .trigger(availableNow=True).start())
        query.awaitTermination()

    with pytest.raises(StreamingQueryException, match="the driver dies"):
        run()
    assert sink.store.watermark("m") == 2  # batches 0 and 1 are in the store
    run()  # from the checkpoint: Spark replays batch 1, then runs batch 2
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
