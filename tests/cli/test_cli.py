"""The command line, run as a user runs it: the installed entry point in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import run
from watchkeeper.io.datasets import DRIFTED_COLUMNS, synthetic_drift_pair

WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    reference, current = synthetic_drift_pair(20_000, seed=11)
    pq.write_table(reference, d / "ref.parquet")
    pq.write_table(current, d / "cur.parquet")
    same, _ = synthetic_drift_pair(20_000, seed=12, drift=False)
    pq.write_table(same, d / "same.parquet")
    result = run("init", "ref.parquet", cwd=d)
    assert result.returncode == 0, result.stderr
    assert "wrote watchkeeper.yaml" in result.stdout
    return d


def test_check_prints_a_table_of_findings(workdir: Path) -> None:
    result = run("check", "cur.parquet", cwd=workdir)
    assert result.returncode == 0, result.stderr
    for column in DRIFTED_COLUMNS:
        assert re.search(rf"feature_drift +{column} ", result.stdout)
    assert "1 window(s), 4 finding(s)" in result.stdout


def test_check_json_has_the_shared_shape(workdir: Path) -> None:
    result = run("check", "cur.parquet", "--window-rows", "5000", "--format", "json",
                 cwd=workdir)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["suite"].endswith("watchkeeper.yaml")
    assert [w["rows"] for w in doc["windows"]] == [5000] * 4
    finding = doc["windows"][0]["findings"][0]
    assert set(finding) >= {"monitor", "family", "column", "value", "threshold", "severity",
                            "evidence", "window"}
    assert finding["family"] == "drift" and finding["severity"] in ("warning", "critical")
    assert {f["column"] for f in doc["windows"][2]["findings"]
            if f["monitor"] == "feature_drift"} == set(DRIFTED_COLUMNS)


def test_fail_on_sets_the_exit_code(workdir: Path) -> None:
    assert run("check", "cur.parquet", "--fail-on", "critical", cwd=workdir).returncode == 1
    assert run("check", "cur.parquet", "--fail-on", "warning", cwd=workdir).returncode == 1
    assert run("check", "same.parquet", "--fail-on", "warning", cwd=workdir).returncode == 0


def test_the_program_ends_with_its_output_its_exit_code_and_exit_handlers(
        workdir: Path, tmp_path: Path) -> None:
    """Run as a program, the CLI ends its process without Python's teardown
    (``cli.common._end_process``): what it printed, its exit code and the exit handlers
    (here one of the host program's, which writes a file) are all kept."""
    marker = tmp_path / "ran"
    program = ("import atexit, pathlib; from watchkeeper.cli import main; "
               f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes'); main()")
    result = subprocess.run(
        [sys.executable, "-c", program, "check", "cur.parquet", "--window-rows", "500",
         "--format", "json", "--fail-on", "warning"], cwd=workdir, capture_output=True,
        text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    assert len(json.loads(result.stdout)["windows"]) == 40  # every byte through the pipe
    assert marker.read_text() == "yes"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("check", "missing.parquet"), "missing.parquet: no such file"),
        (("check", "cur.parquet", "--suite", "nope.yaml"), "nope.yaml: no such file"),
        (("check", "notes.txt"), "unknown file type"),
        (("check", "broken.parquet"), "cannot read as parquet"),
        (("check", "cur.parquet", "--window", "1d"), "need a timestamp column"),
        (("check", "cur.parquet", "--window", "soon"), "expected a positive length"),
        (("check", "cur.parquet", "--window-by", "colour"), "'colour' is not in the data"),
        (("init", "ref.parquet"), "exists; pass --force"),
        (("init", "ref.parquet", "-o", "x.yaml", "--target", "nope"), "--target: no column"),
        (("init", "empty.parquet", "-o", "e.yaml"), "has no rows"),
        (("init", "ref.parquet", "-o", "b.yaml", "--budget", "3"), "budget: must be in (0, 1)"),
    ],
)
def test_user_errors_are_one_line_not_a_traceback(workdir: Path, args, message: str) -> None:
    (workdir / "notes.txt").write_text("hello")
    (workdir / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"x": pa.array([], pa.float64())}), workdir / "empty.parquet")
    result = run(*args, cwd=workdir)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_mismatched_schema_is_a_finding_not_an_error(workdir: Path) -> None:
    table = pq.read_table(workdir / "same.parquet").drop_columns(["num_05"])
    table = table.set_column(0, "num_00", pa.array(["x"] * table.num_rows))
    table = table.append_column("extra", pa.array(np.arange(table.num_rows)))
    pq.write_table(table, workdir / "odd.parquet")
    result = run("check", "odd.parquet", "--format", "json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)["windows"][0]["findings"]
    found = {(f["monitor"], f["column"]) for f in findings}
    assert {("missing_column", "num_05"), ("type_change", "num_00"), ("new_column", "extra"),
            ("invalid_rate", "num_00")} <= found


def test_no_progress_bar_without_a_terminal(workdir: Path) -> None:
    result = run("check", "cur.parquet", "--window-rows", "1000", cwd=workdir)
    assert result.returncode == 0
    assert "checking" not in result.stderr
    forced = run("check", "cur.parquet", "--window-rows", "1000", "--progress", cwd=workdir)
    assert "checking" in forced.stderr


def test_window_by_column(tmp_path: Path, acs_reference_path: Path,
                          acs_analysis_path: Path) -> None:
    """The `make run` job on the real ACS data: one window per analysis year."""
    init = run("init", acs_reference_path, "--target", "employed", "-o", "acs.yaml",
               cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert "ignore      year" in init.stdout
    result = run("check", acs_analysis_path, "--suite", "acs.yaml", "--window-by", "year",
                 "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    windows = json.loads(result.stdout)["windows"]
    assert [(w["window"], w["rows"]) for w in windows] == [
        ("year=2016", 69126), ("year=2017", 69635), ("year=2018", 70131)]
    # the age distribution drifts away from 2015 as the years go by
    age = [max((f["value"] for f in w["findings"] if f["column"] == "AGEP"), default=0.0)
           for w in windows]
    assert age[2] > 0.05
    # offline, the drift is an incident with a diagnosis and actions, as a server makes it
    (incident,) = [i for i in json.loads(result.stdout)["incidents"]
                   if i["title"] == "feature_drift on AGEP"]
    assert incident["advice"]["diagnosis"] == "covariate drift"
    assert incident["advice"]["actions"] and incident["advice"]["causes"][0]["name"] == "AGEP"


def test_init_takes_rules_inline_and_from_a_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    limit = rng.uniform(1_000, 5_000, 3_000)
    amount = limit * rng.uniform(0.2, 1.0, 3_000)
    pq.write_table(pa.table({"amount": amount, "limit": limit}), tmp_path / "ref.parquet")
    amount[:300] = limit[:300] * 2
    pq.write_table(pa.table({"amount": amount, "limit": limit}), tmp_path / "cur.parquet")
    (tmp_path / "rules.yaml").write_text("rules:\n- name: positive\n  expr: amount > 0\n")
    done = run("init", "ref.parquet", "--rule", "within_limit = amount <= limit",
               "--rules", "rules.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "watchkeeper.yaml").read_text()
    assert "rules:\n- name: positive\n  expr: amount > 0\n- name: within_limit\n" in text
    done = run("check", "cur.parquet", cwd=tmp_path)
    assert "rule" in done.stdout and "within_limit" in done.stdout, done.stdout
    bad = run("init", "ref.parquet", "-o", "bad.yaml", "--rule", "w=amount <= (limit",
              cwd=tmp_path)
    assert (bad.returncode, bad.stderr) == (2, "error: rules[0].expr: position 17: expected "
                                               "')', got the end\n")
    bad = run("init", "ref.parquet", "-o", "bad.yaml", "--monitor", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown monitor type 'nope' (installed: built-in: " in \
        bad.stderr


def test_a_regressor_gets_estimated_errors_with_a_band(tmp_path: Path) -> None:
    """init and check on a regression CSV: the JSON has the estimated MAE, RMSE and MAPE
    (labels all positive) with their 95% bands, and the realised ones beside them."""
    rng = np.random.default_rng(3)

    def write(name: str, n: int, shift: float, labels: bool = True) -> None:
        x = rng.normal(shift, 1, n)
        y = 100 + 5 * x + rng.normal(0, 1, n) * (1 + np.abs(x))
        columns = {"x": x, "kind": rng.choice(["a", "b"], n), "prediction": 100 + 5 * x}
        if labels:
            columns["price"] = y
        lines = [",".join(columns)] + [",".join(str(v[i]) for v in columns.values())
                                       for i in range(n)]
        (tmp_path / name).write_text("\n".join(lines) + "\n")

    write("ref.csv", 5_000, 0.0)
    write("cur.csv", 2_000, 1.0)
    result = run("init", "ref.csv", "--target", "price", "--prediction", "prediction",
                 "-o", "reg.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run("check", "cur.csv", "--suite", "reg.yaml", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["windows"][0]["metrics"]
    for k in ("mae", "rmse", "mape"):
        lo, hi = metrics["estimated_band"][k]
        assert lo < metrics["estimated"][k] < hi
        assert metrics["realised"][k] == pytest.approx(metrics["estimated"][k], rel=0.15)
