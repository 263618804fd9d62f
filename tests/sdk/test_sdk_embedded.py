"""Embedded monitoring without the model server paying for it: :class:`SubprocessSink`
profiles in a child process; the windows and incidents are read through the sink.

Defect: EmbeddedSink cost 18 ms of CPU per flush (50–70 ms on a window-closing one) inside
the model server's process, holding its GIL; how to read its results was undocumented.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import watchkeeper as wk
from watchkeeper.cli import main
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.sdk import Client, EmbeddedSink, SubprocessSink
from watchkeeper.store import Store

#: Two whole minutes long past: each window's end plus grace has passed when its first rows
#: arrive, so it closes (its alerts and incidents are judged) at the flush that brings them,
#: on those rows; the rows of later flushes are folded into it as late rows.
START = 1_700_000_040.0


def feed(sink: object, current: object, rows: int = 4_000, every: int = 500) -> None:
    """Log ``rows`` events over two past minutes, flushed every ``every`` rows (the CPU this
    costs the model server is measured by benchmarks/bench_sdk_sinks.py, not here).

    The test flushes, not the client's background thread: that one takes what is buffered
    when it wakes, so where its batches are cut (and so on how many rows each window is
    judged) depends on thread timing, and two sinks fed the same rows would open different
    incidents (e.g. "2 columns drifted together" against "3")."""
    names = list(current.column_names)  # type: ignore[attr-defined]
    client = Client(sink, feature_names=names,  # type: ignore[arg-type]
                    flush_rows=rows + 1, flush_interval=3_600)  # it never wakes by itself
    data = current.slice(0, rows).to_pylist()  # type: ignore[attr-defined]
    half = rows // 2
    for i, row in enumerate(data):
        client.log(row, None, ts=START + 60 * (i >= half) + (i % half) * 0.01,
                   latency_ms=5.0)
        if (i + 1) % every == 0:
            assert client.flush(timeout=120)
    client.close(timeout=120)
    assert client.stats["flushed_rows"] == rows and client.stats["dropped"] == 0


@pytest.fixture
def work_here(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Rows profiled and windows evaluated by a suite in this process (a child process
    started with ``python -c`` does not see the patch)."""
    done = {"profiled": 0, "evaluated": 0}
    profile, assess = wk.Suite.profile, wk.Suite.assess

    def counted_profile(self: wk.Suite, data: object) -> object:
        done["profiled"] += len(data)  # type: ignore[arg-type]
        return profile(self, data)

    def counted_assess(self: wk.Suite, window: object) -> object:
        done["evaluated"] += 1
        return assess(self, window)  # type: ignore[arg-type]

    monkeypatch.setattr(wk.Suite, "profile", counted_profile)
    monkeypatch.setattr(wk.Suite, "assess", counted_assess)
    return done


@pytest.mark.slow
def test_subprocess_sink_profiles_in_a_child_and_reads_back(
        tmp_path: Path, work_here: dict[str, int]) -> None:
    reference, current = synthetic_drift_pair(4_000, seed=5)
    suite = wk.init(reference, progress=False)
    embedded = EmbeddedSink(suite, store_url=f"sqlite:///{tmp_path / 'a.db'}", model="m",
                            window="1m")
    feed(embedded, current)
    assert work_here["profiled"] == 4_000 and work_here["evaluated"] >= 2  # the probe works
    work_here.update(profiled=0, evaluated=0)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    child = SubprocessSink(suite, store_url=url, model="m", window="1m")
    feed(child, current)
    # profiling and evaluating happened in the child: this process only converted rows
    assert work_here == {"profiled": 0, "evaluated": 0}
    with Store(url) as store:
        windows = store.load_windows("m")
        assert [(w.rows, w.state) for w in windows] == [(2_000, "closed"), (2_000, "closed")]
        assert "num_00" in {f["column"] for f in store.findings("m") if f["family"] == "drift"}
    reader = SubprocessSink(None, store_url=url, model="m", window="1m")  # the store's suite
    try:
        assert [w["rows"] for w in reader.windows()] == [2_000, 2_000]
        titles = sorted(i["title"] for i in embedded.incidents(open_only=False))
        assert titles and sorted(i["title"] for i in reader.incidents(open_only=False)) == titles
        assert all("diagnosis" in i["advice"] for i in reader.incidents(open_only=False))
    finally:
        reader.close()
    # and from the command line, with no server: the same incidents, read from the store
    answer = CliRunner().invoke(main, ["incidents", "--store", f"sqlite:///{tmp_path / 'a.db'}",
                                       "--model", "m", "--all", "--format", "json"])
    assert answer.exit_code == 0, answer.output
    listed = json.loads(answer.output)["incidents"]
    assert sorted(i["title"] for i in listed) == titles
    assert all(i["advice"]["diagnosis"] for i in listed)


def test_an_error_in_the_child_is_raised_here(tmp_path: Path) -> None:
    with pytest.raises(wk.errors.WatchkeeperError, match="no active suite"):
        SubprocessSink(None, store_url=f"sqlite:///{tmp_path / 'empty.db'}", model="m")
