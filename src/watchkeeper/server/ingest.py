"""Request bodies → Arrow tables: JSON (rows or columns), NDJSON, Arrow IPC stream."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa

from watchkeeper.data import to_table
from watchkeeper.errors import DataError

ARROW_STREAM = "application/vnd.apache.arrow.stream"
NDJSON = ("application/x-ndjson", "application/jsonl", "application/ndjson")
JSON = "application/json"
#: Largest request body accepted, in bytes.
MAX_BODY = 256 * 1024 * 1024


def parse_body(body: bytes, content_type: str) -> pa.Table:
    """Decode a batch; raises DataError with a message the client can act on."""
    kind = (content_type or JSON).split(";")[0].strip().lower()
    if not body:
        raise DataError("empty body: send a batch of rows")
    if kind == ARROW_STREAM:
        try:
            return pa.ipc.open_stream(io.BytesIO(body)).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable Arrow IPC stream: {exc}") from None
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
    return pa.ipc.open_stream(io.BytesIO(payload)).read_all()
