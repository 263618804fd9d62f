"""Window profiles made elsewhere (a Spark sink), logged as events the fold merges.

Such an event is an event batch whose schema metadata carries, as JSON, the suite version
the rows were profiled with, the window length, one profile per window (its start in Unix
seconds, or None for rows without a usable time: the window of the time the batch was
logged, as for rows posted without one), and how many rows had a time that names no window
(a data-quality count, as the fold counts for rows posted with one). Its rows, when the
suite joins late labels, are the prediction records of the rows that had an id (column
``window``: the index of their window's profile; ``id``; ``codes``: the packed row codes of
:func:`watchkeeper.run.label_join.pack_codes`; ``label``: the label code), which the fold
keeps as it keeps those of the rows it profiles itself. The fold merges each profile into
the live window of that start, as if it had profiled the rows itself; it refuses (and after
``FOLD_ATTEMPTS`` sets aside) a batch profiled in other windows or with another suite
version than the one serving the window, since their bins would not line up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from watchkeeper.profiles.core import Profile

#: Schema metadata of an event batch that carries window profiles.
PROFILES_KEY = b"watchkeeper.profiles"
#: Columns of the prediction records a batch of window profiles carries (``id`` has the
#: type of the stream's id column).
RECORD_COLUMNS = ("window", "id", "codes", "label")


@dataclass
class Shipped:
    """A batch of window profiles as the fold reads it."""

    version: int
    window: float  # seconds
    windows: list[tuple[float | None, Profile]]
    bad_times: int = 0
    records: pa.Table | None = field(default=None, repr=False)
    #: the suite's personal-data columns were hashed or dropped before profiling, with
    #: the key of this check (:func:`watchkeeper.io.pii.key_check`; None: no key, dropped)
    pii: bool = False
    pii_key: str | None = None


def profiled_batch(version: int, window_seconds: float,
                   windows: list[tuple[float | None, Profile]], *,
                   records: pa.Table | None = None, bad_times: int = 0,
                   pii: bool = False, pii_key: str | None = None) -> pa.Table:
    """The event batch that carries ``windows`` (start, profile), profiled with suite
    ``version`` in windows of ``window_seconds``; ``records``: the prediction records of
    their rows that have an id (columns :data:`RECORD_COLUMNS`); ``bad_times``: rows whose
    time named no window (counted in the window of the time the batch is logged); ``pii``:
    personal-data columns were hashed (with the key of check ``pii_key``) or dropped
    (without a key) before profiling, as the server does."""
    body = {"version": version, "window": window_seconds, "bad_times": bad_times,
            "pii": pii, "pii_key": pii_key,
            "windows": [{"start": start, "profile": p.to_dict()} for start, p in windows]}
    metadata = {PROFILES_KEY: json.dumps(body)}
    if records is None or records.num_rows == 0:
        return pa.Table.from_batches([], pa.schema([]).with_metadata(metadata))
    if tuple(records.column_names) != RECORD_COLUMNS:
        raise ValueError(f"prediction records need the columns {RECORD_COLUMNS}, got "
                         f"{tuple(records.column_names)}")
    return records.replace_schema_metadata(metadata)


def profiled_windows(table: pa.Table) -> Shipped | None:
    """The content of a batch from :func:`profiled_batch`; None when it is not one.
    ValueError when it cannot be read. (The HTTP API drops schema metadata from the batches
    it takes, so only a sink writing to the store makes one.)"""
    metadata = table.schema.metadata or {}
    if PROFILES_KEY not in metadata:
        return None
    try:
        body: Any = json.loads(metadata[PROFILES_KEY])
        windows = [(None if w["start"] is None else float(w["start"]),
                    Profile.from_dict(w["profile"])) for w in body["windows"]]
        records = None
        if table.num_rows:
            if tuple(table.column_names) != RECORD_COLUMNS:
                raise ValueError(f"prediction records with the columns "
                                 f"{tuple(table.column_names)}, not {RECORD_COLUMNS}")
            records = table.replace_schema_metadata(None)
        return Shipped(int(body["version"]), float(body["window"]), windows,
                       int(body.get("bad_times", 0)), records, bool(body.get("pii", False)),
                       body.get("pii_key"))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"a batch of window profiles that cannot be read ({exc})") from None
