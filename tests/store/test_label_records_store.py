"""The store's prediction records for late labels, on both backends: lookups and label
writes are set-based on PostgreSQL (one join with an array of ids per statement) and must
give exactly what one query and one UPDATE per id gave."""

from __future__ import annotations

import pytest

from watchkeeper.errors import StoreError
from watchkeeper.store import Store, label_sql
from watchkeeper.store.records import LabelRecords


def _record(i: int, version: int = 1, label: float | None = None) -> dict:
    return {"id": str(i), "start": float(i // 10 * 60), "version": version,
            "codes": bytes([i % 256, 7]), "label": label}


@pytest.mark.parametrize("chunk", [3, 50_000])
def test_lookups_and_labels_match_one_query_per_id(store_url: str, chunk: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(label_sql, "PG_CHUNK", chunk)  # several statements, or one
    monkeypatch.setattr(label_sql, "LOOKUP_CHUNK", chunk)
    with Store(store_url) as store:
        rows = [_record(i) for i in range(40)] + [_record(i, version=2) for i in range(40, 50)]
        store.save_windows("m", [], labels=LabelRecords(rows=[iter(rows)]))
        store.save_windows("other", [], labels=LabelRecords(rows=[iter([_record(3)])]))
        # ids asked twice, unknown ids, another version's ids: each record once, or not
        asked = ["7", "3", "7", "999", "45", "12", "0"]
        found = store.label_records("m", 1, asked)
        assert sorted(found) == [(str(i), float(i // 10 * 60), bytes([i, 7]), None)
                                 for i in (0, 12, 3, 7)]
        assert [r[0] for r in store.label_records("m", 2, asked)] == ["45"]
        assert store.label_records("m", 1, []) == []
        # labels: the last of an id wins; a missing label is NULL; unknown ids change
        # nothing; another model's record of the same id is left alone
        labels = [("3", 1.0), ("7", 0.0), ("3", 0.0), ("12", None), ("999", 1.0), ("45", 2.5)]
        store.save_windows("m", [], labels=LabelRecords(labels=labels))
        got = {r[0]: r[3] for r in store.label_records("m", 1, [str(i) for i in range(50)])}
        assert got == {**{str(i): None for i in range(40)}, "3": 0.0, "7": 0.0}
        assert store.label_records("m", 2, ["45"])[0][3] == 2.5
        assert store.label_records("other", 1, ["3"])[0][3] is None
        assert store.label_record_count("m") == 50
        # a record logged again replaces its label too
        store.save_windows("m", [], labels=LabelRecords(rows=[iter([_record(7, label=1.0)])]))
        assert store.label_records("m", 1, ["7"])[0][3] == 1.0


def test_a_record_the_database_refuses_is_a_store_error(store_url: str) -> None:
    """Records are written on the driver's own cursor (PostgreSQL: COPY; SQLite: plain
    tuples): what the database refuses there (PostgreSQL: a NUL in an id; SQLite: a value
    it cannot bind) is a StoreError, as for every other write, so the fold treats it as a
    storage fault and not as a bad batch; nothing of it is kept."""
    with Store(store_url) as store:
        bad = ({**_record(1), "id": "a\x00b"} if store_url.startswith("postgresql")
               else {**_record(1), "codes": object()})
        with pytest.raises(StoreError):
            store.save_windows("m", [], labels=LabelRecords(rows=[iter([_record(0), bad])]))
        assert store.label_record_count("m") == 0
