"""Request bodies → Arrow tables: JSON (rows or columns), NDJSON, Arrow IPC stream; the
checks a batch passes before it is acknowledged (its idempotency key, its width)."""

from __future__ import annotations

import io
import threading
from typing import Any

import pyarrow as pa

from watchkeeper.errors import DataError, RequestError
from watchkeeper.io.tables import to_table
from watchkeeper.wire import ARROW_STREAM, CLIENT, from_ipc

NDJSON = ("application/x-ndjson", "application/jsonl", "application/ndjson")
JSON = "application/json"
#: Largest request body accepted, in bytes (and never more than the ingest budget).
MAX_BODY = 256 * 1024 * 1024
#: Seconds a client refused for want of ingest budget is asked to wait (Retry-After).
RETRY_AFTER = 1
#: Longest Idempotency-Key accepted, in characters (a UUID has 36).
MAX_KEY = 255
#: Columns a batch may have besides its suite's and the reserved ones (``serve --max-columns``;
#: the SDK sends at most 1000 features).
MAX_COLUMNS = 1000


def idempotency_key(value: str | None) -> str | None:
    """The Idempotency-Key header's value, checked: 1 to MAX_KEY printable ASCII characters,
    no spaces (a UUID will do); None without one. RequestError (400) otherwise.

    >>> idempotency_key("3f2c-batch-17"), idempotency_key(None)
    ('3f2c-batch-17', None)
    """
    if value is None:
        return None
    if not 0 < len(value) <= MAX_KEY or not all("!" <= c <= "~" for c in value):
        raise RequestError(f"Idempotency-Key must be 1 to {MAX_KEY} printable ASCII "
                           f"characters without spaces (e.g. a UUID), got {len(value)} "
                           "characters")
    return value


def check_width(columns: int, limit: int, what: str = "the batch") -> None:
    """DataError (422) naming the limit when ``what`` has more than ``limit`` columns."""
    if columns > limit:
        raise DataError(f"{what} has {columns} columns, more than the {limit} this server "
                        "takes for the model (its suite's columns, the reserved ones and "
                        "watchkeeper serve --max-columns others): send the model's columns")


class IngestBudget:
    """The bytes of request bodies being ingested at once, at most ``limit``.

    An ingest request takes its body's bytes as they arrive (a stalled or slow upload holds
    only what it sent) and gives them back once it is answered; while in flight, it holds
    several copies of its body (the bytes, the Arrow table, the IPC stream stored; about
    6×), so this bounds the memory of concurrent ingests at a few times ``limit`` however
    many clients post at once. A request that runs out of it is refused at once (the server
    answers 503 with Retry-After), never queued.

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


def check_batch(table: pa.Table, kind: str, label_columns: list[str],
                vectors: frozenset[str] = frozenset()) -> None:
    """What the fold needs of a batch, checked before it is acknowledged (DataError, 422,
    naming the column): one scalar value per column and row (nested lists, objects or maps
    cannot be profiled, joined or windowed) except a list of values in the suite's vector
    columns (``vectors``: embeddings), and labels with the suite's id and target
    columns (``label_columns``). Values of the wrong scalar type are not refused: the fold
    counts them as invalid (a vector of the wrong length too)."""
    nested = [f"{f.name!r} ({f.type})" for f in table.schema if _nested(f.type)
              and not (f.name in vectors and _flat_list(f.type))]
    if nested:
        hint = (f"; the suite's vector columns ({', '.join(map(repr, sorted(vectors)))}) take "
                "one list of numbers a row") if vectors else ""
        raise DataError(f"column {', '.join(nested)} holds nested values (lists or objects): "
                        "send one number, string, boolean or time per column and row "
                        f"(e.g. the value as a JSON string){hint}")
    for f in table.schema:
        if pa.types.is_float16(f.type):
            raise DataError(f"column {f.name!r} holds half-precision floats: send them as "
                            "float32 or float64")
        if f.name == CLIENT and (pa.types.is_binary(f.type) or pa.types.is_large_binary(
                f.type) or pa.types.is_fixed_size_binary(f.type)):
            raise DataError(f"column {CLIENT!r} holds bytes: send the caller as text")
    if kind == "labels":
        missing = [c for c in dict.fromkeys(label_columns) if c not in table.column_names]
        if missing:
            raise DataError(f"labels need the columns {', '.join(map(repr, label_columns))} "
                            f"of the model's suite (the prediction id and the label); "
                            f"missing {', '.join(map(repr, missing))}")


def _flat_list(kind: pa.DataType) -> bool:
    """A list of scalars: a vector, or what the fold counts as an invalid one."""
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or \
        pa.types.is_fixed_size_list(kind)
    return listed and not _nested(kind.value_type)


def _nested(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _nested(kind.value_type)
    return pa.types.is_nested(kind)


def parse_body(body: bytes, content_type: str, max_columns: int = MAX_COLUMNS) -> pa.Table:
    """Decode a batch of at most ``max_columns`` columns (a wider one is refused before
    its table is built); raises DataError with a message the client can act on."""
    kind = (content_type or JSON).split(";")[0].strip().lower()
    if not body:
        raise DataError("empty body: send a batch of rows")
    if kind == ARROW_STREAM:
        try:
            table = from_ipc(body, lambda schema: check_width(len(schema), max_columns))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable Arrow IPC stream: {exc}") from None
        names = table.column_names
        if len(set(names)) != len(names):  # it could be stored, but never folded
            twice = sorted({n for n in names if names.count(n) > 1})
            raise DataError(f"duplicate column names: {', '.join(map(repr, twice))}")
        # schema metadata is not data, and a batch of window profiles (profiles.shipped) is
        # a store sink's to log, not a client's to pose as
        return table.replace_schema_metadata(None)
    if kind in NDJSON:
        table = _ndjson(body, max_columns)
    elif kind == JSON:
        table = _json(body, max_columns)
    else:
        raise DataError(f"unsupported content type {kind!r}; use {JSON}, {NDJSON[0]} or "
                        f"{ARROW_STREAM}")
    check_width(table.num_columns, max_columns)  # rows of different columns, together
    return table


def _rows(rows: Any, max_columns: int) -> pa.Table:
    """JSON rows as a table; each row checked for width before anything is built."""
    if isinstance(rows, list):
        for n, row in enumerate(rows):
            if isinstance(row, dict):
                check_width(len(row), max_columns, f"row {n}")
    return to_table(rows)


def _ndjson(body: bytes, max_columns: int) -> pa.Table:
    import orjson
    from pyarrow import json as pa_json

    text = body.lstrip()
    first = text[:text.find(b"\n") + 1 or len(text)]
    try:  # a wide first line is refused before Arrow's reader builds its columns
        head = orjson.loads(first)
    except orjson.JSONDecodeError:
        head = None
    if isinstance(head, dict):
        check_width(len(head), max_columns, "line 1")
    try:  # C++ reader: fast, and fine when every line has the same types
        return pa_json.read_json(io.BytesIO(body))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    rows = []
    for n, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise DataError(f"line {n} is not valid JSON: {exc}") from None
    return _rows(rows, max_columns)


def _json(body: bytes, max_columns: int) -> pa.Table:
    import orjson

    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc}") from None
    if isinstance(doc, dict) and "rows" in doc:
        doc = doc["rows"]
    elif isinstance(doc, dict) and "columns" in doc and isinstance(doc["columns"], dict):
        columns = doc["columns"]
        check_width(len(columns), max_columns)
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
    return _rows(doc, max_columns)
