"""Scenario replay on ACS data with incidents injected at known windows (issue #5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

import watchkeeper as wk
from tests.helpers import ACS
from watchkeeper.online.replay import replay

ROWS = 10_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
#: injected scenario → (windows, expected diagnosis, cause that must rank first)
SCENARIOS = {
    "upstream break": (range(4, 8), "upstream data break", "SCHL"),
    "covariate drift": (range(11, 15), "covariate drift", "AGEP"),
    "concept drift": (range(18, 22), "concept drift", None),
    "fairness": (range(25, 28), "fairness regression", "SEX=1 & RAC1P=2"),
    "latency": (range(32, 35), "capacity/latency", "latency_p99"),
    "abuse": (range(37, 39), "abuse", "client=flooder"),
}
WINDOWS = 42


def service_columns(n: int, rng: np.random.Generator, latency: float = 20.0) -> dict:
    return {"_latency_ms": rng.lognormal(np.log(latency), 0.25, n),
            "_client": rng.choice([f"user{i:02d}" for i in range(50)], n)}


@pytest.fixture(scope="module")
def acs() -> tuple[pd.DataFrame, pd.DataFrame]:
    reference = pd.read_parquet(ACS / "employment_MA_reference.pq")
    analysis = pd.read_parquet(ACS / "employment_MA_analysis.pq")
    labels = pd.read_parquet(ACS / "employment_MA_analysis_target.pq")
    analysis = analysis.merge(labels, on="id")
    return reference, analysis[analysis["year"] == 2016]


def window(i: int, pool: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    injected = next((name for name, (ws, _, _) in SCENARIOS.items() if i in ws), None)
    if injected == "covariate drift":  # the population shifts towards older people
        old = pool[pool["AGEP"] >= 55]
        rows = pd.concat([old.sample(int(ROWS * 0.7), replace=True, random_state=rng),
                          pool.sample(ROWS - int(ROWS * 0.7), replace=True, random_state=rng)])
    else:
        rows = pool.sample(ROWS, replace=True, random_state=rng)
    rows = rows.reset_index(drop=True).assign(**service_columns(ROWS, rng))
    if injected == "upstream break":
        rows.loc[rng.random(ROWS) < 0.8, "SCHL"] = None
    elif injected == "concept drift":  # labels change, inputs don't
        flip = rng.random(ROWS) < 0.3
        rows.loc[flip, "employed"] = 1 - rows.loc[flip, "employed"]
    elif injected == "fairness":
        group = (rows["SEX"] == "1") & (rows["RAC1P"] == "2")
        rows.loc[group, "prediction"] = 1 - rows.loc[group, "prediction"]
    elif injected == "latency":
        rows["_latency_ms"] *= 4
    elif injected == "abuse":
        burst = pd.concat([pool.sample(3, random_state=rng)] * 150, ignore_index=True)
        burst = burst.assign(**service_columns(len(burst), rng))
        burst["_client"] = "flooder"
        rows = pd.concat([rows, burst], ignore_index=True)
    return rows


@pytest.fixture(scope="module")
def run(acs):
    reference, pool = acs
    rng = np.random.default_rng(0)
    reference = reference.assign(**service_columns(len(reference), rng))
    suite = wk.init(reference, target="employed")
    windows = [(f"day {i:02d}", T0 + timedelta(days=i), window(i, pool, rng))
               for i in range(WINDOWS)]
    return replay(suite, windows)


def opened_at(incident) -> int:
    return int(incident.opened.split()[-1])


def test_each_injection_gives_one_incident_with_the_right_diagnosis(run) -> None:
    advice = run.advice()
    by_scenario = {}
    for incident in run.manager.incidents.values():
        start = opened_at(incident)
        scenario = next((name for name, (ws, _, _) in SCENARIOS.items()
                         if ws.start <= start <= ws.start + 2), None)
        assert scenario is not None, (
            f"incident in a clean stretch at {incident.opened}: "
            f"{[a.fingerprint for a in incident.alerts.values()]} {advice[incident.id]}")
        assert scenario not in by_scenario, f"two incidents for {scenario}"
        by_scenario[scenario] = incident
    assert set(by_scenario) == set(SCENARIOS)
    for name, incident in by_scenario.items():
        _, diagnosis, first = SCENARIOS[name]
        a = advice[incident.id]
        print(f"{name}: opened {incident.opened}, {a.diagnosis}; first cause "
              f"{a.causes[0].name if a.causes else None}; {a.actions[:1]}")
        assert a.diagnosis == diagnosis, (name, a.to_text())
        if first is not None:
            assert a.causes[0].name == first, (name, a.to_text())
        assert a.actions


def test_notifications_are_few(run) -> None:
    per_incident: dict[str, list[str]] = {}
    for n in run.notifications:
        per_incident.setdefault(n.incident, []).append(n.kind)
    for kinds in per_incident.values():
        assert kinds.count("open") == 1 and kinds.count("resolve") <= 1
    print(f"incident notifications: {len(run.notifications)}; naive per-finding "
          f"notifications: {run.naive_notifications}")
    assert len(run.notifications) < run.naive_notifications / 5
