"""What the SDK, the server and the profiles agree on about an event batch: its reserved
columns and its encoding on the wire (an Arrow IPC stream).

Events may carry reserved columns next to the model's inputs and outputs (the SDK and the
server fill them in): ``_ts`` (event time), ``_latency_ms``, ``_client`` (caller id) and
``_error`` (the prediction call failed). A suite never monitors them as features.

>>> from watchkeeper.wire import RESERVED
>>> RESERVED
('_ts', '_latency_ms', '_client', '_error')
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pyarrow as pa

TS, LATENCY, CLIENT, ERROR = "_ts", "_latency_ms", "_client", "_error"
RESERVED = (TS, LATENCY, CLIENT, ERROR)

#: Media type of an Arrow IPC stream: how the SDK posts a batch and the server stores it.
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def to_ipc(table: pa.Table, compression: str | None = None) -> bytes:
    """A table as an Arrow IPC stream (what the SDK posts and the server stores).

    >>> from_ipc(to_ipc(pa.table({"x": [1, 2]}))).to_pydict()
    {'x': [1, 2]}
    """
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(payload: bytes, check: Callable[[pa.Schema], None] | None = None) -> pa.Table:
    """An Arrow IPC stream as a table, checked whole: offsets that point out of their
    buffers must not be read (a corrupt stream raises ArrowInvalid or OSError, whether a
    request's body or a stored batch about to be folded). ``check`` sees the schema before
    any batch is read, and may refuse it by raising."""
    reader = pa.ipc.open_stream(io.BytesIO(payload))
    if check is not None:
        check(reader.schema)
    table = reader.read_all()
    table.validate(full=True)
    return table
