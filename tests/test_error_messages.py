"""Errors name what the caller typed: the Python parameter for a library call
(``window_rows: must be ...``, ``re-run init() with timestamp=COLUMN``), the option for the
same mistake made on the command line (``--window-rows``, ``--timestamp COLUMN``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

import watchkeeper as wk
from watchkeeper.cli import cli_message, main
from watchkeeper.errors import DataError, SuiteError

FLAG_LIKE = "--"


def _table(n: int = 400, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "x": rng.normal(size=n),
        "colour": rng.choice(["red", "blue", "green"], n),
        "y": rng.choice(["no", "yes"], n),
        "score": rng.random(n),
        "row_id": np.arange(n),
    })


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("messages")
    pq.write_table(_table(), d / "ref.parquet")
    pq.write_table(_table(seed=1), d / "cur.parquet")
    suite = wk.init(d / "ref.parquet", target="y", proba="score", id="row_id",
                    progress=False)
    suite.save(d / "suite.yaml")
    plain = wk.init(d / "ref.parquet", ignore=["y", "score", "row_id"], progress=False)
    plain.save(d / "plain.yaml")
    doc = yaml.safe_load((d / "suite.yaml").read_text())
    doc.pop("task")
    doc["fitted"].pop("task", None)
    (d / "no_task.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return d


# -- the library names parameters ------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "param", "text"), [
    ({"target": "nope"}, "target", "no column named 'nope'"),
    ({"timestamp": "when"}, "timestamp", "no column named 'when'"),
    ({"target": "y", "ignore": ["y"]}, "ignore", "already given as target="),
    ({"pii": ["x"], "not_pii": ["x"]}, "not_pii", "also given as pii="),
    ({"target": "y", "positive_class": "maybe"}, "positive_class", "not one of the classes"),
    ({"budget_weights": {"speed": 1.0}}, "budget_weights", "'speed': not a monitor family"),
    ({"budget": 3}, "budget", "must be in (0, 1)"),
])
def test_init_names_the_parameter(kwargs: dict, param: str, text: str) -> None:
    with pytest.raises(SuiteError) as info:
        wk.init(_table(), progress=False, **kwargs)
    assert info.value.field == param
    assert str(info.value).startswith(f"{param}: ") and text in str(info.value)
    assert FLAG_LIKE not in str(info.value)


@pytest.mark.parametrize(("kwargs", "error", "start", "text"), [
    ({"window_rows": 0}, DataError, "window_rows: ", "must be a positive integer, got 0"),
    ({"window_by": "color"}, DataError, "window_by: ", "did you mean 'colour'"),
    ({"window": "1d"}, SuiteError, "window: ", "re-run init() with timestamp=COLUMN, or use "
                                               "window_rows="),
    ({"window": "soon"}, DataError, "window: ", "expected a positive length like"),
    ({"window_rows": 10, "window": "1h"}, SuiteError, "window: ",
     "give one of window_rows=, window= or window_by="),
    ({"window_rows": 10, "tz": "Europe/Paris"}, SuiteError, "tz: ", "give window= too"),
    ({"labels": pa.table({"id": [1]})}, SuiteError, "labels: ",
     "re-run init() with target= and id="),
])
def test_check_names_the_parameter(files: Path, kwargs: dict, error: type, start: str,
                                   text: str) -> None:
    suite = wk.load(files / "plain.yaml")
    with pytest.raises(error) as info:
        suite.check(files / "cur.parquet", progress=False, **kwargs)
    assert str(info.value).startswith(start) and text in str(info.value), str(info.value)
    assert FLAG_LIKE not in str(info.value)


def test_time_windows_name_window_and_tz() -> None:
    from watchkeeper.run.check import parse_duration

    with pytest.raises(DataError, match=r"^window: expected a positive length like .*got "
                                        r"'soon'"):
        parse_duration("soon")
    with pytest.raises(DataError, match=r"^grace: calendar months have no fixed length"):
        parse_duration("1mo", "grace")
    stamped = pa.table({"t": pa.array(np.arange(200) * 3600 * 10**6, pa.timestamp("us")),
                        "x": np.arange(200.0)})
    suite = wk.init(stamped, progress=False)
    with pytest.raises(DataError, match=r"^tz: 'Mars/Olympus' is not a known time zone"):
        suite.check(stamped, window="1d", tz="Mars/Olympus")


def test_load_names_the_file_and_field(files: Path, tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"nope\.yaml: no such file; create one with init\(\)"):
        wk.load(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SuiteError, match=r"list\.yaml: \(top level\): expected a mapping"):
        wk.load(tmp_path / "list.yaml")
    with pytest.raises(SuiteError) as info:
        wk.load(files / "no_task.yaml")
    assert str(info.value).startswith(f"{files / 'no_task.yaml'}: monitors[1]: performance "
                                      "needs the suite's task")
    assert "re-run init() with target= or prediction=" in str(info.value)


def test_profile_with_wrong_types_names_the_parameter(files: Path) -> None:
    schema = wk.load(files / "plain.yaml").schema
    with pytest.raises(DataError, match=r"^data: cannot use a int as data"):
        wk.profile(42, schema)
    with pytest.raises(SuiteError, match=r"^schema: expected a Schema .*got a dict"):
        wk.profile(_table(), {"x": "numeric"})
    with pytest.raises(SuiteError, match=r"^profiles: expected Profile objects.*got a dict"):
        wk.merge(wk.profile(_table(), schema), {"rows": 3})
    with pytest.raises(DataError, match=r"^reference: cannot use a int as data"):
        wk.init(42)


# -- the CLI names options -------------------------------------------------------------


def _cli(files: Path, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (("init", "{d}/ref.parquet", "-o", "{d}/x.yaml", "--target", "nope"),
     "error: --target: no column named 'nope'"),
    (("init", "{d}/ref.parquet", "-o", "{d}/x.yaml", "--target", "y", "--ignore", "y"),
     "error: --ignore: 'y' is already given as --target; give each column one role"),
    (("init", "{d}/ref.parquet", "-o", "{d}/x.yaml", "--pii", "x", "--not-pii", "x"),
     "error: --not-pii: 'x' is also given as --pii"),
    (("init", "{d}/ref.parquet", "-o", "{d}/x.yaml", "--target", "y", "--positive-class", "m"),
     "error: --positive-class: 'm' is not one of the classes"),
    (("init", "{d}/ref.parquet", "-o", "{d}/x.yaml", "--budget-weights", "speed=1"),
     "error: --budget-weights: 'speed': not a monitor family"),
    (("check", "{d}/cur.parquet", "--suite", "{d}/plain.yaml", "--window", "1d"),
     "error: --window: time windows need a timestamp column; re-run `watchkeeper init` with "
     "--timestamp COLUMN, or use --window-rows"),
    (("check", "{d}/cur.parquet", "--suite", "{d}/plain.yaml", "--window", "soon"),
     "error: --window: "),
    (("check", "{d}/cur.parquet", "--suite", "{d}/plain.yaml", "--window-by", "color"),
     "error: --window-by: column 'color' is not in the data (did you mean 'colour'"),
    (("check", "{d}/cur.parquet", "--suite", "{d}/plain.yaml", "--window-rows", "5",
      "--window", "1h"),
     "error: --window: give one of --window-rows, --window or --window-by, not several"),
    (("check", "{d}/cur.parquet", "--suite", "{d}/plain.yaml", "--window-rows", "5", "--tz",
      "UTC"),
     "error: --tz: a time zone applies to time windows only; give --window too, or drop --tz"),
    (("check", "{d}/cur.parquet", "--suite", "{d}/plain.yaml", "--labels", "{d}/cur.parquet"),
     "error: --labels: need a suite with a target and an id column; re-run `watchkeeper init` "
     "with --target and --id"),
    (("check", "{d}/cur.parquet", "--suite", "{d}/nope.yaml"),
     "error: {d}/nope.yaml: no such file; create one with `watchkeeper init`"),
    (("check", "{d}/cur.parquet", "--suite", "{d}/no_task.yaml"),
     "error: {d}/no_task.yaml: monitors[1]: performance needs the suite's task (its target, "
     "prediction or score columns), and the suite has none; remove the monitor, or re-run "
     "`watchkeeper init` with --target or --prediction"),
])
def test_the_cli_names_the_option(files: Path, args: tuple[str, ...], expected: str) -> None:
    line = _cli(files, *(a.format(d=files) for a in args))
    assert line.startswith(expected.format(d=files)), line
    assert "=" not in line.replace("speed=1", ""), line  # no parameter left untranslated


def test_a_headerless_csv_names_parameters_or_options(tmp_path: Path) -> None:
    path = tmp_path / "credit.csv"
    path.write_text("39, yes, 1200.5\n41, no, 300.0\n27, yes, 50.25\n")
    with pytest.raises(DataError) as info:
        wk.init(path)
    assert "give its 3 column names with names=, or header=True if that row" in str(info.value)
    line = _cli(tmp_path, "init", str(path), "-o", str(tmp_path / "x.yaml"))
    assert "give its 3 column names with --names, or --header if that row" in line


def test_cli_message_translates_parameters_only() -> None:
    assert cli_message(SuiteError("window_rows", "must be ≥ 1")) == "--window-rows: must be ≥ 1"
    # a suite file's field keeps its name, even one spelled like a parameter
    assert cli_message(SuiteError("budget", "bad", "s.yaml")) == "s.yaml: budget: bad"
    assert cli_message(DataError("tz: 'X' is not a known time zone")).startswith("--tz: 'X'")
    assert cli_message(DataError("pass header=False or names=a,b")) == \
        "pass --no-header or --names a,b"
    # a quoted value that looks like a parameter is left alone
    assert cli_message(DataError("no column named 'target=' in the data")) == \
        "no column named 'target=' in the data"


# -- no assert guards data: the same clear error under python -O ------------------------


def test_a_broken_suite_file_is_a_clear_error_under_python_o(files: Path) -> None:
    script = ("import sys, watchkeeper as wk\n"
              "try:\n"
              f"    wk.load({str(files / 'no_task.yaml')!r})\n"
              "except wk.SuiteError as e:\n"
              "    print(e)\n"
              "    sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "monitors[1]: performance needs the suite's task" in done.stdout


def test_broken_alert_state_is_a_clear_error_under_python_o() -> None:
    script = ("import sys\n"
              "from watchkeeper.alerts.silences import Silence\n"
              "from watchkeeper.errors import DataError\n"
              "try:\n"
              "    Silence.from_dict({'id': 's1', 'matchers': {'family': 'drift'}, "
              "'until': None})\n"
              "except DataError as e:\n"
              "    print(e)\n"
              "    sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "silence 's1'.until: expected an ISO 8601 time, got None" in done.stdout
