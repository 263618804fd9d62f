"""Labels that arrive after the predictions: joined by id to the window of the prediction.

Two ways in, with the same result: labels given with the data are joined before profiling
(:func:`join_labels`); labels that come later update the windows already profiled
(:class:`LabelJoin`), moving each labeled row from the "unlabeled" slot of its window's
tallies to its label, so realised metrics of a window equal the batch computation
whatever the order and grouping of label arrivals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from watchkeeper.data import did_you_mean, to_table
from watchkeeper.errors import DataError
from watchkeeper.profile import Profile, add_tallies
from watchkeeper.task import RowCodes, Task, label_codes, tally
from watchkeeper.values import numbers_with_nan

if TYPE_CHECKING:
    import pandas as pd


def _label_table(labels: Any, task: Task) -> pa.Table:
    if task.id is None or task.target is None:
        raise DataError("joining labels needs id and target columns in the suite's task "
                        "(init with --id and --target)")
    table = to_table(labels)
    missing = [c for c in (task.id, task.target) if c not in table.column_names]
    if missing:
        raise DataError(f"labels need columns {task.id!r} and {task.target!r}; "
                        f"missing {', '.join(map(repr, missing))}"
                        f"{did_you_mean(missing[0], table.column_names)}")
    return table


def _last_label_per_id(table: pa.Table, task: Task) -> pd.Series:
    import pandas as pd

    frame = pd.DataFrame({"id": table.column(task.id).to_pandas(),
                          "label": table.column(task.target).to_pandas()})
    frame = frame[frame["id"].notna()]
    return frame.drop_duplicates("id", keep="last").set_index("id")["label"]


def join_labels(table: pa.Table, labels: Any, task: Task) -> tuple[pa.Table, int]:
    """Add (or overwrite) the target column of ``table`` from ``labels`` by id.

    Returns the joined table and the number of labels whose id matched no row.
    """
    import pandas as pd

    label_table = _label_table(labels, task)
    if task.id not in table.column_names:
        raise DataError(f"the data has no id column {task.id!r} to join labels on")
    by_id = _last_label_per_id(label_table, task)
    ids = pd.Index(table.column(task.id).to_pandas())
    values = by_id.reindex(ids)
    if task.target in table.column_names:
        existing = table.column(task.target).to_pandas()
        values = values.where(values.notna(), existing.to_numpy())
    column = pa.array(values.to_numpy(dtype=object), from_pandas=True)
    unmatched = int((~by_id.index.isin(ids)).sum())
    if task.target in table.column_names:
        table = table.set_column(table.column_names.index(task.target), task.target, column)
    else:
        table = table.append_column(task.target, column)
    return table, unmatched


@dataclass
class LabelJoin:
    """Prediction records of checked windows (ids and row codes) for joining late labels."""

    task: Task
    ids: list[np.ndarray] = field(default_factory=list)
    codes: list[RowCodes] = field(default_factory=list)
    _index: pd.Series | None = None

    def add_window(self, ids: np.ndarray, codes: RowCodes) -> None:
        self.ids.append(ids)
        self.codes.append(codes)
        self._index = None

    def drop_oldest(self, entries: int) -> int:
        """Forget the first ``entries`` windows' records (retention); returns rows dropped."""
        rows = sum(len(i) for i in self.ids[:entries])
        del self.ids[:entries], self.codes[:entries]
        self._index = None
        return rows

    @property
    def rows(self) -> int:
        return sum(len(i) for i in self.ids)

    def _locate(self, ids: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        import pandas as pd

        if self._index is None:
            flat_ids = np.concatenate(self.ids) if self.ids else np.zeros(0)
            index = pd.Series(np.arange(len(flat_ids)), index=flat_ids)
            # an id logged twice: its label goes to the latest prediction
            self._index = index[~index.index.duplicated(keep="last")]
        flat = self._index.reindex(ids).to_numpy(dtype=float, na_value=-1).astype(np.int64)
        sizes = np.cumsum([0, *[len(i) for i in self.ids]])
        window = np.searchsorted(sizes, flat, side="right") - 1
        return np.where(flat >= 0, window, -1), np.where(flat >= 0, flat - sizes[window], -1)

    def apply(self, labels: Any, profiles: list[Profile] | None) -> tuple[set[int], int]:
        """Move newly labeled rows in the profiles' tallies; returns the windows changed and
        the number of labels that matched no prediction.

        ``profiles=None`` only records the labels on the prediction records: for labels the
        profiles already count (replayed after a restart), so that a later, corrected label
        for the same id replaces this one instead of counting the row a second time."""
        by_id = _last_label_per_id(_label_table(labels, self.task), self.task)
        window, row = self._locate(by_id.index)
        matched = window >= 0
        values = pa.array(by_id.to_numpy(dtype=object)[matched], from_pandas=True)
        if self.task.classification:
            new = label_codes(values, self.task.classes)
            new[np.asarray(values.is_null().to_numpy(zero_copy_only=False), bool)] = (
                len(self.task.classes) + 1)
        else:
            new = numbers_with_nan(values)
        changed: set[int] = set()
        for w in np.unique(window[matched]):
            rows = row[matched][window[matched] == w]
            labels_w = new[window[matched] == w]
            codes = self.codes[w]
            if profiles is not None:
                before = codes.take(rows)
                after = codes.take(rows)
                after.label = labels_w
                delta = add_tallies(tally(after, self.task), tally(before, self.task), sign=-1)
                profiles[w].joint = add_tallies(profiles[w].joint, delta)
            codes.label[rows] = labels_w
            changed.add(int(w))
        return changed, int((~matched).sum())
