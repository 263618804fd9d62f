"""Commands that check data against a suite: ``check`` and ``report``."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from watchkeeper.cli.common import (
    _ENGINE_OPTIONS,
    _csv_options,
    _otlp_exporter,
    _read_input,
    _spark_session,
    cli_text,
    main,
)
from watchkeeper.errors import WatchkeeperError
from watchkeeper.io.delimited import CsvLayout
from watchkeeper.monitors.base import Severity
from watchkeeper.run.check import CheckResult
from watchkeeper.suite.core import Suite

EXIT_FINDINGS = 1  # --fail-on was reached


@dataclass
class _Checking:
    """The suite, windowing and label options shared by ``check`` and ``report``."""

    suite_path: Path
    window_rows: int | None
    window: str | None
    window_by: str | None
    labels_path: Path | None
    progress: bool | None
    tz: str | None = None
    layout: CsvLayout = field(default_factory=CsvLayout)
    jobs: int | None = None
    memory: str | None = None
    engine: str = "local"
    spark_master: str = "local[*]"
    spark_conf: tuple[str, ...] = ()

    @property
    def data_options_given(self) -> bool:
        return any(x is not None for x in (self.window_rows, self.window, self.window_by,
                                           self.labels_path, self.tz, self.jobs, self.memory)
                   ) or self.layout != CsvLayout() or self.engine != "local"

    def run(self, current: Path) -> CheckResult:
        suite = Suite.load(self.suite_path)
        if self.engine == "spark":
            if self.jobs is not None or self.memory is not None:
                raise WatchkeeperError("--jobs and --memory apply to the local engine; size "
                                       "Spark with --spark-conf")
            return self._run_on_spark(current, suite)
        from watchkeeper.run.stream import streamable

        if streamable(current):  # read batch by batch: memory flat in rows, every core
            def say(path: Path, text: str) -> None:
                click.echo(f"{path}: {cli_text(text)}", err=True)

            return suite.check_stream(current, window_rows=self.window_rows,
                                      window=self.window, window_by=self.window_by,
                                      labels=self.labels_path, progress=self.progress,
                                      tz=self.tz, jobs=self.jobs, memory=self.memory,
                                      layout=self.layout, notes=say)
        if self.jobs is not None or self.memory is not None:
            raise WatchkeeperError(f"{current}: --jobs and --memory apply to Parquet and CSV "
                                   "input (files, directories, globs)")
        # a CSV file without a header row reads as the reference did: named as in the suite
        data, notes = _read_input(current, self.layout, [c.name for c in suite.schema])
        for note in notes:
            click.echo(f"{current}: {cli_text(note)}", err=True)
        return suite.check(data, window_rows=self.window_rows, window=self.window,
                           window_by=self.window_by, labels=self.labels_path,
                           progress=self.progress, tz=self.tz)


    def _run_on_spark(self, current: Path, suite: Suite) -> CheckResult:
        """The check on Spark: CURRENT and --labels read by Spark (Parquet or CSV files or
        directories), profiled on the executors."""
        if self.layout != CsvLayout():
            raise WatchkeeperError("--engine spark reads CSV files with a header row and "
                                   "their inferred types; drop the CSV layout options")
        from watchkeeper import spark

        session = _spark_session(self.spark_master, self.spark_conf)
        labels = (spark.read(session, self.labels_path, "labels")
                  if self.labels_path is not None else None)
        return spark.check(spark.read(session, current), suite, window_rows=self.window_rows,
                           window=self.window, window_by=self.window_by, labels=labels,
                           tz=self.tz)


_CHECK_OPTIONS = (
    click.option("--suite", "suite_path", type=click.Path(path_type=Path),
                 default="watchkeeper.yaml", show_default=True, help="Suite file from init."),
    click.option("--window-rows", type=click.IntRange(min=1), help="Rows per window."),
    click.option("--window", help="Time window length: 1min, 1h, 1d, 1w (from Monday), 1mo "
                                  "(calendar month), aligned to calendar boundaries (needs a "
                                  "timestamp column)."),
    click.option("--tz", help="Time zone of --window's days, weeks and months (default UTC), "
                              "e.g. Europe/Paris."),
    click.option("--window-by", help="One window per value of this column (batch, partition)."),
    click.option("--labels", "labels_path", type=click.Path(path_type=Path),
                 help="Labels (id and target columns) joined by id to their prediction's "
                      "window."),
    click.option("--progress/--no-progress", default=None,
                 help="Progress bars (default: when stderr is a terminal)."),
    click.option("--jobs", type=click.IntRange(min=1),
                 help="Batches profiled at once (default: every core; Parquet by worker "
                      "processes, CSV by threads); the result is the same for any number."),
    click.option("--memory", help="Memory budget of the batches in flight, e.g. 2GB or "
                                  "800MiB (default: none beyond 2 per job)."),
    *_ENGINE_OPTIONS,
)


def _check_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options of ``_Checking`` to a command, which receives them as ``checking``."""

    @functools.wraps(command)
    def wrapper(*args: Any, suite_path: Path, window_rows: int | None, window: str | None,
                window_by: str | None, labels_path: Path | None, progress: bool | None,
                tz: str | None, layout: CsvLayout, jobs: int | None, memory: str | None,
                engine: str, spark_master: str, spark_conf: tuple[str, ...],
                **kwargs: Any) -> Any:
        checking = _Checking(suite_path, window_rows, window, window_by, labels_path, progress,
                             tz, layout, jobs, memory, engine, spark_master, spark_conf)
        return command(*args, checking=checking, **kwargs)

    for option in reversed(_CHECK_OPTIONS):
        wrapper = option(wrapper)
    return _csv_options(wrapper)


