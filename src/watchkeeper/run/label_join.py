"""Labels that arrive after the predictions: joined by id to the window of the prediction.

Two ways in, with the same result: labels given with the data are joined before profiling
(:func:`join_labels`); labels that come later update the windows already profiled
(:class:`LabelJoin`), moving each labeled row from the "unlabeled" slot of its window's
tallies to its label, so realised metrics of a window equal the batch computation
whatever the order and grouping of label arrivals. The prediction records are kept in
memory by :class:`LabelJoin` (a batch check, a monitor without a store) or in the store by
:class:`StoredLabelJoin` (the server); both join with :func:`move_labels`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.task import RowCodes, Task, TaskType
from watchkeeper.errors import DataError
from watchkeeper.io.names import did_you_mean
from watchkeeper.io.tables import to_table
from watchkeeper.io.values import label_codes, numbers_with_nan
from watchkeeper.profiles.core import Profile, add_tallies
from watchkeeper.profiles.segments import segment_task
from watchkeeper.profiles.task import fairness_key, tally

if TYPE_CHECKING:
    import pandas as pd

#: Prediction records packed for the store, and ids looked up in it, at a time.
PACK_ROWS = 10_000
LOOKUP_IDS = 20_000


def _label_table(labels: Any, task: Task) -> pa.Table:
    if task.id is None or task.target is None:
        raise DataError("labels: joining labels needs id and target columns in the suite's "
                        "task; re-run init() with id= and target=")
    table = to_table(labels, "labels")
    missing = [c for c in (task.id, task.target) if c not in table.column_names]
    if missing:
        raise DataError(f"labels: need columns {task.id!r} and {task.target!r}; "
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
    by_id = last_labels(labels, task)
    table, matched = join_by_id(table, by_id, task)
    return table, int((~matched).sum())


def join_by_id(table: pa.Table, by_id: pd.Series, task: Task) -> tuple[pa.Table, np.ndarray]:
    """:func:`join_labels` with the labels already read (:func:`last_labels`), as a streamed
    check joins them batch by batch; returns the joined table and which labels matched a
    row of it."""
    import pandas as pd

    if task.id not in table.column_names:
        raise DataError(f"the data has no id column {task.id!r} to join labels on")
    ids = pd.Index(table.column(task.id).to_pandas())
    values = by_id.reindex(ids)
    if task.target in table.column_names:
        existing = table.column(task.target).to_pandas()
        values = values.where(values.notna(), existing.to_numpy())
    column = pa.array(values.to_numpy(dtype=object), from_pandas=True)
    matched = np.asarray(by_id.index.isin(ids), dtype=bool)
    if task.target in table.column_names:
        table = table.set_column(table.column_names.index(task.target), task.target, column)
    else:
        table = table.append_column(task.target, column)
    return table, matched


@dataclass
class LabelJoin:
    """Prediction records of checked windows (ids and row codes) for joining late labels."""

    task: Task
    ids: list[np.ndarray] = field(default_factory=list)
    codes: list[RowCodes] = field(default_factory=list)
    _index: pd.Series | None = None
    #: Segmentations whose codes the records carry (``segment_labels``): a late label also
    #: moves its row in the sub-profile of its segment values.
    segments: dict[str, list[str]] = field(default_factory=dict)

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
        profiles already count, so that a later, corrected label for the same id replaces
        this one instead of counting the row a second time."""
        by_id = _last_label_per_id(_label_table(labels, self.task), self.task)
        changed, matched = self.relabel(by_id.index, label_values(by_id, self.task), profiles)
        return changed, int((~matched).sum())

    def relabel(self, ids: pd.Index, new: np.ndarray, profiles: list[Profile] | None
                ) -> tuple[set[int], np.ndarray]:
        """Give the records of ``ids`` the label codes ``new`` (see :func:`move_labels`);
        returns the windows changed and which ids had a record."""
        window, row = self._locate(ids)
        matched = window >= 0
        changed: set[int] = set()
        for w in np.unique(window[matched]):
            mine = matched & (window == w)
            codes = self.codes[w]
            move_labels(codes, row[mine], new[mine], self.task,
                        None if profiles is None else profiles[w], self.segments)
            changed.add(int(w))
        return changed, matched


