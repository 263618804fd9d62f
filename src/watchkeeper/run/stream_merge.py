"""Merging a streamed check's batches into its windows, batch after batch in input order,
wherever the batches were profiled (threads: :func:`~watchkeeper.run.stream.stream_profiles`,
worker processes: :mod:`~watchkeeper.run.stream_pool`); then the windows, in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from watchkeeper.errors import DataError
from watchkeeper.io.times import from_epoch
from watchkeeper.profiles.core import Profile, profile

if TYPE_CHECKING:
    import pandas as pd

    from watchkeeper.baseline.schema import Schema
    from watchkeeper.run.label_spill import SpilledLabels
    from watchkeeper.run.stream import Windowing, _Parts

#: Time windows a check may make (as the in-memory check).
MAX_TIME_WINDOWS = 100_000


class _Missing:
    """The key of a window of rows without a window value (one object, even once pickled
    in a worker process)."""

    def __reduce__(self) -> str:
        return "_MISSING"


_MISSING = _Missing()


@dataclass
class StreamedWindow:
    """A window of a streamed check: its label, profile and time span."""

    label: str
    profile: Profile


@dataclass
class _Merged:
    """Window profiles built so far, by key."""

    profiles: dict[Any, Profile] = field(default_factory=dict)
    lo: float | None = None
    hi: float | None = None
    rows: int = 0
    empty: pa.Table | None = None  # no rows, the input's columns (time windows with none)

    def add(self, key: Any, p: Profile) -> None:
        if key in self.profiles:
            self.profiles[key] = self.profiles[key].merge(p)
        else:
            self.profiles[key] = p


class Merger:
    """Merges what each batch adds into its windows' profiles, batch after batch in input
    order (so the result does not depend on where batches were profiled)."""

    def __init__(self, windowing: Windowing, labels: pd.Series | SpilledLabels | None,
                 progress: Callable[[int], None] | None) -> None:
        from watchkeeper.run.label_spill import SpilledLabels

        self.merged = _Merged()
        self.windowing, self.labels, self.progress = windowing, labels, progress
        self.matched_any = (None if labels is None or isinstance(labels, SpilledLabels)
                            else np.zeros(len(labels), dtype=bool))

    def add(self, parts: _Parts, rows: int, bytes_done: int) -> None:
        """What a batch of ``rows`` rows adds; ``bytes_done`` of the input read with it."""
        merged = self.merged
        merged.rows += rows
        for key, p in parts.profiles:
            merged.add(key, p)
        if parts.bounds is not None:
            lo, hi = parts.bounds
            merged.lo = lo if merged.lo is None else min(merged.lo, lo)
            merged.hi = hi if merged.hi is None else max(merged.hi, hi)
        if merged.empty is None:
            merged.empty = parts.empty
        if parts.matched is not None and self.matched_any is not None:
            self.matched_any[parts.matched] = True
        if self.progress is not None:
            self.progress(bytes_done)
        if self.windowing.time is not None:
            _check_span(merged, self.windowing)

    def result(self, schema: Schema) -> tuple[list[StreamedWindow], int]:
        """The windows in order, and the number of labels whose id matched no row."""
        from watchkeeper.run.label_spill import SpilledLabels

        unmatched = 0 if self.matched_any is None else int((~self.matched_any).sum())
        if isinstance(self.labels, SpilledLabels):
            unmatched = self.labels.unmatched()
        return _windows(self.merged, self.windowing, schema), unmatched


def _check_span(merged: _Merged, windowing: Windowing) -> None:
    keys = [k for k in merged.profiles if k is not _MISSING]
    if keys and max(keys) - min(keys) > MAX_TIME_WINDOWS:
        raise DataError(f"window: {windowing.length} over this data's time span makes "
                        f"{max(keys) - min(keys) + 1} windows; choose a longer window")


def _windows(merged: _Merged, windowing: Windowing, schema: Schema) -> list[StreamedWindow]:
    profiles = merged.profiles
    out: list[StreamedWindow] = []
    if windowing.by is not None:
        for key in sorted(k for k in profiles if k is not _MISSING):
            out.append(StreamedWindow(f"{windowing.by}={key}", profiles[key]))
        if _MISSING in profiles:
            out.append(StreamedWindow(f"{windowing.by} missing", profiles[_MISSING]))
        return out
    if windowing.time is not None:
        calendar = windowing._calendar()
        keys = [k for k in profiles if k is not _MISSING]
        if keys:
            assert merged.lo is not None and merged.hi is not None and merged.empty is not None
            first, last = min(keys), max(keys)
            for key in range(first, last + 1):
                begin, finish = calendar.start(key), calendar.start(key + 1)
                start = max(begin, merged.lo)
                end = min(finish, merged.hi) if key == last else finish
                p = profiles.get(key) or profile(merged.empty, schema)
                p.start, p.end = from_epoch(start), from_epoch(end)
                out.append(StreamedWindow(calendar.label(begin, finish), p))
        if _MISSING in profiles:
            out.append(StreamedWindow("missing timestamp", profiles[_MISSING]))
        return out
    size = windowing.rows or max(merged.rows, 1)
    for key in sorted(profiles):
        first = key * size
        last = min(first + size, merged.rows)
        out.append(StreamedWindow(f"rows {first}-{max(last - 1, first)}", profiles[key]))
    return out
