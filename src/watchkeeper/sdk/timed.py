"""``Client.timed``: a predict function logs its input, output, latency and failure.

A single input (a dict, a sequence of values) is logged as one row (``Client.log``); a batch
(a 2-D array, a data frame, an Arrow table, a list of rows) one row per input row
(``Client.log_batch``), the output of ``predict_proba`` (or any 2-D output) as scores.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from watchkeeper.sdk.rows import is_batch

if TYPE_CHECKING:
    from watchkeeper.sdk.client import Client

F = TypeVar("F", bound=Callable[..., Any])
_perf = time.perf_counter


def wrap(client: Client, fn: F | None, features_arg: int | str) -> Any:
    """``fn`` wrapped to log each call to ``client``; a decorator for it when ``fn`` is None."""

    def decorate(func: F) -> F:
        index, name = _argument(func, features_arg)
        scores = getattr(func, "__name__", "") in ("predict_proba", "predict_log_proba")

        def pick(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if index is not None and index < len(args):
                return args[index]
            return kwargs.get(name) if name is not None else None

        def record(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
                   failed: bool, start: float) -> None:
            latency_ms = (_perf() - start) * 1e3
            features = pick(args, kwargs)
            try:
                batch = is_batch(features)
            except Exception:
                batch = False
            if not batch:
                client.log(features, result, error=failed, latency_ms=latency_ms)
            elif scores or (not failed and getattr(result, "ndim", 1) == 2
                            and result.shape[1] > 1):
                client.log_batch(features, probas=result, error=failed,
                               latency_ms=latency_ms)
            else:
                client.log_batch(features, result, error=failed, latency_ms=latency_ms)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = _perf()
                try:
                    result = await func(*args, **kwargs)
                except Exception:
                    record(args, kwargs, None, True, start)
                    raise
                record(args, kwargs, result, False, start)
                return result

            return cast(F, async_wrapper)  # functools.wraps keeps func's signature

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = _perf()
            try:
                result = func(*args, **kwargs)
            except Exception:
                record(args, kwargs, None, True, start)
                raise
            record(args, kwargs, result, False, start)
            return result

        return cast(F, wrapper)  # functools.wraps keeps func's signature

    return decorate(fn) if fn is not None else decorate


def _argument(func: Callable[..., Any], which: int | str) -> tuple[int | None, str | None]:
    """Position and name of the features argument of ``func``."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if isinstance(which, int):
        if which == 0 and positional and positional[0].name in ("self", "cls"):
            which = 1  # a method: its features come after self
        name = None
        if which < len(positional) and positional[which].kind != positional[which].POSITIONAL_ONLY:
            name = positional[which].name
        return which, name
    index = next((i for i, p in enumerate(positional) if p.name == which), None)
    return index, which
