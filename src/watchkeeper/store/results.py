"""What the fold makes of the event log: windows (and the watermark), findings, each
model's alert state, and the prediction records that late labels are joined to."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from watchkeeper.errors import Conflict, StoreError
from watchkeeper.monitors.base import Severity
from watchkeeper.store import label_sql
from watchkeeper.store import tables as db
from watchkeeper.store.base import StoreBase, between, check_choice, check_model_name, of_model
from watchkeeper.store.records import LabelRecords, Lease, WindowRecord

STATES = ("open", "closed")
FINDING_KEYS = (
    "monitor", "family", "column", "value", "threshold", "severity", "message", "evidence",
    "window", "metric", "segment",
)  # fmt: skip
_REQUIRED = {"monitor", "family", "value", "threshold", "severity", "message"}
#: Bytes a prediction record or a joined label takes on the wire, about (see Store._shed)
RECORD_BYTES = 64


class ResultStore(StoreBase):
    """Windows, findings, alert state and prediction records, per model; the fold's writes
    may be fenced by its lease."""

    def save_windows(
        self,
        model: str,
        windows: list[WindowRecord],
        watermark: int | None = None,
        *,
        lease: Lease | None = None,
        labels: LabelRecords | None = None,
    ) -> None:
        """Insert or replace windows by (model, start) and, in the same transaction, set the
        model's watermark (seq of the last event folded in) when one is given and write the
        changes to its prediction records for late labels (``labels``); fenced by ``lease``
        when given (LeaseLost: nothing saved)."""
        check_model_name(model)
        now = datetime.now(UTC)
        rows = [_window_row(model, w, now) for w in windows]
        with self._transaction(write=True, lease=lease) as conn:
            self._ensure_model(conn, model)
            if watermark is not None:
                conn.execute(
                    sa.update(db.models)
                    .where(db.models.c.name == model)
                    .values(watermark=watermark)
                )
            if rows:
                insert = self._insert(db.windows)
                keys = ("end", "suite_version", "rows", "state", "profile", "metrics")
                upsert = insert.on_conflict_do_update(
                    index_elements=[db.windows.c.model, db.windows.c.start],
                    set_={k: insert.excluded[k] for k in (*keys, "updated_at")},
                )
                conn.execute(upsert, rows)
            if labels:
                self._shed(conn, RECORD_BYTES * label_sql.write(conn, self._dialect, model,
                                                                labels))

    def load_windows(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        state: str | None = None,
        last: int | None = None,
        profiles: bool = True,
    ) -> list[WindowRecord]:
        """A model's windows by start (``since`` ≤ start < ``until``), oldest first; only
        the ``last`` latest ones if given; ``profiles=False`` leaves each profile empty
        (``{}``) instead of reading it, for views that need the metrics only."""
        columns = db.windows.c if profiles else [c for c in db.windows.c if c.name != "profile"]
        query = sa.select(*columns).where(
            of_model(db.windows, model), *between(db.windows.c.start, since, until)
        )
        if state is not None:
            check_choice("state", state, STATES)
            query = query.where(db.windows.c.state == state)
        if last is not None:
            query = query.order_by(db.windows.c.start.desc()).limit(max(0, last))
        else:
            query = query.order_by(db.windows.c.start)
        with self._transaction() as conn:
            rows = conn.execute(query).mappings().all()
        if last is not None:
            rows = rows[::-1]
        return [WindowRecord(**{"profile": {}, **r}) for r in rows]

    def watermark(self, model: str) -> int:
        """Seq of the last event folded into the model's windows; 0 if none."""
        query = sa.select(db.models.c.watermark).where(db.models.c.name == model)
        with self._transaction() as conn:
            return int(conn.scalar(query) or 0)

    def save_findings(self, model: str, window_start: datetime, findings: list[dict], *,
                      lease: Lease | None = None) -> None:
        """Replace the findings of one window with these (dicts as Finding.to_dict gives);
        fenced by ``lease`` when given."""
        check_model_name(model)
        rows = [_finding_row(model, window_start, f) for f in findings]
        with self._transaction(write=True, lease=lease) as conn:
            self._ensure_model(conn, model)
            conn.execute(
                sa.delete(db.findings).where(
                    of_model(db.findings, model), db.findings.c.window_start == window_start
                )
            )
            if rows:
                conn.execute(sa.insert(db.findings), rows)

    def findings(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        min_severity: str | None = None,
    ) -> list[dict]:
        """A model's findings by window start (``since`` ≤ start < ``until``), each dict as
        Finding.to_dict gives plus "window_start"; ``min_severity`` keeps that and worse."""
        query = sa.select(db.findings).where(
            of_model(db.findings, model), *between(db.findings.c.window_start, since, until)
        )
        if min_severity is not None:
            query = query.where(db.findings.c.severity_rank >= _severity_rank(min_severity))
        query = query.order_by(db.findings.c.window_start, db.findings.c.id)
        with self._transaction() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            {**{k: r[k] for k in FINDING_KEYS}, "window_start": r["window_start"]} for r in rows
        ]

    def save_alert_state(
        self,
        model: str,
        state: dict[str, Any],
        revision: int | None = None,
        lease: Lease | None = None,
    ) -> int:
        """Replace a model's alert state (``AlertManager.to_dict()``: alerts, incidents,
        acknowledgements, silences, what was notified) with this one; returns its new
        revision. With ``revision``, only if the saved state still has that revision (0:
        there is none yet), else Conflict and nothing changes; fenced by ``lease`` if given."""
        check_model_name(model)
        if not isinstance(state, dict):
            raise StoreError(f"alert state must be a dict, got {type(state).__name__}")
        table = db.alert_states
        row = {"model": model, "state": state, "updated_at": datetime.now(UTC)}
        with self._transaction(write=True, lease=lease) as conn:
            self._ensure_model(conn, model)
            insert = self._insert(table)
            if revision is None:
                conn.execute(
                    insert.values(**row, revision=1).on_conflict_do_update(
                        index_elements=[table.c.model],
                        set_={"state": insert.excluded.state,
                              "updated_at": insert.excluded.updated_at,
                              "revision": table.c.revision + 1},
                    )
                )
                return int(conn.execute(sa.select(table.c.revision).where(of_model(table, model)))
                           .scalar_one())
            changed = conn.execute(
                sa.update(table)
                .where(of_model(table, model), table.c.revision == revision)
                .values(state=state, updated_at=row["updated_at"], revision=revision + 1)
            ).rowcount
            if not changed and revision == 0:  # (rowcount of an INSERT is not reliable)
                changed = conn.execute(
                    insert.values(**row, revision=1).on_conflict_do_nothing()
                    .returning(table.c.revision)).first() is not None
            if not changed:
                raise Conflict(f"the alert state of model {model!r} changed since revision "
                               f"{revision}: not saved")
            return revision + 1

    def alert_state(self, model: str) -> dict[str, Any] | None:
        """A model's last saved alert state, or None if it has none."""
        return self.load_alert_state(model)[0]

    def load_alert_state(self, model: str) -> tuple[dict[str, Any] | None, int]:
        """A model's last saved alert state (or None) and its revision (0 if none)."""
        table = db.alert_states
        query = sa.select(table.c.state, table.c.revision).where(of_model(table, model))
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return (None, 0) if row is None else (row[0], int(row[1]))

    def alert_revisions(self) -> dict[str, int]:
        """The revision of every model's saved alert state (one small query, to tell
        whether an in-memory copy is still current)."""
        query = sa.select(db.alert_states.c.model, db.alert_states.c.revision)
        with self._transaction() as conn:
            return {m: int(r) for m, r in conn.execute(query)}

    def label_records(self, model: str, version: int, ids: Sequence[str]
                      ) -> list[tuple[str, float, bytes, float | None]]:
        """The model's prediction records of ``ids`` profiled by suite ``version``: (id,
        window start, packed codes, label so far). PostgreSQL: one join with the ids as an
        array per many ids; SQLite: one query per some thousands (:mod:`label_sql`)."""
        with self._transaction() as conn:
            return label_sql.find(conn, self._dialect, model, version, ids)

    def label_record_count(self, model: str) -> int:
        """How many prediction records the model keeps for late labels."""
        query = sa.select(sa.func.count()).select_from(db.label_records).where(
            of_model(db.label_records, model))
        with self._transaction() as conn:
            return int(conn.scalar(query) or 0)

    def expire_label_records(self, model: str, before: float, *,
                             lease: Lease | None = None) -> int:
        """Retention: forget the model's prediction records of windows that start before
        ``before`` (seconds since 1970); returns how many. Fenced by ``lease`` when given."""
        table = db.label_records
        query = sa.delete(table).where(of_model(table, model), table.c.start < before)
        with self._transaction(write=True, lease=lease) as conn:
            return int(conn.execute(query).rowcount)

    def label_backfills(self) -> dict[str, tuple[int, int]]:
        """Models whose prediction records are still to be rebuilt from their event log
        (batches folded before the store kept them): model → (last seq to rebuild, seq
        rebuilt so far)."""
        table = db.label_backfill
        with self._transaction() as conn:
            return {m: (int(t), int(d)) for m, t, d in conn.execute(
                sa.select(table.c.model, table.c.through, table.c.done))}

    def label_backfill_progress(self) -> dict[str, tuple[int, int, int]]:
        """Each model's backfill of prediction records under way (see
        :meth:`label_backfills`): model → (last seq to rebuild, seq rebuilt so far, batches
        of the event log still to read for it)."""
        table, e = db.label_backfill, db.events
        left = sa.and_(e.c.model == table.c.model, e.c.seq > table.c.done,
                       e.c.seq <= table.c.through, e.c.quarantined_at.is_(None))
        query = (sa.select(table.c.model, table.c.through, table.c.done, sa.func.count(e.c.seq))
                 .select_from(table.outerjoin(e, left))
                 .group_by(table.c.model, table.c.through, table.c.done))
        with self._transaction() as conn:
            return {m: (int(t), int(d), int(n)) for m, t, d, n in conn.execute(query)}

    def backfill_label_records(self, model: str, records: LabelRecords, done: int, *,
                               lease: Lease | None = None) -> None:
        """Write prediction records rebuilt from the model's batches up to seq ``done``, and
        that progress, in one transaction (fenced by ``lease`` when given); the model's
        backfill row goes once ``done`` reaches its last seq."""
        table = db.label_backfill
        with self._transaction(write=True, lease=lease) as conn:
            if records:
                self._shed(conn, RECORD_BYTES * label_sql.write(conn, self._dialect, model,
                                                                records))
            conn.execute(sa.update(table).where(of_model(table, model)).values(done=done))
            conn.execute(sa.delete(table).where(of_model(table, model), table.c.through <= done))


