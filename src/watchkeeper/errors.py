"""Every exception watchkeeper raises on purpose, in one place.

Each class says how it is answered: ``http_status`` by the server (one exception handler,
server/app.py; the JSON body is ``{"detail": error.detail}``) and ``exit_code`` by the CLI
(which prints ``error: <message>`` in one line, never a traceback). This module imports
nothing, so every layer may use it (``import watchkeeper.sdk`` stays light).

    WatchkeeperError
    ├── DataError            input data that cannot be read or used          422
    ├── SuiteError           an invalid suite file or argument               422
    ├── NotFound             a model, version, incident or silence missing    404
    │   └── RecordNotFound   … a record the store does not hold (StoreError too)
    ├── RequestError         an HTTP request the server cannot take as sent  400
    │   ├── RequestTimeout   … its body stopped arriving                     408
    │   └── BodyTooLarge     … its body is over the largest accepted         413
    ├── Unauthorized         no credentials                                   401
    ├── Forbidden            credentials that do not allow this               403
    ├── TooManyAttempts      too many wrong tokens from one address           429
    ├── ServerBusy           the ingest budget is spent: retry later          503
    ├── StoreError           a store that cannot be opened or used            503
    │   ├── LeaseLost        a write fenced by a lease no longer held
    │   ├── Conflict         a conditional write that found the record changed
    │   └── RecordNotFound
    ├── BatchFailed          the fold failed on one event batch              (500)
    ├── DeployError          a server refused a deploy or could not be reached
    ├── DeliveryError        a notification that could not be delivered
    ├── ConfigError          a notifier, route or exporter that cannot be set up
    ├── MissingExtra         a suite needs an optional package not installed here
    ├── WorkerLost           a check's worker process ended abruptly (killed)
    └── SinkError            a batch an SDK sink refused or could not deliver
        └── SinkUnavailable  … not now: the batch may be sent again later
"""

from __future__ import annotations

from collections.abc import Mapping

#: The CLI's exit code for an error the user can act on (bad arguments, unreadable input,
#: a server that refused): the one click uses for usage errors too.
EXIT_USAGE = 2
#: The CLI's exit code for work that could not finish for a reason outside the input (a
#: worker process killed by the system): running it again may succeed.
EXIT_FAILED = 3


class WatchkeeperError(Exception):
    """Base class for every error caused by input the user controls, or by a service (the
    store, a server, a notifier) that failed in a way worth one line rather than a traceback.

    ``http_status`` 500 means "not the client's doing": the server logs it and answers
    500 without its message."""

    http_status: int = 500
    exit_code: int = EXIT_USAGE
    #: headers of the HTTP answer (Retry-After, WWW-Authenticate...)
    headers: Mapping[str, str] | None = None

    @property
    def detail(self) -> str:
        """The message of the HTTP answer."""
        return str(self)


class DataError(WatchkeeperError, ValueError):
    """Input data that cannot be read or used (missing file, empty data, unknown format)."""

    http_status = 422


class SuiteError(WatchkeeperError, ValueError):
    """A suite file or suite argument that is invalid; the message names the field."""

    http_status = 422

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}")


class NotFound(WatchkeeperError):
    """What a request or call names does not exist (a model without a suite, a suite
    version, an incident, a silence)."""

    http_status = 404


class RequestError(WatchkeeperError, ValueError):
    """An HTTP request the server cannot take as sent (a malformed header, a body cut short,
    a body that stopped arriving): the client can fix it and send it again."""

    http_status = 400

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        if headers is not None:
            self.headers = dict(headers)


class RequestTimeout(RequestError):
    """A request body that stopped arriving."""

    http_status = 408


class BodyTooLarge(RequestError):
    """A request body over the largest the server accepts."""

    http_status = 413


class Unauthorized(WatchkeeperError):
    """A request without credentials, where the server needs them."""

    http_status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(WatchkeeperError):
    """Credentials that do not allow what was asked (or a cross-site request)."""

    http_status = 403


class _RetryLater(WatchkeeperError):
    """Refused for now: the answer says in how many seconds to try again (Retry-After)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class TooManyAttempts(_RetryLater):
    """A client address that sent too many wrong tokens lately."""

    http_status = 429


class ServerBusy(_RetryLater):
    """The server takes no more of this now (its ingest budget is spent): nothing of the
    request was stored, send it again later."""

    http_status = 503


class StoreError(WatchkeeperError):
    """A store that cannot be opened or used, or a record that is not there (one line)."""

    http_status = 503

    @property
    def detail(self) -> str:
        return f"store unavailable: {self}"


class LeaseLost(StoreError):
    """A write fenced by a lease that its writer no longer holds: nothing was written."""


class Conflict(StoreError):
    """A conditional write found the record changed by someone else: nothing was written."""


class RecordNotFound(NotFound, StoreError):
    """A record the store does not hold (a suite version): 404, not a store outage."""

    @property
    def detail(self) -> str:
        return str(self)


class WorkerLost(WatchkeeperError):
    """A worker process of a streamed check or init ended abruptly (killed by a signal, or
    by the system when memory ran out); the work stopped and nothing was written."""

    exit_code = EXIT_FAILED


class BatchFailed(WatchkeeperError):
    """Folding a model's event batches failed on one of them (a corrupt payload, or one the
    profiling fails on): that model's step stops here; the other models fold on."""


class DeployError(WatchkeeperError):
    """The server refused or could not be reached; the message says why."""

    http_status = 502


class DeliveryError(WatchkeeperError):
    """A notification could not be delivered. ``permanent`` ones are not retried
    (e.g. HTTP 400/401/403/404: the same request would fail again)."""

    http_status = 502

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class MissingExtra(WatchkeeperError):
    """A suite (or argument) needs an optional extra this install lacks; the message says
    what to install. Not a ValueError, so that no data path counts it as a bad value."""


class ConfigError(WatchkeeperError, ValueError):
    """A notifier, notification route or telemetry exporter that cannot be set up as given
    (a secret that cannot be read, a route naming no notifier); never shows a secret."""


class SinkError(WatchkeeperError):
    """A batch a sink refused or could not deliver (after its retries); one line."""

    http_status = 502


class SinkUnavailable(SinkError):
    """The sink could not be reached or is busy (connection refused, timeout, 5xx, 429): the
    same batch may be sent again later."""

    http_status = 503
