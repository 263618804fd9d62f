"""Fixtures shared by every test folder: the ACS employment data and a suite fitted on it
once per session, and an empty store of each backend (SQLite, PostgreSQL).

Helpers that are not fixtures live in ``tests/helpers.py``, ``tests/server_helpers.py`` and
``tests/sdk_helpers.py``; no test module imports from another.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import watchkeeper as wk
from tests.helpers import ACS

PG_URL = os.environ.get(
    "WATCHKEEPER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_schemas = itertools.count()


# -- the ACS employment data --------------------------------------------------------------------
@pytest.fixture(scope="session")
def acs_reference_path() -> Path:
    return ACS / "employment_MA_reference.pq"


@pytest.fixture(scope="session")
def acs_analysis_path() -> Path:
    return ACS / "employment_MA_analysis.pq"


@pytest.fixture(scope="session")
def acs_suite(acs_reference_path: Path) -> wk.Suite:
    """``wk.init`` of the whole ACS reference with target ``employed``, fitted once per
    session (about 20 s). Shared: a test must not change it (copy it via ``to_dict``)."""
    return wk.init(acs_reference_path, target="employed")


@pytest.fixture(scope="session")
def acs_analysis(acs_analysis_path: Path) -> pa.Table:
    """The ACS analysis rows (2016–2018), without labels."""
    return pq.read_table(acs_analysis_path)


@pytest.fixture(scope="session")
def acs_labels() -> pa.Table:
    """The labels of :func:`acs_analysis`: columns ``id`` and ``employed``."""
    return pq.read_table(ACS / "employment_MA_analysis_target.pq")


# -- stores -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres() -> Iterator[tuple[sa.Engine, str]]:
    """An engine on the test database and a schema-name prefix unique to this session."""
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as e:
        engine.dispose()
        reason = str(e.orig).strip().splitlines()[0]
        pytest.fail(
            f"PostgreSQL at {PG_URL} is not reachable ({reason}): start it "
            "(pg_ctlcluster <version> main start) or set WATCHKEEPER_TEST_POSTGRES",
            pytrace=False,
        )
    prefix = f"wk_test_{secrets.token_hex(4)}"
    yield engine, prefix
    with engine.begin() as conn:  # anything a failed test left behind
        names = conn.scalars(
            sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": f"{prefix}%"}
        ).all()
        for name in names:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """URL of an empty store of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'watchkeeper.db'}"
        return
    engine, prefix = request.getfixturevalue("postgres")
    schema = f"{prefix}_{next(_schemas)}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
