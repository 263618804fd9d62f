"""Suite versions per model: add, list, activate."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from watchkeeper.errors import RecordNotFound, StoreError
from watchkeeper.store import tables as db
from watchkeeper.store.base import StoreBase, check_model_name, of_model
from watchkeeper.store.records import SuiteVersion


class SuiteStore(StoreBase):
    """Each model's suite files, by version, one of them active."""

    def add_suite(
        self,
        model: str,
        text: str,
        *,
        created_by: str | None = None,
        note: str | None = None,
        activate: bool = True,
    ) -> SuiteVersion:
        """Store a new version (the model's latest + 1) of a model's suite file."""
        check_model_name(model)
        if not isinstance(text, str):
            raise StoreError(f"suite text must be str, got {type(text).__name__}")
        row: dict[str, Any] = {
            "model": model,
            "hash": hashlib.sha256(text.encode()).hexdigest(),
            "created_at": datetime.now(UTC),
            "created_by": created_by,
            "note": note,
            "active": bool(activate),
            "text": text,
        }
        with self._transaction(write=True) as conn:
            self._lock_model(conn, model)
            latest = conn.scalar(
                sa.select(sa.func.max(db.suites.c.version)).where(of_model(db.suites, model))
            )
            row["version"] = (latest or 0) + 1
            if activate:
                self._deactivate(conn, model)
            conn.execute(sa.insert(db.suites).values(**row))
        return SuiteVersion(**row)

    def suite_versions(self, model: str) -> list[SuiteVersion]:
        """Every version of a model's suite, oldest first."""
        query = sa.select(db.suites).where(of_model(db.suites, model)).order_by(db.suites.c.version)
        with self._transaction() as conn:
            return [SuiteVersion(**r) for r in conn.execute(query).mappings()]

    def suite_version(self, model: str, version: int) -> SuiteVersion:
        """One version of a model's suite; RecordNotFound if there is none."""
        with self._transaction() as conn:
            return self._suite(conn, model, version)

    def active_suite(self, model: str) -> SuiteVersion | None:
        """The version in force for a model, or None."""
        query = sa.select(db.suites).where(of_model(db.suites, model), db.suites.c.active.is_(True))
        with self._transaction() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else SuiteVersion(**row)

    def activate(self, model: str, version: int) -> SuiteVersion:
        """Make one existing version the model's active suite (and no other)."""
        with self._transaction(write=True) as conn:
            self._lock_model(conn, model)
            self._suite(conn, model, version)
            self._deactivate(conn, model)
            conn.execute(
                sa.update(db.suites)
                .where(of_model(db.suites, model), db.suites.c.version == version)
                .values(active=True)
            )
            return self._suite(conn, model, version)

    def models(self) -> list[str]:
        """Names of every model the store knows, sorted."""
        with self._transaction() as conn:
            return list(conn.scalars(sa.select(db.models.c.name).order_by(db.models.c.name)))

    @staticmethod
    def _deactivate(conn: Connection, model: str) -> None:
        conn.execute(
            sa.update(db.suites)
            .where(of_model(db.suites, model), db.suites.c.active.is_(True))
            .values(active=False)
        )

    @staticmethod
    def _suite(conn: Connection, model: str, version: int) -> SuiteVersion:
        query = sa.select(db.suites).where(of_model(db.suites, model),
                                           db.suites.c.version == version)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise RecordNotFound(f"model {model!r} has no suite version {version!r}")
        return SuiteVersion(**row)

