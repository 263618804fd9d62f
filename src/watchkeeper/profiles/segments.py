"""Per-segment sub-profiles of a batch: one :class:`~watchkeeper.profiles.core.Profile` per
segment value with rows (see :mod:`watchkeeper.baseline.segments`).

A sub-profile is the profile of the segment's rows against the suite's schema without
its segments and security model: the same column bins, moments and task tallies
(performance, estimation, fairness groups) as the whole window, so every monitor that
reads a window can read a segment, and segments merge exactly as windows do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.schema import Schema
from watchkeeper.profiles.task import row_codes

if TYPE_CHECKING:
    from watchkeeper.baseline.task import RowCodes, Task
    from watchkeeper.profiles.core import Profile


def plain_schema(schema: Schema) -> Schema:
    """The schema a segment is profiled with: no segments (no nesting), no security model
    (client and OOD tallies are about the whole traffic), no fairness groupings (fairness
    is judged on the whole population: see :func:`segment_task`)."""
    task = None if schema.task is None else segment_task(schema.task)
    return dataclasses.replace(schema, segments=[], security=None, task=task)


def segment_task(task: Task) -> Task:
    """The task of a segment's sub-profile: the suite's without sensitive attributes, so a
    segment keeps no fairness tallies (no monitor reads them per segment; they were a
    fifth of a segment's bytes on ACS)."""
    return dataclasses.replace(task, attributes=[], intersections=[])


#: Prefix of a segmentation's per-row codes among a batch's row codes (``RowCodes.groups``,
#: beside fairness groups), which a late label needs to find the segment of its row.
SEGMENT_KEY = "segment:"


def segment_labels(schema: Schema) -> dict[str, list[str]]:
    """Each segmentation's key in ``RowCodes.groups`` and its labels, by code."""
    return {SEGMENT_KEY + s.name: s.labels for s in schema.segments}


def segment_codes(table: pa.Table, schema: Schema) -> dict[str, np.ndarray]:
    """Each row's segment value (code) per segmentation, keyed as :func:`segment_labels`."""
    return {SEGMENT_KEY + s.name: s.codes(table) for s in schema.segments}


def record_codes(table: pa.Table, schema: Schema) -> RowCodes:
    """A batch's prediction records for late labels: its row codes (see
    :func:`~watchkeeper.profiles.task.row_codes`) and its rows' segment codes, so that a
    late label moves its row in its segments' sub-profiles too."""
    assert schema.task is not None
    codes = row_codes(table, schema.task)
    codes.groups.update(segment_codes(table, schema))
    return codes


def segment_profiles(table: pa.Table, schema: Schema,
                     profile: Callable[[pa.Table, Schema], Profile]) -> dict[str, Profile]:
    """Sub-profile of every segment value with rows in ``table``, by label
    (``region=north``); ``profile`` is :func:`watchkeeper.profiles.core.profile`."""
    if not schema.segments or table.num_rows == 0:
        return {}
    inner = plain_schema(schema)
    out: dict[str, Profile] = {}
    for segment in schema.segments:
        codes = segment.codes(table)
        labels = segment.labels
        order = np.argsort(codes, kind="stable")
        values, starts = np.unique(codes[order], return_index=True)
        ends = [*starts[1:], order.size]
        for code, lo, hi in zip(values, starts, ends, strict=True):
            rows = pa.array(order[lo:hi])
            out[labels[int(code)]] = profile(table.take(rows), inner)
    return out