def label_values(by_id: pd.Series, task: Task) -> np.ndarray:
    """Labels (one per id, as :func:`last_labels` gives) as the codes prediction records
    keep: class index (unlabeled for a missing label), or the value."""
    values = pa.array(by_id.to_numpy(dtype=object), from_pandas=True)
    if task.classification:
        new = label_codes(values, task.classes)
        new[np.asarray(values.is_null().to_numpy(zero_copy_only=False), bool)] = (
            len(task.classes) + 1)
        return new
    return numbers_with_nan(values)


def move_labels(codes: RowCodes, rows: np.ndarray, new: np.ndarray, task: Task,
                profile: Profile | None,
                segments: dict[str, list[str]] | None = None) -> None:
    """The one label join: rows ``rows`` of one window's prediction records ``codes`` get
    the label codes ``new``; the window's tallies (``profile``, unless None: labels it
    counts already) move each row from its previous label to the new one, so a corrected
    label replaces the first. With ``segments`` (records that carry segment codes), the
    sub-profile of each row's segment values moves it too."""
    if profile is not None:
        before = codes.take(rows)
        after = codes.take(rows)
        after.label = new
        delta = add_tallies(tally(after, task), tally(before, task), sign=-1)
        profile.joint = add_tallies(profile.joint, delta)
        inner = segment_task(task) if segments else task
        for key, labels in (segments or {}).items():
            if key not in before.groups:
                continue
            for code in np.unique(before.groups[key]):
                if code < 0:
                    continue  # a record stored by an earlier version: no segment code
                sub = profile.segments.get(labels[int(code)])
                if sub is None:
                    continue
                at = np.flatnonzero(before.groups[key] == code)
                sub.joint = add_tallies(sub.joint, add_tallies(
                    tally(after.take(at), inner), tally(before.take(at), inner), sign=-1))
    codes.label[rows] = new


def last_labels(labels: Any, task: Task) -> pd.Series:
    """The last label of every id of a label batch (ids without a value left out), checked
    for the task's id and target columns."""
    return _last_label_per_id(_label_table(labels, task), task)


def id_keys(ids: Any) -> np.ndarray:
    """Ids as the text the store keys prediction records by: an integer (also a float
    that is one, as a column with gaps gives) as its digits, anything else as ``str``;
    None for a missing id.

    >>> id_keys(np.array([7, 8])).tolist(), id_keys(np.array([7.0, np.nan, 7.5])).tolist()
    (['7', '8'], ['7', None, '7.5'])
    """
    values = np.asarray(ids)
    if values.dtype.kind in "iu":
        return values.astype(str).astype(object)
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            out[i] = None
        elif isinstance(v, float) and v.is_integer():
            out[i] = str(int(v))
        else:
            out[i] = str(v)
    return out


def codes_layout(task: Task) -> tuple[list[str], int, bool]:
    """What a packed prediction record holds after score bin, score and prediction: the
    group codes (by name), the expected-error columns, whether P(positive)."""
    groups = (sorted(fairness_key(g) for g in task.groupings())
              if task.type == TaskType.BINARY else [])
    return (groups, task.loss_model.width if task.loss_model is not None else 0,
            task.label_model is not None)


