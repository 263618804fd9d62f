"""What every command shares: the ``main`` group, error messages in the CLI's terms
(``--window-rows``, not ``window_rows``), the CSV layout and engine options."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from watchkeeper.errors import SuiteError, WatchkeeperError
from watchkeeper.io.delimited import CsvLayout, read_csv
from watchkeeper.io.formats import is_delimited

# a WatchkeeperError exits with its ``exit_code``: errors.EXIT_USAGE (2, as click's usage
# errors) for bad arguments, unreadable input, a server that refused

#: The option of each library parameter: library messages name parameters (``target=``,
#: ``window_rows: must be ...``), what the CLI prints names options (``--target``).
FLAGS = {
    "target": "--target", "prediction": "--prediction", "proba": "--proba", "id": "--id",
    "timestamp": "--timestamp", "client": "--client", "sensitive": "--sensitive",
    "ignore": "--ignore", "pii": "--pii", "not_pii": "--not-pii",
    "positive_class": "--positive-class", "positive": "--positive-class",
    "allow_inverted_score": "--allow-inverted-score", "budget": "--budget",
    "budget_weights": "--budget-weights", "serving": "--serving",
    "window_rows": "--window-rows", "window": "--window", "window_by": "--window-by",
    "tz": "--tz", "labels": "--labels", "delimiter": "--delimiter", "header": "--header",
    "names": "--names", "grace": "--grace", "retention": "--retention",
    "lease_ttl": "--lease-ttl", "login_window": "--login-window",
    "body_timeout": "--body-timeout", "otlp_interval": "--otlp-interval",
    "memory": "--memory", "jobs": "--jobs", "embed_text": "--embed-text",
    "text_model": "--text-model",
}


#: Parameters given as CLI arguments (a file): their messages already name the file.
_ARGUMENTS = frozenset({"path", "reference", "data"})


#: Library functions a message may point to, as the CLI command doing the same.
_COMMANDS = {"init()": "`watchkeeper init`"}


_PARAM = re.compile(r"(?<![\w.'\"=-])(" + "|".join(sorted(FLAGS, key=len, reverse=True))
                    + r")=(True\b|False\b)?(?=(.?))")


_LEADING = re.compile(r"(\w+): ")


def _flag(match: re.Match[str]) -> str:
    flag = FLAGS[match.group(1)]
    if match.group(2) == "False":
        return "--no-" + flag[2:]
    if match.group(2) == "True":
        return flag
    after = match.group(3)
    return flag + (" " if after and (after.isalnum() or after in "'\"[(") else "")


def cli_message(exc: WatchkeeperError) -> str:
    """An error's message with the library's parameter names (``window_rows``,
    ``timestamp=COLUMN``) as the options of this CLI (``--window-rows``,
    ``--timestamp COLUMN``)."""
    text = str(exc)
    if isinstance(exc, SuiteError):
        if exc.source is None and exc.field in FLAGS:
            text = f"{FLAGS[exc.field]}: {exc.problem}"
        elif exc.source is None and exc.field in _ARGUMENTS:
            text = exc.problem
    else:
        leading = _LEADING.match(text)
        if leading and leading.group(1) in FLAGS:
            text = FLAGS[leading.group(1)] + text[leading.end(1):]
    return cli_text(text)


def cli_text(text: str) -> str:
    """Library text (an error, a note) with ``param=`` as options and ``init()`` as
    commands."""
    for function, command in _COMMANDS.items():
        text = text.replace(function, command)
    return _PARAM.sub(_flag, text)


class _Group(click.Group):
    """Prints user errors (WatchkeeperError) as one line with their ``exit_code``, never as
    a traceback; run as a program, ends its process without tearing it down."""

    def main(self, args: Any = None, *rest: Any, **options: Any) -> Any:
        try:
            return super().main(args, *rest, **options)
        except SystemExit as done:
            if args is None and options.get("standalone_mode", True):
                _end_process(done.code)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WatchkeeperError as exc:
            click.echo(f"error: {cli_message(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _end_process(code: int | str | None) -> None:
    """End the program with ``code`` once its output is written and its exit handlers have
    run, without Python's teardown of every module and object (~0.15 s of CPU after a
    check, a sixth of a small check's time). Only when no other thread that Python would
    wait for is running; otherwise the normal exit does."""
    main_thread = threading.main_thread()
    if threading.current_thread() is not main_thread or any(
            t is not main_thread and not t.daemon for t in threading.enumerate()):
        return
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # a closed or broken pipe: the normal exit reports it
        return
    atexit._run_exitfuncs()  # logging's flush, temporary files, multiprocessing's children
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)


@click.group(cls=_Group)
@click.version_option(package_name="watchkeeper")
def main() -> None:
    """watchkeeper: monitor ML models with calibrated, low-noise alerts."""


def _delimiter(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    named = {"tab": "\t", "\\t": "\t", "space": " ", "comma": ",", "semicolon": ";"}
    if value is None or value.lower() in named:
        return named.get((value or "").lower(), value)
    if len(value) != 1:
        raise click.BadParameter("one character, or tab, space, comma, semicolon")
    return value


_CSV_OPTIONS = (
    click.option("--delimiter", callback=_delimiter,
                 help="CSV field delimiter: one character, or tab, space, comma, semicolon "
                      "(default: guessed from the first lines, and said when not a comma)."),
    click.option("--header/--no-header", default=None,
                 help="Whether a CSV file's first row names its columns (default: guessed; "
                      "a file without one needs --names, or is named column_1...)."),
    click.option("--names", help="Column names of a CSV file, comma-separated (they replace "
                                 "its header row, if it has one)."),
)


def _csv_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the CSV layout options to a command, which receives them as ``layout``."""

    @functools.wraps(command)
    def wrapper(*args: Any, delimiter: str | None, header: bool | None, names: str | None,
                **kwargs: Any) -> Any:
        given = tuple(n.strip() for n in names.split(",")) if names else None
        layout = CsvLayout(delimiter=delimiter, header=header, names=given)
        return command(*args, layout=layout, **kwargs)

    for option in reversed(_CSV_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _read_input(path: Path, layout: CsvLayout,
                names_if_headerless: list[str] | None = None) -> tuple[Any, list[str]]:
    """A CSV file read with its layout, and notes on what was guessed; other inputs as
    they are (read later)."""
    if not is_delimited(path):
        if layout != CsvLayout():
            raise WatchkeeperError(f"{path}: --delimiter, --header and --names apply to CSV "
                                   "files only")
        return path, []
    if names_if_headerless and layout.names is None and layout.header is not False:
        from dataclasses import replace

        layout = replace(layout, names_if_headerless=tuple(names_if_headerless))
    reading = read_csv(path, layout=layout)
    return reading.table, reading.notes


def _split_names(values: tuple[str, ...]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


_ENGINE_OPTIONS = (
    click.option("--engine", type=click.Choice(["local", "spark"]), default="local",
                 show_default=True,
                 help="Where rows are profiled: in this process, or on Apache Spark (extra "
                      "spark; the data are then Parquet or CSV files or directories, read "
                      "by Spark; see docs/spark.md)."),
    click.option("--spark-master", default="local[*]", show_default=True,
                 help="Spark master URL for --engine spark (local[4], spark://host:7077, "
                      "yarn...)."),
    click.option("--spark-conf", multiple=True, metavar="KEY=VALUE",
                 help="A Spark setting for --engine spark (repeatable), e.g. "
                      "spark.executor.memory=4g."),
)


def _spark_session(master: str, items: tuple[str, ...]) -> Any:
    """The Spark session of ``--spark-master`` and ``--spark-conf``."""
    conf = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WatchkeeperError(f"--spark-conf: expected KEY=VALUE, got {item!r}")
        conf.append((key.strip(), value))
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise WatchkeeperError("--engine spark needs pyspark (and Java 17 or later): "
                               "pip install 'watchkeeper[spark]'") from None
    from watchkeeper import spark

    return spark.session(master, conf)


def _print_deployed(answer: dict[str, Any]) -> None:
    click.echo(f"deployed {answer['model']} version {answer['version']} "
               f"(previous: {answer.get('previous') or 'none'}); in service from the next window")
    if answer.get("summary"):
        click.echo(answer["summary"])


def _otlp_exporter(url: str | None) -> Any:
    """The OTLP exporter of ``--otlp URL``, or None."""
    if not url:
        return None
    try:
        from watchkeeper.run.otlp import OtlpExporter
    except ImportError as exc:
        raise WatchkeeperError(f"--otlp needs extra packages ({exc.name}): "
                               "pip install 'watchkeeper[otel]'") from None
    return OtlpExporter(url)
