"""The server's engine: per model, OnlineMonitors fed from the store's durable event log.

Ingest only appends to the store's event log, and answers once that commit is done
(:mod:`.intake`); a background thread folds new events into each model's windows, closes
and evaluates windows that are due, and saves windows, findings and the model's watermark
(the last event folded) in one transaction (:mod:`.fold`), each model's step in a thread of
its own (:mod:`.workers`). After a crash, windows are reloaded and the events past the
watermark are folded again, so every acknowledged event counts exactly once. Each model's
alert state is saved after the windows that changed it (:mod:`.alert_state`). A model may
have several suite versions in service at once (:mod:`.registry`).

Several server processes may share one store (``lease_ttl``, as ``watchkeeper serve``
does). Every one of them appends what it ingests and answers reads, but only the holder of
the store's fold lease (:mod:`.lease`) folds, closes and judges windows; when its holder
dies, another server takes it, rebuilds its state from the store as after a restart, and
folds on from the shared watermark. The others answer from a view of the store
(:mod:`.follower`). :class:`Hub` (:mod:`.core`) composes these pieces.
"""

from watchkeeper.server.hub.alert_state import SAVE_TRIES, AlertStates
from watchkeeper.server.hub.core import CAUGHT_UP_SECONDS, Hub
from watchkeeper.server.hub.fold import (
    FOLD_ATTEMPTS,
    FOLD_BATCHES,
    FOLD_RECORDS,
    Fold,
)
from watchkeeper.server.hub.follower import View
from watchkeeper.server.hub.intake import REJECTED_KEY, Intake
from watchkeeper.server.hub.lease import SCOPE, Fenced, FoldLease
from watchkeeper.server.hub.registry import Registry
from watchkeeper.server.hub.state import AlertView, Generation, ModelState
from watchkeeper.server.hub.workers import Workers

__all__ = [
    "CAUGHT_UP_SECONDS", "FOLD_ATTEMPTS", "FOLD_BATCHES", "FOLD_RECORDS", "REJECTED_KEY",
    "SAVE_TRIES", "SCOPE", "AlertStates", "AlertView", "Fenced", "Fold",
    "FoldLease", "Generation", "Hub", "Intake", "ModelState", "Registry", "View", "Workers",
]
