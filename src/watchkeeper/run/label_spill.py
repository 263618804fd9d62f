"""Labels of a streamed check that outgrow its memory budget: kept in a temporary SQLite
file, looked up batch by batch.

A labels file (Parquet or CSV, a directory or glob) is read batch by batch. While its
labels would take less than :data:`LABELS_SHARE` of the ``--memory`` budget (Arrow bytes
times :data:`LABELS_OVERHEAD`, the pandas index and objects), they stay in memory and are
joined as before (:func:`~watchkeeper.run.label_join.join_by_id`). Past it, the last label
of every id goes to a SQLite file in the temporary directory (deleted when the check ends),
and each batch of predictions looks up its own ids there; the joined rows, and so the
result, are the in-memory join's (ids match as pandas matches them: numbers with numbers,
whole floats with integers, text with text).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.task import Task
from watchkeeper.errors import DataError
from watchkeeper.io.names import did_you_mean
from watchkeeper.io.values import type_class
from watchkeeper.run.label_join import id_keys, join_by_id, last_labels

if TYPE_CHECKING:
    import pandas as pd

#: Share of the memory budget the labels may take in memory before they are spilled.
LABELS_SHARE = 0.25
#: Memory of labels held in pandas per byte of them in Arrow (index, objects), rounded up.
LABELS_OVERHEAD = 4
#: Ids looked up in one query.
LOOKUP = 900


def _keys(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Ids as lookup keys: ``n7`` for the number 7 (or 7.0), ``s7`` for the text "7"."""
    prefix = "s" if type_class(column.type) == "string" else "n"
    values = column.to_numpy(zero_copy_only=False)
    return np.array([None if k is None else prefix + k for k in id_keys(values)], dtype=object)


class SpilledLabels:
    """The last label of every id, in a temporary SQLite file."""

    def __init__(self, task: Task, kind: pa.DataType) -> None:
        fd, self.path = tempfile.mkstemp(prefix="watchkeeper-labels-", suffix=".sqlite")
        os.close(fd)
        self.task, self.kind, self.has_null = task, kind, False
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE labels (key TEXT PRIMARY KEY, value, matched INTEGER DEFAULT 0);")

    def add(self, table: pa.Table) -> None:
        """Labels in input order: a later label of an id replaces the earlier one."""
        assert self.task.id is not None and self.task.target is not None
        target = table.column(self.task.target)
        if target.type != self.kind:
            target = target.cast(self.kind)
        self.has_null = self.has_null or target.null_count > 0
        keys = _keys(table.column(self.task.id))
        values = target.to_pylist()
        rows = [(k, v) for k, v in zip(keys.tolist(), values, strict=True) if k is not None]
        with self._lock:
            self._db.executemany("INSERT INTO labels (key, value) VALUES (?, ?) ON CONFLICT"
                                 "(key) DO UPDATE SET value = excluded.value", rows)

    def join(self, table: pa.Table) -> pa.Table:
        """``table`` with its labels joined (as :func:`join_by_id`); marks them matched."""
        import pandas as pd

        task = self.task
        assert task.id is not None
        if task.id not in table.column_names:
            raise DataError(f"the data has no id column {task.id!r} to join labels on")
        ids = table.column(task.id)
        keys = _keys(ids)
        originals = ids.to_pandas()
        first: dict[str, Any] = {}
        for k, original in zip(keys.tolist(), originals.tolist(), strict=True):
            if k is not None and k not in first:
                first[k] = original
        found: dict[str, Any] = {}
        wanted = list(first)
        with self._lock:
            for at in range(0, len(wanted), LOOKUP):
                part = wanted[at:at + LOOKUP]
                marks = ",".join("?" * len(part))
                found.update(self._db.execute(
                    f"SELECT key, value FROM labels WHERE key IN ({marks})", part).fetchall())
                self._db.execute(f"UPDATE labels SET matched = 1 WHERE key IN ({marks})", part)
        values = pa.array(list(found.values()), type=self.kind).to_pandas()
        if self.has_null and values.dtype.kind in "iub":
            values = values.astype(float if values.dtype.kind in "iu" else object)
        by_id = pd.Series(values.to_numpy(), index=pd.Index([first[k] for k in found]))
        joined, _ = join_by_id(table, by_id, task)
        return joined

    def unmatched(self) -> int:
        with self._lock:
            return int(self._db.execute(
                "SELECT count(*) FROM labels WHERE matched = 0").fetchone()[0])

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(OSError):
            os.remove(self.path)


def read_labels(labels: Any, task: Task, memory: int | None,
                batches: Iterable[pa.Table] | None) -> pd.Series | SpilledLabels:
    """The labels of a streamed check: in memory (:func:`last_labels`) while they fit in
    :data:`LABELS_SHARE` of ``memory``, else spilled. ``batches`` reads a labels file batch
    by batch (None: labels given as a table are held as they are)."""
    if memory is None or batches is None:
        return last_labels(labels, task)
    if task.id is None or task.target is None:
        raise DataError("labels: joining labels needs id and target columns in the suite's "
                        "task; re-run init() with id= and target=")
    held: list[pa.Table] = []
    size = 0
    spilled: SpilledLabels | None = None
    for table in batches:
        missing = [c for c in (task.id, task.target) if c not in table.column_names]
        if missing:
            raise DataError(f"labels: need columns {task.id!r} and {task.target!r}; "
                            f"missing {', '.join(map(repr, missing))}"
                            f"{did_you_mean(missing[0], table.column_names)}")
        table = table.select([task.id, task.target])
        if spilled is None:
            held.append(table)
            size += table.nbytes * LABELS_OVERHEAD
            if size > memory * LABELS_SHARE:
                spilled = SpilledLabels(task, held[0].column(task.target).type)
                try:
                    for part in held:
                        spilled.add(part)
                except BaseException:
                    spilled.close()
                    raise
                held = []
        else:
            spilled.add(table)
    if spilled is not None:
        return spilled
    if not held:
        raise DataError("labels: no rows")
    return last_labels(pa.concat_tables(held, promote_options="permissive"), task)
