"""Storage for online monitoring: suite versions, the event log, windows, findings,
each model's alert state and the fold lease.

SQLAlchemy Core on SQLite (a local file, the default) or PostgreSQL (by URL).
"""

from watchkeeper.store.migrations import LATEST as SCHEMA_VERSION
from watchkeeper.store.records import (
    Appended,
    Event,
    LabelRecords,
    Lease,
    SuiteVersion,
    WindowRecord,
)
from watchkeeper.store.store import Store

__all__ = ["SCHEMA_VERSION", "Appended", "Event", "LabelRecords", "Lease", "Store",
           "SuiteVersion", "WindowRecord"]