def _severity_rank(severity: str) -> int:
    try:
        return Severity(severity).rank
    except ValueError:
        choices = ", ".join(s.value for s in Severity)
        raise StoreError(f"severity must be one of {choices}; got {severity!r}") from None


def _window_row(model: str, w: WindowRecord, now: datetime) -> dict[str, Any]:
    if w.model != model:
        raise StoreError(f"window of model {w.model!r} saved under model {model!r}")
    check_choice("state", w.state, STATES)
    return {
        "model": model,
        "start": w.start,
        "end": w.end,
        "suite_version": w.suite_version,
        "rows": w.rows,
        "state": w.state,
        "profile": w.profile,
        "metrics": w.metrics,
        "updated_at": now,
    }


def _finding_row(model: str, window_start: datetime, f: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(f) - set(FINDING_KEYS) - {"window_start"})
    missing = sorted(_REQUIRED - set(f))
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
        raise StoreError(f"a finding must be a dict as Finding.to_dict() gives: {problem}")
    row: dict[str, Any] = {k: f.get(k) for k in FINDING_KEYS}
    row.update(
        model=model,
        window_start=window_start,
        value=_number(f["value"]),
        threshold=_number(f["threshold"]),
        severity_rank=_severity_rank(f["severity"]),
        evidence=f.get("evidence") or {},
    )
    return row


def _number(value: Any) -> float | None:
    """A finding's value or threshold: ±inf kept, NaN stored as null (NULL in SQL)."""
    return None if value is None or math.isnan(value) else float(value)

