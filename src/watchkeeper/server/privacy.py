"""Personal data the suite does not know about, removed from a batch before it is stored.

The suite's own personal-data columns are hashed or dropped by the hub (pii.protect). This
covers what ``init`` could not see: a column added after it whose name or values look like
personal data is hashed (dropped when its name itself is an e-mail address, a phone number
and the like), and client ids (``_client``, or the suite's client
column when the suite does not profile it) are replaced by a stable pseudonym, so that no
window, finding, incident, page, metric or notification shows them. The key is
WATCHKEEPER_PII_KEY, else a random one kept in the store. Counted per model in
the hub's counters (``personal_columns_hashed``/``_dropped``), shown in /metrics.
"""

from __future__ import annotations

import logging
import threading

import pyarrow as pa

from watchkeeper.io.pii import personal_strings, pseudonymise_clients, scrub_unknown
from watchkeeper.server.hub import Hub
from watchkeeper.store.sessions import shared_key
from watchkeeper.wire import CLIENT, LATENCY, TS

log = logging.getLogger("watchkeeper.server")
#: the store's key for pseudonyms when WATCHKEEPER_PII_KEY is not set
STORE_KEY = "pseudonym"
#: columns named in the log at most once each, up to this many
LOGGED = 1_000


class Privacy:
    """Scrubs batches of one server before they are stored (``show_clients``: keep
    client ids as sent)."""

    def __init__(self, hub: Hub, *, show_clients: bool = False) -> None:
        self.hub = hub
        self.show_clients = show_clients
        self._key: bytes | None = hub.pii_key
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def key(self) -> bytes:
        """WATCHKEEPER_PII_KEY, else a random key kept in the store (shared by every server
        on it, so that a value keeps its pseudonym across servers and restarts)."""
        if self._key is None:
            self._key = shared_key(self.hub.store, STORE_KEY)
        return self._key

    def scrub(self, model: str, table: pa.Table) -> pa.Table:
        """The batch with personal data outside the suite hashed or dropped, and client ids
        pseudonymised (StoreError if the store's client key cannot be read)."""
        suites = [g.live.suite for g in self.hub.models[model].generations]
        clients = {CLIENT} | {s.schema.security.client for s in suites
                              if s.schema.security is not None
                              and s.schema.security.client not in s.schema.columns}
        # _error is checked too: a hashed message still counts as an error
        known = {name for s in suites for name in s.schema.columns} | {TS, LATENCY} | clients
        # a column whose very name is personal data cannot be kept under that name
        unknown = [n for n in table.column_names if n not in known]
        named = [n for n, bad in zip(unknown, personal_strings(unknown), strict=True) if bad]
        if named:
            table = table.drop_columns(named)
            self.hub.counters[f"personal_columns_dropped:{model}"] += len(named)
        table, done = scrub_unknown(table, known, self.key())
        for name, action in done.items():
            self.hub.counters[f"personal_columns_{action}:{model}"] += 1
            self._tell(model, name, action)
        if not self.show_clients:
            for column in clients & set(table.column_names):
                table = pseudonymise_clients(table, column, self.key())
        return table

    def _tell(self, model: str, column: str, action: str) -> None:
        """Say once which column was scrubbed (its name, never its values)."""
        with self._lock:
            if (model, column) in self._logged or len(self._logged) >= LOGGED:
                return
            self._logged.add((model, column))
        log.warning("model %s: column %r is not in the suite and looks like personal data: "
                    "%s before storage", model, column, action)
