"""Storage for online monitoring: suite versions, the event log, windows, findings
and each model's alert state.

SQLAlchemy Core on SQLite (a local file, the default) or PostgreSQL (by URL).
"""

from watchkeeper.store.migrations import LATEST as SCHEMA_VERSION
from watchkeeper.store.records import Event, StoreError, SuiteVersion, WindowRecord
from watchkeeper.store.store import Store

__all__ = ["SCHEMA_VERSION", "Event", "Store", "StoreError", "SuiteVersion", "WindowRecord"]
