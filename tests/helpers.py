"""Shared by tests of several stages: where the data sets are, the CLI as a user runs it,
fairness tables with known rates, a stored window record."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

import watchkeeper as wk
from watchkeeper.store import WindowRecord
from watchkeeper.suite import file as suitefile

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
ACS = DATA / "acs_employment_ma"
ADULT = DATA / "adult"
#: tests/data: suite files and inputs written for the tests
TEST_DATA = Path(__file__).resolve().parent / "data"
WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true"}
    return subprocess.run([str(WATCHKEEPER), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def two_groups(rate_a: float, rate_b: float = 0.5, n: int = 20_000) -> pa.Table:
    """Groups a and b of n/2 rows each, with exactly these selection rates."""
    group = np.where(np.arange(n) < n // 2, "a", "b")
    step = np.arange(n) % (n // 2) % 200
    pred = np.where(group == "a", step < 200 * rate_a, step < 200 * rate_b).astype(int)
    return pa.table({"id": np.arange(n), "gender": group, "target": (step % 2).astype(int),
                     "prediction": pred})


def policy_suite(reference: pa.Table, min_di_ratio: float) -> wk.Suite:
    """A suite whose fairness monitor's ``min_di_ratio`` is edited in its suite file."""
    document = wk.init(reference).to_dict()
    monitor = next(m for m in document["monitors"] if m["type"] == "fairness")
    monitor["min_di_ratio"] = min_di_ratio
    return wk.Suite.from_dict(suitefile.parse(suitefile.dump(document), "suite"))


def window(start: datetime, *, rows: int = 10, state: str = "closed", **profile) -> WindowRecord:
    return WindowRecord(
        model="m",
        start=start,
        end=start + timedelta(hours=1),
        suite_version=1,
        rows=rows,
        state=state,
        profile={"rows": rows, **profile},
        metrics={"accuracy": 0.9},
    )
