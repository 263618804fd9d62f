"""Embedded monitoring without the model server paying for it: :class:`SubprocessSink`
profiles in a child process; the windows and incidents are read through the sink.

Defect: EmbeddedSink cost 18 ms of CPU per flush (50–70 ms on a window-closing one) inside
the model server's process, holding its GIL; how to read its results was undocumented.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest
from click.testing import CliRunner

import watchkeeper as wk
from watchkeeper.cli import main
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.sdk import Client, EmbeddedSink, SubprocessSink
from watchkeeper.store import Store

START = 1_700_000_040.0  # two whole past minutes: both windows close at once


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def feed(sink: object, current: object, rows: int = 4_000) -> float:
    """Log ``rows`` events over two past minutes; the CPU this process spent doing so."""
    names = list(current.column_names)  # type: ignore[attr-defined]
    client = Client(sink, feature_names=names, flush_rows=500)  # type: ignore[arg-type]
    data = current.slice(0, rows).to_pylist()  # type: ignore[attr-defined]
    half = rows // 2
    before = cpu_seconds()
    for i, row in enumerate(data):
        client.log(row, None, ts=START + 60 * (i >= half) + (i % half) * 0.01,
                   latency_ms=5.0)
    client.close(timeout=120)
    spent = cpu_seconds() - before
    assert client.stats["flushed_rows"] == rows and client.stats["dropped"] == 0
    return spent


@pytest.mark.slow
def test_subprocess_sink_profiles_in_a_child_and_reads_back(tmp_path: Path) -> None:
    reference, current = synthetic_drift_pair(4_000, seed=5)
    suite = wk.init(reference, progress=False)
    embedded = EmbeddedSink(suite, store_url=f"sqlite:///{tmp_path / 'a.db'}", model="m",
                            window="1m")
    in_process = feed(embedded, current)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    child = SubprocessSink(suite, store_url=url, model="m", window="1m")
    offloaded = feed(child, current)
    with Store(url) as store:
        windows = store.load_windows("m")
        assert [(w.rows, w.state) for w in windows] == [(2_000, "closed"), (2_000, "closed")]
        assert "num_00" in {f["column"] for f in store.findings("m") if f["family"] == "drift"}
    # profiling and evaluating happened in the child: this process only converted rows
    assert offloaded < 0.7 * in_process, (offloaded, in_process)
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
