"""Late labels across server restarts: a corrected label replaces the one it corrects, as
if the server had never stopped (the hub in process, on both store backends)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import assert_stored_like_batch
from tests.test_store import postgres, store_url  # noqa: F401  (fixtures: both backends)
from watchkeeper import suitefile
from watchkeeper.server.hub import Hub
from watchkeeper.store import Store

T0 = 1_700_000_000.0


def predictions(n: int, seed: int, start: int, ts: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    proba = 1 / (1 + np.exp(-x))
    return pa.table({"id": np.arange(start, start + n), "x": x, "proba": proba,
                     "prediction": (proba > 0.5).astype(int), "_ts": np.full(n, ts)})


@pytest.mark.parametrize("checkpoint", ["every step", "never"])
def test_corrected_labels_after_restarts_equal_the_batch_computation(
        store_url: str, checkpoint: str) -> None:  # noqa: F811  (the fixture imported above)
    """The join records are rebuilt from the last checkpoint plus the batches past it, or
    (no checkpoint) from the whole retained log: the same windows either way."""
    reference = predictions(3_000, 0, 0, T0).drop_columns(["_ts"])
    reference = reference.append_column(
        "label", pa.array((np.random.default_rng(1).random(3_000) < 0.5).astype(int)))
    text = suitefile.dump(wk.init(reference, target="label").to_dict())
    suite = wk.Suite.from_dict(suitefile.parse(text, "suite"))  # as served
    batches = [predictions(300, 2, 1_000, T0 + 1), predictions(300, 3, 1_300, T0 + 11)]
    ids = np.arange(1_000, 1_600)
    rng = np.random.default_rng(4)
    given = rng.random(600) < 0.8  # most rows get a first label…
    labels = dict(zip(ids[given].tolist(), (rng.random(given.sum()) < 0.5).astype(int).tolist(),
                      strict=True))
    fixed = rng.choice(ids, 200, replace=False)  # …some are corrected, some labeled at last
    now = [T0]
    store = Store(store_url)
    if checkpoint == "never":  # as a store written by an older server
        store.save_join_checkpoint = lambda *a, **k: None  # type: ignore[method-assign]

    def hub() -> Hub:  # a new process on the same store; the last one died without a word
        h = Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
                clock=lambda: now[0],
                checkpoint_seconds=0.0)
        h.load()
        return h

    def send(h: Hub, kind: str, table: pa.Table) -> None:
        h.append("m", table, kind)
        h.step()

    try:
        first = hub()
        first.register("m", text)
        send(first, "events", batches[0])
        now[0] = T0 + 12  # the first window closes
        send(first, "events", batches[1])
        send(first, "labels", pa.table({"id": list(labels), "label": list(labels.values())}))
        now[0] = T0 + 25  # the second closes
        second = hub()
        corrections = [1 - labels.get(i, 0) for i in fixed.tolist()]
        send(second, "labels", pa.table({"id": fixed, "label": corrections}))
        labels.update(zip(fixed.tolist(), corrections, strict=True))
        read: list[object] = []
        events_after = store.events_after

        def counted(*args: object, **kwargs: object) -> list:
            found = events_after(*args, **kwargs)  # type: ignore[arg-type]
            read.extend(found)
            return found

        store.events_after = counted  # type: ignore[method-assign]
        third = hub()  # rebuilding the records again changes no window
        del store.events_after
        assert len(read) == (0 if checkpoint == "every step" else 4)
        third.step()
        final = pa.table({"id": list(labels), "label": list(labels.values())})
        windows = store.load_windows("m")
        assert [(w.rows, w.state) for w in windows] == [(300, "closed")] * 2
        assert_stored_like_batch(suite, batches, windows, final)
        assert third.counters["unmatched_labels:m"] == 0
    finally:
        store.close()
