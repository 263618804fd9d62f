"""Window profiles made elsewhere (a Spark sink), logged as events the fold merges.

Such an event is an empty event batch whose schema metadata carries, as JSON, the suite
version the rows were profiled with, the window length, and one profile per window (its
start in Unix seconds, or None for rows without a usable time: the window of the time the
batch was logged, as for rows posted without one). The fold merges each profile into the
live window of that start, as if it had profiled the rows itself; it refuses (and after
``FOLD_ATTEMPTS`` sets aside) a batch profiled in other windows or with another suite
version than the one serving the window, since their bins would not line up.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from watchkeeper.profiles.core import Profile

#: Schema metadata of an event batch that carries window profiles.
PROFILES_KEY = b"watchkeeper.profiles"


def profiled_batch(version: int, window_seconds: float,
                   windows: list[tuple[float | None, Profile]]) -> pa.Table:
    """The event batch that carries ``windows`` (start, profile), profiled with suite
    ``version`` in windows of ``window_seconds``."""
    body = {"version": version, "window": window_seconds,
            "windows": [{"start": start, "profile": p.to_dict()} for start, p in windows]}
    schema = pa.schema([]).with_metadata({PROFILES_KEY: json.dumps(body)})
    return pa.Table.from_batches([], schema)


def profiled_windows(table: pa.Table) -> tuple[int, float, list[tuple[float | None, Profile]]
                                               ] | None:
    """(suite version, window seconds, [(start, profile)]) of a batch from
    :func:`profiled_batch`; None when it is not one. ValueError when it cannot be read."""
    metadata = table.schema.metadata or {}
    if PROFILES_KEY not in metadata or table.num_rows:
        return None
    try:
        body: Any = json.loads(metadata[PROFILES_KEY])
        windows = [(None if w["start"] is None else float(w["start"]),
                    Profile.from_dict(w["profile"])) for w in body["windows"]]
        return int(body["version"]), float(body["window"]), windows
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"a batch of window profiles that cannot be read ({exc})") from None
