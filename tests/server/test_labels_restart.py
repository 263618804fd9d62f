"""Late labels across server restarts: a corrected label replaces the one it corrects, as
if the server had never stopped (the hub in process, on both store backends)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from tests.server_helpers import assert_stored_like_batch
from watchkeeper.server.hub import Hub
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile

T0 = 1_700_000_000.0


def predictions(n: int, seed: int, start: int, ts: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    proba = 1 / (1 + np.exp(-x))
    return pa.table({"id": np.arange(start, start + n), "x": x, "proba": proba,
                     "prediction": (proba > 0.5).astype(int), "_ts": np.full(n, ts)})


def test_corrected_labels_after_restarts_equal_the_batch_computation(
        store_url: str) -> None:
    """The join records are in the store: a restart reads no retained batch to rebuild
    them, and labels (first ones, corrections) join through the store as without one."""
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

    def hub() -> Hub:  # a new process on the same store; the last one died without a word
        h = Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
                clock=lambda: now[0])
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
        assert read == []
        third.step()
        final = pa.table({"id": list(labels), "label": list(labels.values())})
        windows = store.load_windows("m")
        assert [(w.rows, w.state) for w in windows] == [(300, "closed")] * 2
        assert_stored_like_batch(suite, batches, windows, final)
        assert third.counters["unmatched_labels:m"] == 0
    finally:
        store.close()


def _served(n: int = 3_000) -> tuple[str, wk.Suite]:
    reference = predictions(n, 0, 0, T0).drop_columns(["_ts"])
    reference = reference.append_column(
        "label", pa.array((np.random.default_rng(1).random(n) < 0.5).astype(int)))
    text = suitefile.dump(wk.init(reference, target="label").to_dict())
    return text, wk.Suite.from_dict(suitefile.parse(text, "suite"))


def test_labels_join_through_the_store_with_nothing_in_memory(
        store_url: str) -> None:
    """The prediction records are rows of the store, written with the windows: none stays
    in memory after a step, and a new server joins labels to them at once. Two label
    batches for one id in one step, and again in a later one: the last label counts."""
    text, suite = _served()
    batch = predictions(400, 2, 0, T0 + 1)
    now = [T0]
    store = Store(store_url)
    try:
        first = Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
                    clock=lambda: now[0])
        first.load()
        first.register("m", text)
        first.append("m", batch, "events")
        first.step()
        assert store.label_record_count("m") == 400
        stored = first.models["m"].current._stored
        assert stored is not None and stored.pending.rows == 0 and not stored.joined
        second = Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
                     clock=lambda: now[0])
        second.load()
        ids = np.arange(0, 400)
        wrong = (ids % 2).tolist()
        right = (1 - ids % 2).tolist()
        second.append("m", pa.table({"id": ids, "label": wrong}), "labels")
        second.append("m", pa.table({"id": ids[:200], "label": right[:200]}), "labels")
        second.step()  # both batches in one step: the second replaces the first
        now[0] = T0 + 12
        second.step()
        second.append("m", pa.table({"id": ids[200:].astype(float), "label": right[200:]}),
                      "labels")  # float ids (a column with gaps) find integer ones
        second.step()
        assert second.counters["unmatched_labels:m"] == 0
        assert_stored_like_batch(suite, [batch], store.load_windows("m"),
                                 pa.table({"id": ids, "label": right}))
    finally:
        store.close()


def test_records_past_the_retention_are_gone(store_url: str) -> None:
    """Records of windows past the retention are deleted from the store; a label for
    one of them is unmatched (counted), a label for a kept one joins."""
    text, _ = _served()
    now = [T0]
    store = Store(store_url)
    try:
        hub = Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
                  retention=timedelta(seconds=60), expire_seconds=0.0, clock=lambda: now[0])
        hub.load()
        hub.register("m", text)
        hub.append("m", predictions(100, 2, 0, T0 + 1), "events")
        hub.step()
        now[0] = T0 + 75  # the first window (T0 .. T0 + 10) is past the retention
        hub.append("m", predictions(100, 3, 100, T0 + 71), "events")
        hub.step()
        assert store.label_record_count("m") == 100
        assert store.label_records("m", 1, ["5"]) == []
        assert hub.models["m"].current.counters["label_records_expired"] == 100
        hub.append("m", pa.table({"id": [5, 150], "label": [1, 0]}), "labels")
        hub.step()
        assert hub.counters["unmatched_labels:m"] == 1
    finally:
        store.close()
