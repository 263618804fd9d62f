"""In-process SDK for model servers: ``wk.log(...)`` costs about a microsecond, never raises
and never waits on I/O; a background thread sends Arrow tables to a sink.

>>> from watchkeeper.sdk import Client, MemorySink
>>> wk = Client(MemorySink(), feature_names=["x"])
>>> wk.log({"x": 1.5}, prediction=0.8)
>>> wk.close()
>>> wk.stats["flushed_rows"]
1

Sinks: :class:`RemoteSink` (a watchkeeper server over HTTP), :class:`EmbeddedSink` (windows
profiled and evaluated in-process, saved to a store), :class:`MemorySink` (tests,
notebooks). :class:`ASGIMiddleware` times the requests of a FastAPI/Starlette app.

Buffered rows are flushed at exit (within 5 s) and by ``close()``. After ``os.fork`` the
child starts with an empty buffer and a thread of its own; a worker that ends with
``os._exit`` (multiprocessing) should call ``close()`` first.
"""

from watchkeeper.sdk.asgi import ASGIMiddleware
from watchkeeper.sdk.client import Client
from watchkeeper.sdk.sinks import EmbeddedSink, MemorySink, RemoteSink, Sink, SinkError

__all__ = ["ASGIMiddleware", "Client", "EmbeddedSink", "MemorySink", "RemoteSink", "Sink",
           "SinkError"]
