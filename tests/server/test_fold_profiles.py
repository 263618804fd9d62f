"""Window profiles logged by a sink that profiled the rows elsewhere (Spark's ServerSink):
the fold merges them into its windows as if it had folded the rows, and sets aside a batch
profiled in other windows or with another suite version."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from tests.server_helpers import _batch, _suite_text
from watchkeeper.profiles.shipped import PROFILES_KEY, profiled_batch, profiled_windows
from watchkeeper.server.hub import FOLD_ATTEMPTS, Hub
from watchkeeper.store import Store
from watchkeeper.suite import file as suitefile
from watchkeeper.wire import to_ipc

T0 = 1_700_000_000.0  # a multiple of 10 s


def _profiles(suite: wk.Suite, table: pa.Table, step: float) -> list[tuple[float | None,
                                                                          wk.Profile]]:
    keys = np.floor(table.column("_ts").to_numpy() / step)
    return [(float(k * step), suite.profile(table.filter(pa.array(keys == k))))
            for k in np.unique(keys)]


def test_profiles_fold_as_the_rows_would(tmp_path: Path) -> None:
    rows = pa.concat_tables([_batch(120, T0 + 1, 1), _batch(80, T0 + 12, 2)])
    stores = {name: Store(f"sqlite:///{tmp_path / name}.db") for name in ("rows", "profiles")}
    hubs = {name: Hub(store, window=timedelta(seconds=10), grace=timedelta(0),
                      clock=lambda: T0, lease_ttl=None) for name, store in stores.items()}
    try:
        for hub in hubs.values():
            hub.register("m", _suite_text())
        suite = wk.Suite.from_dict(suitefile.parse(_suite_text(), "suite"))
        hubs["rows"].append("m", rows, "events")
        logged = profiled_batch(1, 10.0, _profiles(suite, rows, 10.0))
        assert profiled_windows(logged) is not None and profiled_windows(rows) is None
        stores["profiles"].append_batch("m", to_ipc(logged), rows.num_rows, "events",
                                        key="spark:q:0")
        for hub in hubs.values():
            hub.step(now=T0 + 30, wait=5)
        mine, theirs = (stores[n].load_windows("m") for n in ("profiles", "rows"))
        assert [(w.start, w.rows, w.state) for w in mine] == \
            [(w.start, w.rows, w.state) for w in theirs] == [
                (mine[0].start, 120, "closed"), (mine[1].start, 80, "closed")]
        for a, b in zip(mine, theirs, strict=True):
            assert a.profile["columns"]["y"] == b.profile["columns"]["y"]
            assert a.metrics.keys() == b.metrics.keys()
        assert stores["profiles"].findings("m") == stores["rows"].findings("m")
    finally:
        for hub in hubs.values():
            hub.stop(timeout=5)
        for store in stores.values():
            store.close()


def test_profiles_of_other_windows_or_versions_are_set_aside(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'wk.db'}")
    hub = Hub(store, window=timedelta(seconds=10), grace=timedelta(0), clock=lambda: T0,
              lease_ttl=None)
    try:
        hub.register("m", _suite_text())
        suite = hub.models["m"].current.suite
        rows = _batch(50, T0 + 1, 3)
        for seconds, version in ((60.0, 1), (10.0, 7)):
            store.append_batch("m", to_ipc(profiled_batch(
                version, seconds, _profiles(suite, rows, seconds))), 50, "events")
        for i in range(2 * FOLD_ATTEMPTS + 2):
            hub.step(now=T0 + 30 + i, wait=5)
        errors = [e.error or "" for e in store.quarantined_events("m")]
        assert len(errors) == 2
        assert "windows of 60 s; this server's are 10 s" in errors[0]
        assert "suite version 7" in errors[1] and "served by version 1" in errors[1]
        assert sum(w.rows for w in store.load_windows("m")) == 0
    finally:
        hub.stop(timeout=5)
        store.close()


def test_an_http_client_cannot_pose_as_a_sink() -> None:
    """A batch posted as Arrow keeps its rows but not its schema metadata: one dressed as
    a batch of window profiles is folded as the rows it is."""
    from tests.server_helpers import ARROW, arrow
    from watchkeeper.server.ingest import parse_body

    rows = _batch(5, T0 + 1, 4)
    dressed = rows.replace_schema_metadata(profiled_batch(1, 10.0, []).schema.metadata)
    assert PROFILES_KEY in (dressed.schema.metadata or {})
    parsed = parse_body(arrow(dressed), ARROW)
    assert parsed.num_rows == 5 and profiled_windows(parsed) is None
