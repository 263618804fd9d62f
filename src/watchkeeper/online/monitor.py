"""Online monitoring of one model: tumbling windows profiled as events arrive, evaluated
when they close.

Events are assigned to the window of their event time (``_ts``, else the time they
arrive), so data that comes out of order lands where it belongs. A window closes
``grace`` after its end; events that come later still are folded into it and the window
is evaluated again (they are counted as late, never dropped). Prediction records are kept
for ``retention`` so that labels arriving later update the window of their prediction: in
the store when the monitor has one (written with its windows; the server expires them), else
in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from watchkeeper.io.jsonable import RESULT_DIGITS, plain
from watchkeeper.io.tables import to_table
from watchkeeper.io.times import from_epoch
from watchkeeper.io.values import epoch_seconds
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.segments import record_codes, segment_labels
from watchkeeper.run.check import CheckResult, WindowResult
from watchkeeper.run.label_join import LabelJoin, StoredLabelJoin, unpack_codes
from watchkeeper.wire import TS

if TYPE_CHECKING:
    from watchkeeper.baseline.task import RowCodes
    from watchkeeper.store import LabelRecords, Store
    from watchkeeper.suite.core import Suite

#: Event times that can name a window: from the epoch to at most this far past the time they
#: are folded at (clock skew); a time beyond would open a window that only closes then.
MAX_AHEAD = 86_400.0


def usable_times(ts: np.ndarray, now: float) -> tuple[np.ndarray, int]:
    """Which event times can name a window, and how many cannot although they are there
    (±inf, 1e300, milliseconds sent as seconds, over a day ahead of ``now``: a data-quality
    signal; a missing time is not one).

    >>> usable_times(np.array([60.0, np.nan, np.inf, 1.7e12, 1e6]), now=100.0)
    (array([ True, False, False, False, False]), 3)
    """
    usable = (ts >= 0.0) & (ts <= now + MAX_AHEAD)  # False for NaN and ±inf
    return usable, int((~usable & ~np.isnan(ts)).sum())


@dataclass
class LiveWindow:
    """One tumbling window of a model: its profile, evaluation and state."""

    key: int
    start: datetime
    end: datetime
    profile: Profile
    state: str = "open"  # open | closed
    late_rows: int = 0
    result: WindowResult | None = None

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass
class OnlineMonitor:
    """Windows of one model's event stream, evaluated with its suite.

    >>> import pyarrow as pa, watchkeeper as wk
    >>> suite = wk.init(pa.table({"x": [float(i % 10) for i in range(500)]}))
    >>> live = OnlineMonitor(suite, window=timedelta(minutes=1), grace=timedelta(0))
    >>> live.ingest(pa.table({"x": [1.0, 2.0], "_ts": [60.0, 61.0]}))
    2
    >>> [w.label for w in live.tick(now=125.0)]
    ['1970-01-01T00:01:00+00:00/1970-01-01T00:02:00+00:00']
    """

    suite: Suite
    model: str = "default"
    window: timedelta = timedelta(minutes=5)
    grace: timedelta = timedelta(minutes=1)
    store: Store | None = None
    suite_version: int | None = None
    retention: timedelta = timedelta(days=7)
    history: int = 48  # closed windows kept in memory for sequence monitors
    clock: Any = time.time
    windows: dict[int, LiveWindow] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: {
        "rows": 0, "batches": 0, "late_rows": 0, "labels": 0, "unmatched_labels": 0,
        "label_records_expired": 0, "bad_timestamps": 0})
    _dirty: set[int] = field(default_factory=set)
    _join: LabelJoin | None = None  # prediction records in memory (without a store)
    _join_keys: list[int] = field(default_factory=list)
    _stored: StoredLabelJoin | None = None  # … or in the store

    def __post_init__(self) -> None:
        if self.window.total_seconds() <= 0:
            raise ValueError(f"window: must be a positive duration, got {self.window}")
        task = self.suite.schema.task
        if task is not None and task.id is not None:
            if self.store is None:
                self._join = LabelJoin(task, segments=segment_labels(self.suite.schema))
            else:
                self._stored = StoredLabelJoin(task, self.store, self.model,
                                               self.suite_version or 0,
                                               segments=segment_labels(self.suite.schema))

    @property
    def joins_labels(self) -> bool:
        """Whether late labels are joined (the suite's task has an id column)."""
        return self._join is not None or self._stored is not None

    # -- ingest ----------------------------------------------------------------------------
    def keys(self, table: pa.Table) -> np.ndarray:
        """Window key (index of the window since the epoch) of every row."""
        return self._keys(self._times(table)[0])

    def _keys(self, ts: np.ndarray) -> np.ndarray:
        return np.floor(ts / self.window.total_seconds()).astype(np.int64)

    def _times(self, table: pa.Table) -> tuple[np.ndarray, int]:
        """Event time of every row, and how many rows had one that can name no window
        (see :func:`usable_times`). Those, like rows without a time, get the time they are
        folded at; unlike them they are a data-quality signal."""
        now = float(self.clock())
        if TS not in table.column_names:
            return np.full(table.num_rows, now), 0
        ts = epoch_seconds(table.column(TS))
        usable, unusable = usable_times(ts, now)
        return np.where(usable, ts, now), unusable

    def _window(self, key: int) -> LiveWindow:
        w = self.windows.get(key)
        if w is None:
            step = self.window.total_seconds()
            start = from_epoch(key * step)
            w = LiveWindow(key, start, start + self.window, Profile(start=start, end=start +
                                                                   self.window))
            self.windows[key] = w
        return w

    def ingest(self, data: Any) -> int:
        """Fold a batch of events into the windows of their event times; returns its rows."""
        table = to_table(data)
        if table.num_rows == 0:
            return 0
        ts, unusable = self._times(table)
        self.counters["bad_timestamps"] += unusable
        keys = self._keys(ts)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
        for part in np.split(order, bounds):
            key = int(keys[part[0]])
            chunk = table.take(pa.array(part)) if len(part) != table.num_rows else table
            w = self._window(key)
            p = self.suite.profile(chunk)
            p.start, p.end = w.start, w.end
            w.profile = w.profile.merge(p)
            self._record(key, chunk)
            if w.state == "closed":
                w.late_rows += chunk.num_rows
                self.counters["late_rows"] += chunk.num_rows
                self._evaluate(w)
            self._dirty.add(key)
        self.counters["rows"] += table.num_rows
        self.counters["batches"] += 1
        return table.num_rows

    def ingest_profile(self, key: int, p: Profile,
                       records: tuple[np.ndarray, list[bytes], np.ndarray] | None = None
                       ) -> int:
        """Fold the profile of rows of window ``key`` made elsewhere (on Spark, with this
        suite) as :meth:`ingest` folds rows; returns its rows. ``records``: the prediction
        records of its rows that have an id (ids, codes packed by
        :func:`~watchkeeper.run.label_join.pack_codes`, label codes), kept for late labels
        as those of the rows :meth:`ingest` folds (without them, late labels cannot be
        joined to these rows)."""
        if not p.rows:
            return 0
        w = self._window(key)
        p.start, p.end = w.start, w.end
        w.profile = w.profile.merge(p)
        task = self.suite.schema.task
        if records is not None and self.joins_labels and task is not None:
            ids, packed, labels = records
            self._keep(key, ids, unpack_codes(packed, labels, task,
                                              segment_labels(self.suite.schema)))
        if w.state == "closed":
            w.late_rows += p.rows
            self.counters["late_rows"] += p.rows
            self._evaluate(w)
        self._dirty.add(key)
        self.counters["rows"] += p.rows
        self.counters["batches"] += 1
        return p.rows

    def _record(self, key: int, chunk: pa.Table) -> None:
        task = self.suite.schema.task
        if not self.joins_labels or task is None or task.id not in chunk.column_names:
            return
        self._keep(key, chunk.column(task.id).to_numpy(zero_copy_only=False),
                   record_codes(chunk, self.suite.schema))

    def _keep(self, key: int, ids: np.ndarray, codes: RowCodes) -> None:
        """Keep the prediction records of window ``key``'s rows with an id for late labels:
        in the store (a server's), else in memory."""
        if self._stored is not None:
            self._stored.add_window(self.windows[key].start.timestamp(), ids, codes)
            return
        assert self._join is not None
        self._join.add_window(ids, codes)
        self._join_keys.append(key)

    def ingest_labels(self, data: Any) -> int:
        """Join labels by id to the windows of their predictions; returns how many matched
        no kept prediction (unknown id, or older than the retention)."""
        if self._stored is not None:
            starts, unmatched = self._stored.apply(data, self._profile_at)
            keys = [self._key_at(start) for start in starts]
        elif self._join is not None:
            profiles = [self.windows[k].profile for k in self._join_keys]
            entries, unmatched = self._join.apply(data, profiles)
            keys = [self._join_keys[e] for e in entries]
        else:
            return to_table(data).num_rows
        for key in sorted(set(keys)):
            self._dirty.add(key)
            if self.windows[key].state == "closed":
                self._evaluate(self.windows[key])
        self._reband(min(keys, default=None), set(keys))
        self.counters["labels"] += to_table(data).num_rows
        self.counters["unmatched_labels"] += unmatched
        return unmatched

    def _key_at(self, start: float) -> int:
        return int(np.floor(start / self.window.total_seconds()))

    def _profile_at(self, start: float) -> Profile | None:
        """The profile of the window starting at ``start`` (seconds), None if it is not in
        memory (past the retention, or the window length changed since)."""
        w = self.windows.get(self._key_at(start))
        return None if w is None or w.start.timestamp() != start else w.profile

    # -- evaluation ------------------------------------------------------------------------
    def _evaluate(self, w: LiveWindow) -> None:
        closed = sorted((x for x in self.windows.values() if x.state == "closed"),
                        key=lambda x: x.key)
        result = CheckResult(suite=self.model, evaluator=self.suite)
        # earlier windows with their metrics: their labelled errors widen this window's
        # estimated band, as in a batch check (monitors.estimate.history_band)
        result.windows = [WindowResult(x.label, x.profile.rows, [], x.profile, x.start, x.end,
                                       metrics=x.result.metrics if x.result else {})
                          for x in closed[-self.history:] if x.key < w.key]
        if not result.windows or result.windows[-1].profile is not w.profile:
            result.windows.append(WindowResult(w.label, w.profile.rows, [], w.profile,
                                               w.start, w.end))
        result.refresh(len(result.windows) - 1)
        self.suite.evaluate_sequence(result)
        w.result = result.windows[-1]
        if w.late_rows:
            w.result.metrics["late_rows"] = w.late_rows

    def _reband(self, after: int | None, changed: set[int]) -> None:
        """Evaluate again the closed windows after ``after`` whose estimated band earlier
        windows' new labels may widen (their own labels did not change)."""
        if after is None:
            return
        for key in sorted(k for k, x in self.windows.items() if k > after and k not in changed
                          and x.state == "closed" and x.result is not None
                          and "estimated_band" in x.result.metrics):
            self._evaluate(self.windows[key])
            self._dirty.add(key)

    def tick(self, now: float | None = None) -> list[WindowResult]:
        """Close the windows whose end plus grace has passed, evaluate and persist them;
        expire prediction records past the retention. Returns the newly closed windows."""
        now = float(self.clock()) if now is None else now
        due = sorted(k for k, w in self.windows.items()
                     if w.state == "open" and w.end.timestamp() + self.grace.total_seconds()
                     <= now)
        for key in due:
            w = self.windows[key]
            w.state = "closed"
            self._evaluate(w)
            self._dirty.add(key)
        self._expire(now)
        if due:
            self.flush()
        return [result for k in due if (result := self.windows[k].result) is not None]

    def _expire(self, now: float) -> None:
        horizon = np.floor((now - self.retention.total_seconds()) / self.window.total_seconds())
        old = 0
        while old < len(self._join_keys) and self._join_keys[old] < horizon:
            old += 1
        if old and self._join is not None:
            self.counters["label_records_expired"] += self._join.drop_oldest(old)
            del self._join_keys[:old]
        keep = sorted(k for k, w in self.windows.items() if w.state == "closed")[:-self.history]
        for k in keep:
            if k < horizon and k not in self._dirty:
                del self.windows[k]

    # -- persistence -----------------------------------------------------------------------
    def pending(self) -> tuple[list[Any], list[tuple[datetime, list[dict[str, Any]]]]]:
        """Window records and findings changed since the last save; marks them saved."""
        from watchkeeper.store import WindowRecord

        records, findings = [], []
        for key in sorted(self._dirty):
            w = self.windows.get(key)
            if w is None:
                continue
            metrics = plain(w.result.metrics, digits=RESULT_DIGITS) if w.result else {}
            records.append(WindowRecord(self.model, w.start, w.end, self.suite_version,
                                        w.profile.rows, w.state, w.profile.to_dict(), metrics))
            if w.result is not None:
                findings.append((w.start, [f.to_dict() for f in w.result.findings]))
        self._dirty.clear()
        return records, findings

    def label_writes(self) -> LabelRecords | None:
        """The changes to the prediction records in the store since the last call (written
        with the windows: see :func:`save`); None when they are kept in memory."""
        from watchkeeper.store import LabelRecords

        if self._stored is None:
            return None
        return LabelRecords(*self._stored.writes())

    def flush(self, watermark: int | None = None) -> None:
        """Persist changed windows to the store with the watermark of the last event folded
        and the changed prediction records (one transaction), then their findings."""
        records, findings = self.pending()
        if self.store is not None:
            save(self.store, self.model, records, findings, watermark, self.label_writes())

    def restore(self, keys: range | None = None) -> int:
        """Load this model's windows from the store (after a restart), those whose key is in
        ``keys`` when given; returns how many."""
        if self.store is None:
            return 0
        step = self.window.total_seconds()
        for record in self.store.load_windows(self.model):
            if keys is not None and int(np.floor(record.start.timestamp() / step)) not in keys:
                continue
            key = int(np.floor(record.start.timestamp() / step))
            profile = Profile.from_dict(record.profile)
            profile.start, profile.end = record.start, record.end
            w = LiveWindow(key, record.start, record.end, profile, record.state)
            self.windows[key] = w
            if w.state == "closed":
                self._evaluate(w)
                self._dirty.add(key)  # findings are saved again on the next flush
        return len(self.windows)


def save(store: Store, model: str, records: list[Any],
         findings: list[tuple[datetime, list[dict[str, Any]]]], watermark: int | None,
         labels: LabelRecords | None = None) -> None:
    """Windows, watermark and prediction records in one transaction, then the windows'
    findings."""
    store.save_windows(model, records, watermark, labels=labels)
    for start, found in findings:
        store.save_findings(model, start, found)
