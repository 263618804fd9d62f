"""The models' steps, each in a thread of its own.

Each model's step (rebuilding it after a restart or a takeover, folding, closing and judging
windows) runs in a thread of its own, outside every lock readers take: a model whose step is
slow (a huge batch, an evaluation that takes hours) holds up no other model, no request and
no stop; it is skipped until its step is done. A stop waits a bounded time for a busy model;
what that model saved last stands, and the rest is folded again after a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from watchkeeper.errors import BatchFailed, LeaseLost
from watchkeeper.server.hub.fold import why

log = logging.getLogger("watchkeeper.server")


class Workers:
    """Runs one step per model, each in its thread and under its model's lock (which a stop
    takes, with a timeout, to save what the model has in memory). What a step failed with is
    kept for :meth:`run` to raise, unless the step was begun under a lease given up since
    (``epoch`` then differs from ``current_epoch()``)."""

    def __init__(self, counters: Counter[str], wake: threading.Event,
                 stop: threading.Event) -> None:
        self.counters = counters
        self._wake = wake
        self._stop = stop
        self._threads: dict[str, threading.Thread] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._errors: dict[str, BaseException] = {}
        self._lock = threading.Lock()

    def lock(self, model: str) -> threading.Lock:
        """The lock a model's step runs under."""
        with self._lock:
            return self._locks.setdefault(model, threading.Lock())

    def threads(self) -> list[threading.Thread]:
        """The models' step threads, as last started."""
        with self._lock:
            return list(self._threads.values())

    def run(self, steps: Mapping[str, Callable[[], None]], *, epoch: int | None,
            current_epoch: Callable[[], int | None], wait: float) -> None:
        """Start each model's step unless its last one is still busy (counted as
        ``fold_busy``); wait up to ``wait`` seconds for them; raise what a step failed with
        (LeaseLost first)."""
        started = []
        for model, step in steps.items():
            busy = self._threads.get(model)
            if busy is not None and busy.is_alive():
                self.counters["fold_busy"] += 1
                continue
            worker = threading.Thread(target=self._step, name=f"watchkeeper-fold-{model}",
                                      args=(model, step, epoch, current_epoch), daemon=True)
            with self._lock:
                self._threads[model] = worker
            worker.start()
            started.append(worker)
        deadline = time.monotonic() + wait
        for worker in started:
            worker.join(max(0.0, deadline - time.monotonic()))
        errors = [self._errors.pop(m) for m in list(self._errors)]
        errors.sort(key=lambda e: not isinstance(e, LeaseLost))
        if errors:
            raise errors[0]

    def _step(self, model: str, step: Callable[[], None], epoch: int | None,
              current_epoch: Callable[[], int | None]) -> None:
        try:
            with self.lock(model):
                if self._stop.is_set():
                    return
                step()
        except BatchFailed as exc:  # this model's step ends here; the others fold
            self.counters["fold_errors"] += 1
            log.warning("%s", exc)
        except BaseException as exc:
            if epoch == current_epoch():
                self._errors[model] = exc
                self._wake.set()
            else:
                log.info("model %s: a step begun under an earlier lease ended: %s", model,
                         why(exc))