def pack_codes(codes: RowCodes, task: Task, segments: Iterable[str] = ()) -> list[bytes]:
    """Each row's codes but its label as little-endian float64s (stored per record), then
    the codes of the segmentations ``segments`` (keys of ``RowCodes.groups``)."""
    groups, errors, positive = codes_layout(task)
    columns = [codes.score_bin, codes.score, codes.pred, *(codes.groups[g] for g in groups)]
    if errors:
        assert codes.expected_error is not None
        columns += [codes.expected_error[:, i] for i in range(errors)]
    if positive:
        assert codes.expected_positive is not None
        columns.append(codes.expected_positive)
    classes = _class_columns(task)
    if classes:
        assert codes.class_bin is not None and codes.class_p is not None
        columns += [*codes.class_bin.T, *codes.class_p.T]
    columns += [codes.groups[key] for key in sorted(segments)]
    packed = np.column_stack([np.asarray(c, dtype="<f8") for c in columns]).tobytes()
    width = 8 * len(columns)  # one buffer cut into rows: far cheaper than a row at a time
    return [packed[at:at + width] for at in range(0, len(packed), width)]


def unpack_codes(packed: list[bytes], label: np.ndarray, task: Task,
                 segments: Iterable[str] = ()) -> RowCodes:
    """The prediction records of :func:`pack_codes` with their labels. A record stored
    without segment codes (by a version before they were kept) gets segment code -1: its
    label moves the window, not its segments."""
    groups, errors, positive = codes_layout(task)
    classes = _class_columns(task)
    keys = sorted(segments)
    width = 3 + len(groups) + errors + int(positive) + 2 * classes
    full = width + len(keys)
    if keys and any(len(p) != 8 * full for p in packed):
        packed = [p if len(p) == 8 * full else p + np.full(len(keys), -1.0, "<f8").tobytes()
                  for p in packed]
    flat = np.frombuffer(b"".join(packed), dtype="<f8").reshape(len(packed), full)
    segment_groups = {k: flat[:, width + i].astype(np.int64) for i, k in enumerate(keys)}
    kind = np.int64 if task.classification else np.float64
    at = 3 + len(groups)
    tail = at + errors + int(positive)
    return RowCodes(flat[:, 0].astype(np.int64), flat[:, 1].copy(), flat[:, 2].astype(kind),
                    label.astype(kind), {**{g: flat[:, 3 + i].astype(np.int64)
                                            for i, g in enumerate(groups)}, **segment_groups},
                    flat[:, at:at + errors].copy() if errors else None,
                    flat[:, at + errors].copy() if positive else None,
                    flat[:, tail:tail + classes].astype(np.int64) if classes else None,
                    flat[:, tail + classes:tail + 2 * classes].copy() if classes else None)


def _class_columns(task: Task) -> int:
    """Classes whose score bin and calibrated probability a multiclass record keeps."""
    return len(task.classes) if task.class_calibration is not None else 0


