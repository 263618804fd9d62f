"""In-process SDK for model servers: ``wk.log(...)`` costs about a microsecond, never raises
and never waits on I/O; a background thread sends Arrow tables to a sink.

>>> from watchkeeper.sdk import Client, MemorySink
>>> wk = Client(MemorySink(), feature_names=["x"])
>>> wk.log({"x": 1.5}, prediction=0.8)
>>> wk.close()
>>> wk.stats["flushed_rows"]
1

Sinks: :class:`RemoteSink` (a watchkeeper server over HTTP), :class:`EmbeddedSink` (windows
profiled and evaluated in-process, saved to a store), :class:`SubprocessSink` (the same in a
child process, off the model server's GIL), :class:`MemorySink` (tests, notebooks).
:class:`ASGIMiddleware` gives the rows logged during a request of a FastAPI/Starlette app
its caller, latency and error; :func:`lifespan` flushes the client
when the app stops.

Buffered rows are flushed by ``close()``, at exit and on SIGTERM/SIGINT (within the
client's ``shutdown_timeout``, 5 s by default), under uvicorn, gunicorn and hypercorn alike.
After ``os.fork`` the child starts with an empty buffer and a thread of its own; a worker
that ends with ``os._exit`` (multiprocessing) should call ``close()`` first.
"""

from watchkeeper.errors import SinkError, SinkUnavailable
from watchkeeper.sdk.asgi import ASGIMiddleware, lifespan
from watchkeeper.sdk.client import Client
from watchkeeper.sdk.sinks import (
    EmbeddedSink,
    MemorySink,
    RemoteSink,
    Sink,
)
from watchkeeper.sdk.subprocess_sink import SubprocessSink

# A sink of your own raises SinkUnavailable for what may be delivered later (kept and retried)
# and SinkError for what never will be (counted as rejected); both live in watchkeeper.errors.
__all__ = ["ASGIMiddleware", "Client", "EmbeddedSink", "MemorySink", "RemoteSink", "Sink",
           "SinkError", "SinkUnavailable", "SubprocessSink", "lifespan"]
