from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ACS = REPO / "data" / "acs_employment_ma"


@pytest.fixture(scope="session")
def acs_reference_path() -> Path:
    return ACS / "employment_MA_reference.pq"


@pytest.fixture(scope="session")
def acs_analysis_path() -> Path:
    return ACS / "employment_MA_analysis.pq"