@dataclass
class StoredLabelJoin:
    """Prediction records for late labels kept in the store (table label_records), so that
    a server's memory stays flat however many rows the retention keeps, and a restart has
    nothing to rebuild. The records of the fold step under way wait in ``pending`` and the
    labels joined to stored records in ``joined``, until :meth:`writes` hands them to the
    transaction that saves the step's windows and watermark (so each counts once)."""

    task: Task
    store: Any  # a watchkeeper.store.Store (or the hub's fenced view of one)
    model: str
    version: int
    #: Segmentations whose codes the records carry (``segment_labels``): a late label also
    #: moves its row in the sub-profile of its segment values, as :class:`LabelJoin` does.
    segments: dict[str, list[str]] = field(default_factory=dict)
    pending: LabelJoin = field(init=False)
    starts: list[float] = field(default_factory=list)  # window start of each pending entry
    joined: dict[str, float] = field(default_factory=dict)  # id → label code, not written

    def __post_init__(self) -> None:
        self.pending = LabelJoin(self.task, segments=self.segments)

    def add_window(self, start: float, ids: np.ndarray, codes: RowCodes) -> None:
        self.pending.add_window(ids, codes)
        self.starts.append(start)

    def apply(self, labels: Any, profile_at: Any) -> tuple[set[float], int]:
        """Join a label batch and move the labeled rows in the tallies of
        ``profile_at(window start)`` (None: that window is gone, the label is unmatched);
        returns the starts of the windows changed and how many labels matched no
        prediction. LOOKUP_IDS labels at a time (one store lookup each), so that the
        working set of a large batch stays small: the process keeps the heap it grows
        to (#19: +138 MiB after a 100,000-label batch against 10M records)."""
        by_id = last_labels(labels, self.task)
        new = label_values(by_id, self.task)
        profiles = [profile_at(s) for s in self.starts]
        changed: set[float] = set()
        unmatched = 0
        for at in range(0, len(by_id), LOOKUP_IDS):
            ids, values = by_id.index[at:at + LOOKUP_IDS], new[at:at + LOOKUP_IDS]
            entries, matched = self.pending.relabel(ids, values, profiles)
            changed.update(self.starts[e] for e in entries)
            keys = id_keys(ids[~matched].to_numpy()).tolist()
            where = {k: i for i, k in enumerate(keys) if k is not None}
            found = self.store.label_records(self.model, self.version, list(where))
            unmatched += int((~matched).sum()) - self._join_found(
                found, where, values[~matched], profile_at, changed)
            del found, where, keys
        return changed, unmatched

    def _join_found(self, found: list[tuple[str, float, bytes, float | None]],
                    where: dict[str, int], new: np.ndarray, profile_at: Any,
                    changed: set[float]) -> int:
        """Join the labels ``new[where[id]]`` to stored records; returns how many joined."""
        by_start: dict[float, list[tuple[str, bytes, float | None]]] = {}
        for key, start, packed, label in found:
            by_start.setdefault(start, []).append((key, packed, label))
        joined = 0
        for start, records in by_start.items():
            profile = profile_at(start)
            if profile is None:
                continue
            ids = [r[0] for r in records]
            stored = np.array([self.joined.get(i, np.nan if r[2] is None else r[2])
                               for i, r in zip(ids, records, strict=True)], dtype=float)
            codes = unpack_codes([r[1] for r in records], stored, self.task, self.segments)
            move_labels(codes, np.arange(len(ids)), new[[where[i] for i in ids]], self.task,
                        profile, self.segments)
            self.joined.update(zip(ids, codes.label.astype(float).tolist(), strict=True))
            changed.add(start)
            joined += len(ids)
        return joined

    def writes(self) -> tuple[list[Iterable[dict[str, Any]]], list[tuple[str, float | None]]]:
        """The new records (parts of dicts id, start, version, codes, label, made as they
        are read) and the labels joined to stored ones since the last call, for the store;
        forgets them here."""
        parts: list[Iterable[dict[str, Any]]] = [
            self._rows(start, ids, codes) for start, ids, codes
                 in zip(self.starts, self.pending.ids, self.pending.codes, strict=True)]
        joined, self.joined = self.joined, {}
        labels = sorted((k, _stored(v)) for k, v in joined.items())  # as the store takes them
        del joined
        self.pending, self.starts = LabelJoin(self.task, segments=self.segments), []
        return parts, labels

    def _rows(self, start: float, ids: np.ndarray, codes: RowCodes
              ) -> Iterator[dict[str, Any]]:
        version = self.version
        for at in range(0, len(ids), PACK_ROWS):  # packed a slice at a time: memory
            part = np.arange(at, min(at + PACK_ROWS, len(ids)))
            sliced = codes.take(part)
            for key, packed, label in zip(id_keys(ids[part]).tolist(),
                                          pack_codes(sliced, self.task, self.segments),
                                          _stored_all(sliced.label), strict=True):
                if key is not None:
                    yield {"id": key, "start": start, "version": version, "codes": packed,
                           "label": label}


def _stored_all(labels: np.ndarray) -> list[float | None]:
    """Label codes as the store keeps them (see :func:`_stored`), all at once."""
    values = labels.astype(float)
    if not np.isnan(values).any():
        return values.tolist()
    out = values.astype(object)
    out[np.isnan(values)] = None
    return out.tolist()


def _stored(label: float) -> float | None:
    """A label code as the store keeps it (a missing regression label is NULL: SQLite has
    no NaN)."""
    return None if np.isnan(label) else label
