"""Labels of a streamed check spilled to SQLite past the memory budget: the join and the
result are those of the labels held in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from tests.helpers import ACS
from watchkeeper.baseline.task import Task, TaskType
from watchkeeper.run import label_spill, stream
from watchkeeper.run.label_join import join_by_id, join_labels, last_labels
from watchkeeper.run.label_spill import SpilledLabels, read_labels


@pytest.mark.parametrize("ids, labels, target", [
    # integer ids, a duplicate (the last wins), a label whose id matches no row
    ([1, 2, 3, 2, 9], [0, 1, 1, 0, 1], [None, None, 1, None]),
    # float ids with a gap; integer labels with a null
    ([1.0, None, 3.0, 4.0], [1, 0, None, 1], [0, 0, 0, 0]),
    # text ids: "1" is not the number 1
    (["a", "b", "1", "b"], ["x", "y", "z", "w"], ["q", "q", "q", "q"]),
])
def test_spilled_join_is_the_in_memory_join(ids: list[Any], labels: list[Any],
                                            target: list[Any]) -> None:
    task = Task(TaskType.BINARY, target="y", id="id")
    label_table = pa.table({"id": ids, "y": labels})
    text = isinstance(ids[0], str)
    data = pa.table({"id": ["1", "b", "a", "c"] if text else [1, 2, 3, 4],
                     "y": pa.array(target, pa.string() if text else pa.int64())})
    _, unmatched = join_labels(data, label_table, task)
    by_id = last_labels(label_table, task)
    spilled = SpilledLabels(task, label_table.column("y").type)
    try:
        for part in (label_table.slice(0, 2), label_table.slice(2)):
            spilled.add(part)
        for part in (data.slice(0, 3), data.slice(3)):  # batch by batch, as a check joins
            assert spilled.join(part).equals(join_by_id(part, by_id, task)[0])
        assert spilled.unmatched() == unmatched
    finally:
        spilled.close()
    assert not Path(spilled.path).exists()


def test_labels_spill_only_past_their_share_of_the_budget() -> None:
    task = Task(TaskType.BINARY, target="y", id="id")
    table = pa.table({"id": np.arange(1000), "y": np.arange(1000) % 2})
    held = read_labels(table, task, 10**9, [table.slice(0, 500), table.slice(500)])
    assert not isinstance(held, SpilledLabels) and len(held) == 1000
    spilled = read_labels(table, task, 1000, [table.slice(0, 500), table.slice(500)])
    assert isinstance(spilled, SpilledLabels)
    spilled.close()
    with pytest.raises(wk.DataError, match="need columns"):
        read_labels(table, task, 1000, [table.drop_columns(["y"])])


@pytest.mark.slow
def test_acs_check_with_spilled_labels_gives_the_in_memory_json(
        acs_suite: wk.Suite, acs_analysis_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ACS labels in five files, spilled at once (share of the budget 0): the JSON of the
    in-memory check, windows of 20,000 rows crossing batches of 30,000."""
    monkeypatch.setattr(stream, "BATCH_ROWS", 30_000)
    monkeypatch.setattr(label_spill, "LABELS_SHARE", 0.0)
    labels = pq.read_table(ACS / "employment_MA_analysis_target.pq")
    (tmp_path / "labels").mkdir()
    step = labels.num_rows // 5 + 1
    for i in range(5):
        pq.write_table(labels.slice(i * step, step), tmp_path / "labels" / f"{i}.parquet")
    memory = acs_suite.check(pq.read_table(acs_analysis_path), labels=labels,
                             window_rows=20_000, progress=False)
    streamed = acs_suite.check_stream(acs_analysis_path, labels=tmp_path / "labels",
                                      window_rows=20_000, progress=False, jobs=2,
                                      memory="2GB")
    assert memory.unmatched_labels == streamed.unmatched_labels
    assert json.dumps(streamed.to_dict(), sort_keys=True) == json.dumps(memory.to_dict(),
                                                                        sort_keys=True)
