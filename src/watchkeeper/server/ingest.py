"""Request bodies → Arrow tables: JSON (rows or columns), NDJSON, Arrow IPC stream."""

from __future__ import annotations

import io
import threading
from typing import Any

import pyarrow as pa

from watchkeeper.data import to_table
from watchkeeper.errors import DataError

ARROW_STREAM = "application/vnd.apache.arrow.stream"
NDJSON = ("application/x-ndjson", "application/jsonl", "application/ndjson")
JSON = "application/json"
#: Largest request body accepted, in bytes (and never more than the ingest budget).
MAX_BODY = 256 * 1024 * 1024
#: Seconds a client refused for want of ingest budget is asked to wait (Retry-After).
RETRY_AFTER = 1


class IngestBudget:
    """The bytes of request bodies being ingested at once, at most ``limit``.

    An ingest request takes its body's size before reading it and gives it back once it is
    answered; while in flight, it holds several copies of its body (the bytes, the Arrow
    table, the IPC stream stored; about 6×), so this bounds the memory of concurrent ingests
    at a few times ``limit`` however many clients post at once. A request that does not fit
    is refused at once (the server answers 503 with Retry-After), never queued.

    >>> budget = IngestBudget(100)
    >>> budget.take(60), budget.take(60), budget.in_use
    (True, False, 60)
    >>> budget.give(60)
    >>> budget.take(100), budget.peak, budget.refused
    (True, 100, 1)
    """

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"the ingest budget must be a positive number of bytes, got "
                             f"{limit!r}")
        self.limit = limit
        self.in_use = 0  # bytes taken now
        self.peak = 0  # most bytes taken at once so far
        self.refused = 0  # requests that did not fit
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Take ``size`` bytes if they fit in what is left; False (counted) if not."""
        with self._lock:
            if self.in_use + size > self.limit:
                self.refused += 1
                return False
            self.in_use += size
            self.peak = max(self.peak, self.in_use)
            return True

    def give(self, size: int) -> None:
        """Give back bytes taken."""
        with self._lock:
            self.in_use = max(0, self.in_use - size)


def parse_body(body: bytes, content_type: str) -> pa.Table:
    """Decode a batch; raises DataError with a message the client can act on."""
    kind = (content_type or JSON).split(";")[0].strip().lower()
    if not body:
        raise DataError("empty body: send a batch of rows")
    if kind == ARROW_STREAM:
        try:
            table = from_ipc(body)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable Arrow IPC stream: {exc}") from None
        names = table.column_names
        if len(set(names)) != len(names):  # it could be stored, but never folded
            twice = sorted({n for n in names if names.count(n) > 1})
            raise DataError(f"duplicate column names: {', '.join(map(repr, twice))}")
        return table
    if kind in NDJSON:
        return _ndjson(body)
    if kind == JSON:
        return _json(body)
    raise DataError(f"unsupported content type {kind!r}; use {JSON}, {NDJSON[0]} or "
                    f"{ARROW_STREAM}")


def _ndjson(body: bytes) -> pa.Table:
    from pyarrow import json as pa_json

    try:  # C++ reader: fast, and fine when every line has the same types
        return pa_json.read_json(io.BytesIO(body))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    import orjson

    rows = []
    for n, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise DataError(f"line {n} is not valid JSON: {exc}") from None
    return to_table(rows)


def _json(body: bytes) -> pa.Table:
    import orjson

    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc}") from None
    if isinstance(doc, dict) and "rows" in doc:
        doc = doc["rows"]
    elif isinstance(doc, dict) and "columns" in doc and isinstance(doc["columns"], dict):
        columns = doc["columns"]
        lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise DataError("'columns' must map each name to a list, all of one length")
        try:
            return pa.table({str(k): pa.array(v, from_pandas=True) for k, v in columns.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            n = lengths.pop()
            return to_table([{k: v[i] for k, v in columns.items()} for i in range(n)])
    if not isinstance(doc, list):
        raise DataError("expected a list of row objects, {\"rows\": [...]} or "
                        "{\"columns\": {name: [...]}}")
    return to_table(doc)


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(payload: bytes) -> pa.Table:
    """An Arrow IPC stream as a table, checked whole: offsets that point out of their
    buffers must not be read (a corrupt stream raises ArrowInvalid or OSError, whether a
    request's body or a stored batch about to be folded)."""
    table = pa.ipc.open_stream(io.BytesIO(payload)).read_all()
    table.validate(full=True)
    return table
