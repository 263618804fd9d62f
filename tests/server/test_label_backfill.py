"""A store from before the prediction records were kept in it (schema version 7): the
upgrade rebuilds the records of the batches folded before it from the retained event log,
so that labels and corrections after the upgrade join as if it had never happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from tests.server.test_labels_restart import T0, _served, predictions
from tests.server_helpers import Server, assert_stored_like_batch, request, wait_for
from watchkeeper.server.hub import SCOPE, Hub, backfill
from watchkeeper.store import Store, migrations
from watchkeeper.store.migrations import LATEST


def _as_before_label_records(url: str) -> None:
    """Make the store one that schema version 7 left: no label_records (the server kept
    the records in memory then), no label_backfill, versions 8 and later not reached."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE label_backfill"))
        conn.execute(sa.text("DROP TABLE label_records"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        before = [step for _, step in migrations.MIGRATIONS].index(migrations._label_records)
        for v in range(1, before + 1):
            conn.execute(sa.text("INSERT INTO schema_version VALUES (:v, :t, 'old')"),
                         {"v": v, "t": datetime.now(UTC)})
    engine.dispose()


def _hub(store: Store, now: list[float], **kwargs: object) -> Hub:
    """A loaded hub of 10-second windows, no grace, on the clock ``now[0]``."""
    hub = Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
              clock=lambda: now[0], **kwargs)
    hub.load()
    return hub


def _folded_before_the_upgrade(store_url: str, batches: list[tuple[pa.Table, str]],
                               now: list[float]) -> int:
    """The batches (table, kind) folded in one step by a server of schema version 7
    (:func:`_as_before_label_records`); returns the watermark it reached."""
    text, _ = _served()
    with Store(store_url) as store:
        old = _hub(store, now)
        old.register("m", text)
        for table, kind in batches:
            old.append("m", table, kind)
        old.step()
        folded = store.watermark("m")
    _as_before_label_records(store_url)
    return folded


def test_records_of_batches_folded_before_the_upgrade_are_rebuilt(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Predictions and labels folded by an old server; after the
    upgrade, corrections of those labels and first labels of the others join exactly
    (0 unmatched, windows equal to the batch computation), rebuilt a batch per step."""
    monkeypatch.setattr(backfill, "FOLD_BATCHES", 1)  # one batch per step: resumed often
    text, suite = _served()
    now = [T0]
    batches = [predictions(300, 2, 1_000, T0 + 1), predictions(300, 3, 1_300, T0 + 11),
               predictions(50, 4, 1_600, T0 + 12)]  # after the labels
    ids = np.arange(1_000, 1_650)
    first = {i: int(i % 2) for i in ids[:600:3].tolist()}
    store = Store(store_url)
    try:
        old = _hub(store, now)
        old.register("m", text)
        for b in batches[:2]:
            old.append("m", b, "events")
            old.step()
        old.append("m", pa.table({"id": list(first), "label": list(first.values())}), "labels")
        old.append("m", batches[2], "events")
        old.step()
        assert old.counters["unmatched_labels:m"] == 0
        folded = store.watermark("m")
    finally:
        store.close()
    _as_before_label_records(store_url)

    store = Store(store_url)
    try:
        assert store.migrate() == LATEST
        assert store.label_backfills() == {"m": (folded, 0)}
        assert store.label_record_count("m") == 0
        now[0] = T0 + 25  # both windows close
        new = _hub(store, now)
        new.append("m", predictions(20, 5, 5_000, T0 + 22), "events")  # after the upgrade
        fixed = ids[::5]
        corrections = {i: 1 - first.get(i, 0) for i in fixed.tolist()}
        new.append("m", pa.table({"id": list(corrections), "label": list(corrections.values())}),
                   "labels")
        steps = 0
        while store.label_backfills() and steps < 20:
            new.step()
            steps += 1
        assert steps == 4  # one batch of the old log per step
        new.step()
        assert store.watermark("m") > folded  # folded on once the records were rebuilt
        assert store.label_record_count("m") == 670
        assert new.counters["unmatched_labels:m"] == 0
        labels = {**first, **corrections}
        final = pa.table({"id": list(labels), "label": list(labels.values())})
        windows = [w for w in store.load_windows("m") if w.start.timestamp() < T0 + 20]
        second = pa.concat_tables(batches[1:])  # one window
        assert_stored_like_batch(suite, [batches[0], second], windows, final)
    finally:
        store.close()


def test_a_backfill_step_done_twice_writes_the_same_records(store_url: str) -> None:
    """Idempotent: after a crash between a step's commit and the next (or a takeover), the
    backfill starting over from an earlier point leaves the same records."""
    now = [T0]
    _folded_before_the_upgrade(store_url, [
        (predictions(200, 2, 0, T0 + 1), "events"),
        (pa.table({"id": [3, 4, 5], "label": [1, 0, 1]}), "labels")], now)

    def records(s: Store) -> list[tuple]:
        return sorted(s.label_records("m", 1, [str(i) for i in range(200)]))

    store = Store(store_url)
    try:
        store.migrate()
        through = store.label_backfills()["m"][0]
        for _ in range(2):
            _hub(store, now).step()
            assert store.label_backfills() == {}
            once = records(store)
            engine = sa.create_engine(store_url)
            with engine.begin() as conn:  # as if the backfill's progress were not saved
                conn.execute(sa.text("INSERT INTO label_backfill VALUES ('m', :t, 0)"),
                             {"t": through})
            engine.dispose()
        _hub(store, now).step()
        assert records(store) == once
        assert len(once) == 200
        codes = {r[0]: r[3] for r in once}  # label codes: class index, or "unlabeled"
        unlabeled = {codes.pop(k) for k in list(codes) if k not in ("3", "4", "5")}
        assert len(unlabeled) == 1
        assert codes["3"] == codes["5"] != codes["4"] and unlabeled.isdisjoint(codes.values())
    finally:
        store.close()


def test_only_an_upgrade_from_before_label_records_backfills(store_url: str) -> None:
    """A new store has nothing to rebuild; nor has one that reached version 8 earlier (its
    fold has written records and joined labels to them since: a replay could undo them)."""
    with Store(store_url) as store:
        store.append_events("m", b"x", rows=1)
        store.save_windows("m", [], watermark=1)
        assert store.label_backfills() == {}
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE label_backfill"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        before = [step for _, step in migrations.MIGRATIONS].index(migrations._label_backfill)
        for v in range(1, before + 1):
            conn.execute(sa.text("INSERT INTO schema_version VALUES (:v, :t, 'old')"),
                         {"v": v, "t": datetime.now(UTC)})
    engine.dispose()
    with Store(store_url) as store:
        assert store.migrate() == LATEST
        assert store.label_backfills() == {}
        assert store.watermark("m") == 1


def test_healthz_says_a_backfill_runs_and_how_far_it_is(store_url: str, tmp_path: Path) -> None:
    """Over HTTP: while a model's prediction records are being rebuilt after an upgrade
    (its fold waits), /healthz lists the backfill with its progress and the server is not
    caught up; once it is done, the list is empty and the server folds."""
    folded = _folded_before_the_upgrade(store_url, [
        *[(predictions(100, 2 + i, 100 * i, T0 + 1), "events") for i in range(3)],
        (pa.table({"id": [3, 4, 5], "label": [1, 0, 1]}), "labels")], [T0])
    with Store(store_url) as store:
        store.migrate()
        other = store.acquire_lease(SCOPE, "another server", 600)  # holds the fold for now
        assert other.owner == "another server"
        # the rows are of 2023: with a retention of 7 days (the default) their windows
        # would be past it, and their records not rebuilt
        server = Server(tmp_path, "--store", store_url, "--window", "10s", "--grace", "1s",
                        "--lease-ttl", "2s", "--retention", "3650d").start(timeout=60)
        try:
            _, health = request(server.url + "/healthz")
            assert health["backfill"] == {"m": {"through": folded, "done": 0,
                                                "batches_left": 4}}
            assert health["folding"] is False and health["leader"] is False
            assert store.release_lease(SCOPE, "another server")  # this server takes over
            wait_for(lambda: request(server.url + "/healthz")[1]["folding"], timeout=60)
            _, health = request(server.url + "/healthz")
            assert health["backfill"] == {} and health["leader"] is True
            assert store.label_backfills() == {}
            assert store.label_record_count("m") == 300
        finally:
            server.stop()


def test_records_of_windows_past_the_retention_are_not_rebuilt(store_url: str) -> None:
    """Rows timed long before they arrived: the records of their windows past the
    retention would be deleted by the fold's next expiry, so the backfill does not write
    them; the window within it gets its records."""
    now = [T0 + 25]
    _folded_before_the_upgrade(store_url, [
        (predictions(200, 2, 0, T0 + 1), "events"),  # window T0
        (predictions(100, 3, 200, T0 + 11), "events")], now)  # window T0 + 10

    store = Store(store_url)
    try:
        store.migrate()
        # the retention starts at T0 + 13, in the window of T0 + 10
        hub = _hub(store, now, retention=timedelta(seconds=12))
        hub.step()
        assert store.label_backfills() == {}
        ids = [str(i) for i in range(300)]
        assert sorted(int(r[0]) for r in store.label_records("m", 1, ids)) == \
            list(range(200, 300))
        # not written and then expired (the fold's expiry ran in this step too)
        assert hub.models["m"].current.counters["label_records_expired"] == 0
    finally:
        store.close()