def _write_report(path: Path, result: dict[str, Any], *, title: str,
                  incidents: list[dict[str, Any]] | None = None) -> None:
    from watchkeeper import report

    try:
        report.write(path, report.render(result, title=title, incidents=incidents or ()))
    except OSError as exc:
        raise WatchkeeperError(f"cannot write the report to {path}: "
                               f"{exc.strerror or exc}") from None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WatchkeeperError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WatchkeeperError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise WatchkeeperError(f"{path}: not {what} (invalid JSON: {exc.msg}, line "
                               f"{exc.lineno})") from None


@main.command("check")
@click.argument("current", type=click.Path(dir_okay=True, path_type=Path))
@_check_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--fail-on", type=click.Choice(["warning", "critical"]),
              help="Exit with code 1 when a finding reaches this severity.")
@click.option("--report", "report_path", type=click.Path(path_type=Path),
              help="Also write the HTML report of the result to this file.")
@click.option("--otlp", "otlp_url", metavar="URL",
              help="Also export the windows' metrics, findings and incidents over OTLP/HTTP "
                   "(protobuf) to this OpenTelemetry collector, e.g. http://127.0.0.1:4318 "
                   "(needs the otel extra; a collector that is down fails nothing).")
def check_command(current: Path, checking: _Checking, fmt: str, fail_on: str | None,
                  report_path: Path | None, otlp_url: str | None) -> None:
    """Check CURRENT data against a suite, window by window."""
    exporter = _otlp_exporter(otlp_url)
    result = checking.run(current)
    if exporter is not None:
        exporter.export_check(result)
        exporter.close()
        if exporter.stats["dropped"] or exporter.stats["failed"]:
            click.echo(f"--otlp: {exporter.summary()}", err=True)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(f"{current} against {checking.suite_path}")
        from watchkeeper.report.text import check_text

        click.echo(check_text(result))
    if report_path is not None:
        _write_report(report_path, result.to_dict(), title=f"watchkeeper report: {current.name}")
        click.echo(f"wrote {report_path}", err=True)
    if fail_on and result.alerts(Severity(fail_on)):
        sys.exit(EXIT_FINDINGS)


@main.command("report")
@click.argument("current", required=False, type=click.Path(dir_okay=True, path_type=Path))
@_check_options
@click.option("--from", "from_path", type=click.Path(path_type=Path),
              help="Render a saved result (check --format json) instead of checking data.")
@click.option("--incidents", "incidents_path", type=click.Path(path_type=Path),
              help="Incidents to include (the JSON of `watchkeeper incidents --format json`).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              default="watchkeeper-report.html", show_default=True,
              help="Where to write the HTML report.")
@click.option("--title", help="Report title (default: from the data file name).")
def report_command(current: Path | None, checking: _Checking, from_path: Path | None,
                   incidents_path: Path | None, output: Path, title: str | None) -> None:
    """Check CURRENT against a suite (same options as check) and write a self-contained
    HTML report: findings, performance, drift, fairness and security, charts included.
    With --from, render a saved check result instead."""
    if (current is None) == (from_path is None):
        raise WatchkeeperError("give either the data to check (CURRENT) or --from RESULT.json")
    if from_path is not None:
        if checking.data_options_given:
            raise WatchkeeperError("--from renders a saved result; --window*, --labels "
                                   "apply only when checking data")
        result = _read_json(from_path, "a check result")
        if not isinstance(result, dict) or not isinstance(result.get("windows"), list):
            raise WatchkeeperError(f"{from_path}: not a check result (expected the JSON of "
                                   "watchkeeper check --format json)")
        name = from_path.name
    else:
        assert current is not None
        result, name = checking.run(current).to_dict(), current.name
    incidents: list[dict[str, Any]] = []
    if incidents_path is not None:
        doc = _read_json(incidents_path, "incidents")
        found = doc.get("incidents") if isinstance(doc, dict) else doc
        if not isinstance(found, list) or not all(isinstance(i, dict) for i in found):
            raise WatchkeeperError(f"{incidents_path}: expected the JSON of "
                                   "watchkeeper incidents --format json")
        incidents = found
    _write_report(output, result, title=title or f"watchkeeper report: {name}",
                  incidents=incidents)
    incidents = incidents or result.get("incidents") or []
    findings = sum(len(w.get("findings") or []) for w in result["windows"])
    click.echo(f"wrote {output}: {len(result['windows'])} window(s), {findings} finding(s)"
               + (f", {len(incidents)} incident(s)" if incidents else ""))
