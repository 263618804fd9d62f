"""Security monitoring (issue #6): abusive clients, OOD bursts, personal data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.helpers import REPO
from tests.server_helpers import READ, WATCHKEEPER, Server, post, request, wait_for
from watchkeeper.report import render

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income"]


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return pd.read_csv(REPO / "data" / "adult" / "adult.data", names=COLUMNS,
                       skipinitialspace=True, na_values="?").drop(columns=["income"])


@pytest.fixture(scope="module")
def reference(adult: pd.DataFrame) -> pd.DataFrame:
    return adult.sample(15_000, random_state=0)


@pytest.fixture(scope="module")
def suite(reference: pd.DataFrame) -> wk.Suite:
    return wk.init(reference)


def normal_clients(pool: pd.DataFrame, seed: int, clients: int = 50) -> list[pd.DataFrame]:
    """Each normal client sends real rows (people it scores), 40–120 per window."""
    rng = np.random.default_rng(seed)
    return [pool.sample(int(rng.integers(40, 120)), random_state=int(rng.integers(2**31)))
            .assign(_client=f"user{c:02d}") for c in range(clients)]


def extraction_sweep(reference: pd.DataFrame, seed: int, n: int = 300) -> pd.DataFrame:
    """Inputs spread uniformly over every feature's range, as a model-stealing sweep."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        c: rng.uniform(reference[c].min(), reference[c].max(), n)
        if reference[c].dtype.kind in "fi" else rng.choice(reference[c].dropna().unique(), n)
        for c in reference.columns}).assign(_client="extractor")


def near_duplicate_flood(pool: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    burst = pd.concat([pool.sample(3, random_state=seed)] * 100, ignore_index=True)
    burst["hours-per-week"] += rng.normal(0, 1e-4, len(burst))  # tiny jitter: still repeats
    return burst.assign(_client="flooder")


def client_alerts(result: wk.CheckResult) -> set[str]:
    return {f.segment for f in result.alerts() if f.family == "security" and f.segment}


def test_attackers_are_named_within_two_windows(suite, reference, adult) -> None:
    pool = adult.drop(reference.index)
    flagged: set[str] = set()
    for w in range(2):
        window = pd.concat([*normal_clients(pool, w), extraction_sweep(reference, w),
                            near_duplicate_flood(pool, w)], ignore_index=True)
        flagged |= client_alerts(suite.check(window))
    assert flagged == {"client=extractor", "client=flooder"}


@pytest.mark.slow
def test_no_normal_client_is_flagged_in_50_clean_windows(suite, reference, adult) -> None:
    pool = adult.drop(reference.index)
    flagged = set()
    for w in range(50):
        flagged |= client_alerts(suite.check(pd.concat(normal_clients(pool, 1_000 + w),
                                                       ignore_index=True)))
    assert flagged == set()


def test_an_ood_burst_is_detected_and_its_features_named(suite, reference, adult) -> None:
    pool = adult.drop(reference.index)
    clean = pool.sample(4_000, random_state=7)
    assert [f for f in suite.check(clean).alerts() if f.monitor == "ood_share"] == []
    shifted = pool.sample(200, random_state=8).copy()  # 5% of rows from a shifted population
    shifted["age"] += 60
    shifted["hours-per-week"] += 60
    burst = suite.check(pd.concat([clean.iloc[:3_800], shifted], ignore_index=True))
    ood = [f for f in burst.alerts() if f.monitor == "ood_share"]
    assert len(ood) == 1 and ood[0].value > 0.04  # most of the 5% burst is out of range
    assert set(ood[0].evidence["top_features"].split(", ")[:2]) == {"age", "hours-per-week"}


def test_client_summaries_stay_bounded(suite, adult) -> None:
    many = adult.sample(6_000, random_state=3).assign(
        _client=[f"c{i}" for i in range(6_000)])
    profile = suite.profile(many)
    assert len(profile.clients) == 1_000 and profile.clients["(other)"].rows == 5_001
    assert sum(s.rows for s in profile.clients.values()) == 6_000


EMAILS = [f"person{i}@mail.example" for i in range(300)]
PHONES = [f"+44 20 7946 {i:04d}" for i in range(300)]


def personal(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"email": EMAILS[:n], "phone": PHONES[:n], "x": rng.normal(size=n),
                     "prediction": (rng.random(n) < 0.5).astype(int)})


def test_personal_data_never_reaches_storage_logs_or_output(tmp_path: Path) -> None:
    suite = wk.init(personal(300, 0))
    assert suite.schema.pii == {"email": "hash", "phone": "hash"}
    suite.save(tmp_path / "suite.yaml")
    server = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
                    f"m={tmp_path / 'suite.yaml'}", "--window", "1s", "--grace", "1s").start()
    try:
        rows = personal(300, 1).to_pylist()
        assert post(server, "/v1/models/m/events", json.dumps(rows).encode())[0] == 200
        wait_for(lambda: request(server.url + "/v1/models/m/windows", token=READ)[1]
                 ["windows"])
        answers = [request(server.url + p, token=READ)[1] for p in
                   ("/v1/models/m/windows", "/v1/models/m/findings", "/metrics")]
    finally:
        server.stop()
    import pyarrow.csv as pa_csv

    pa_csv.write_csv(personal(300, 2), tmp_path / "batch.csv")
    check = subprocess.run([str(WATCHKEEPER), "check", "batch.csv", "--suite", "suite.yaml",
                            "--format", "json", "--report", "report.html"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    places = {p.name: p.read_bytes() for p in tmp_path.iterdir()
              if p.is_file() and p.name != "batch.csv"}  # the input itself has them
    places["answers"] = json.dumps(answers).encode()
    places["check"] = (check.stdout + check.stderr).encode()
    places["report of the server's windows"] = render(
        {"suite": "m", "windows": answers[0]["windows"]}).encode()
    assert {"wk.db", "suite.yaml", "report.html"} <= set(places)
    for value in [*EMAILS, *PHONES, "mail.example"]:
        for name, content in places.items():
            assert value.encode() not in content, f"{value} found in {name}"
