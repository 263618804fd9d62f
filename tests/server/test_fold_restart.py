"""A restart or a takeover starts from what the store holds (windows with their watermark,
the alert state), not from a replay of the retained event log when the suite joins no
labels; /healthz says a server folds only once it is caught up, and how far it lags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.server_helpers import _batch, _suite_text, _windowed
from watchkeeper.server.hub import CAUGHT_UP_SECONDS, Hub
from watchkeeper.store import Store, tables
from watchkeeper.wire import to_ipc


@pytest.fixture
def url(store_url: str) -> str:
    return store_url


def _hub(store: Store, t0: float, **options: Any) -> Hub:
    """A hub with 10 s windows and no grace, its clock stopped at ``t0``, and no lease."""
    return Hub(store, window=timedelta(seconds=10), grace=timedelta(0), clock=lambda: t0,
               lease_ttl=None, **options)


def test_health_says_folding_only_once_rebuilt_and_caught_up_with_the_lag(
        url: str) -> None:
    t0 = 1_700_000_000.0
    with Store(url) as store:
        hub = _hub(store, t0)
        hub.register("m", _suite_text())
        health = hub.health()
        assert (health["folding"], health["lag_seconds"], health["backlog_batches"]) == (
            True, 0.0, 0)
        hub.append("m", _batch(10, t0, 1), "events")
        assert hub.health()["backlog_batches"] == 1  # not folded yet, but only just
        assert hub.health()["folding"] is True
        with store._engine.begin() as conn:  # a batch waiting for a minute
            conn.execute(sa.insert(tables.events).values(
                model="m", kind="events", rows=10, payload=to_ipc(_batch(10, t0, 2)),
                received_at=datetime.now(UTC) - timedelta(seconds=60)))
        health = hub.health()
        assert health["folding"] is False and health["backlog_batches"] == 2
        assert 60 <= health["lag_seconds"] < 60 + CAUGHT_UP_SECONDS
        hub.step()
        assert hub.health()["folding"] is True and hub.health()["lag_seconds"] == 0.0

        restarted = _hub(store, t0)
        restarted.load(defer=True)  # serving at once; each model rebuilt by its own step
        assert restarted.health()["loading"] == ["m"]
        assert restarted.health()["folding"] is False
        restarted.step()
        assert restarted.health()["loading"] == [] and restarted.health()["folding"] is True
        assert _windowed(store) == 20


def test_a_restart_reads_no_retained_event_when_the_suite_joins_no_labels(
        url: str) -> None:
    t0 = 1_700_000_000.0
    with Store(url) as store:
        hub = _hub(store, t0)
        hub.register("m", _suite_text())
        for i in range(30):
            hub.append("m", _batch(10, t0 + i % 10, i), "events")
        hub.step()
        read: list[Any] = []
        events_after = store.events_after

        def counted(*args: Any, **kwargs: Any) -> Any:
            found = events_after(*args, **kwargs)
            read.extend(found)
            return found

        store.events_after = counted  # type: ignore[method-assign]
        restarted = _hub(store, t0)
        restarted.load()
        restarted.append("m", _batch(10, t0, 99), "events")
        restarted.step()
        assert len(read) == 1  # only the batch past the watermark
        assert _windowed(store) == 310


def test_retention_forgets_folded_batches_by_their_arrival(url: str) -> None:
    t0 = 1_700_000_000.0
    with Store(url) as store:
        hub = _hub(store, t0, retention=timedelta(hours=1), expire_seconds=0.0)
        hub.register("m", _suite_text())
        with store._engine.begin() as conn:  # folded two hours ago, and one just now
            for age in (7200, 7100):
                conn.execute(sa.insert(tables.events).values(
                    model="m", kind="events", rows=10, payload=to_ipc(_batch(10, t0, age)),
                    received_at=datetime.fromtimestamp(t0 - age, UTC)))
        hub.append("m", _batch(10, t0, 1), "events")
        hub.step()
        assert hub.counters["expired_events:m"] == 2
        assert [e.rows for e in store.events_after("m", 0)] == [10]
        assert _windowed(store) == 30
