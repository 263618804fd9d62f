"""Command line: ``watchkeeper init`` builds a suite, ``watchkeeper check`` evaluates data,
``watchkeeper report`` writes the HTML report of a check."""

from __future__ import annotations

import functools
import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from watchkeeper.errors import DataError, SuiteError, WatchkeeperError
from watchkeeper.io.tables import CsvLayout, is_delimited, read_csv
from watchkeeper.monitors.base import Severity
from watchkeeper.run.check import CheckResult
from watchkeeper.suite.core import DEFAULT_BUDGET, Suite, init, not_generated
from watchkeeper.suite.deploy import call, deploy, rollback
from watchkeeper.suite.diff import diff

EXIT_FINDINGS = 1  # --fail-on was reached
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"  # as alerts.notifiers.pagerduty
OPSGENIE_URL = "https://api.opsgenie.com"  # (not imported: the CLI starts light)
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
    a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WatchkeeperError as exc:
            click.echo(f"error: {cli_message(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)



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


@main.command("init")
@click.argument("reference", type=click.Path(dir_okay=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default="watchkeeper.yaml",
              show_default=True, help="Where to write the suite file.")
@click.option("--target", help="Label column.")
@click.option("--prediction", help="Predicted class/value column(s), comma-separated.")
@click.option("--proba", help="Predicted probability/score column(s), comma-separated.")
@click.option("--id", "id_", help="Prediction id column (joins late labels).")
@click.option("--timestamp", help="Event time column (enables time windows and volume).")
@click.option("--client", help="Caller/client id column.")
@click.option("--sensitive", help="Sensitive attribute columns, comma-separated.")
@click.option("--segment", "segments", multiple=True, metavar="COL[,COL]",
              help="A column, or a pair A,B, whose values are monitored as segments of their "
                   "own: drift, quality and performance per value (repeatable).")
@click.option("--ignore", help="Columns to leave unmonitored, comma-separated.")
@click.option("--pii", "pii", multiple=True,
              help="A column holding personal data, whatever its values (repeatable).")
@click.option("--not-pii", "not_pii", multiple=True,
              help="A column that is not personal data, whatever its name (repeatable).")
@click.option("--positive-class", "--positive", "positive",
              help="The positive class of a binary classifier (default: the one the score "
                   "ranks highest).")
@click.option("--allow-inverted-score", is_flag=True,
              help="Keep a --positive-class the score ranks lowest (reference ROC-AUC < 0.5).")
@click.option("--budget", type=float, default=DEFAULT_BUDGET, show_default=True,
              help="Expected false alerts per window for the whole suite.")
@click.option("--budget-weights", "weights_text",
              help="Share of the budget per monitor family, e.g. performance=0.4,fairness=0.2 "
                   "(others keep their defaults).")
@click.option("--serving", is_flag=True,
              help="The suite is for the server/SDK: monitors of _error, clients and time "
                   "share the budget although the reference lacks them.")
@click.option("--rule", "rule_texts", multiple=True, metavar="NAME=EXPR",
              help="A rule every row should meet, e.g. 'within_limit=amount <= limit' "
                   "(repeatable; see docs/rules.md).")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A YAML file with a rules: list of {name, expr} (a suite file will do).")
@click.option("--monitor", "monitor_names", multiple=True, metavar="TYPE[:COLUMN]",
              help="A monitor of your own, registered by an installed package "
                   "(entry point group watchkeeper.monitors; repeatable).")
@click.option("--embedding", "embedding_texts", multiple=True, metavar="NAME=C1,C2,...",
              help="Numeric columns that are one vector, monitored as an embedding: "
                   "NAME=c1,c2,... or NAME=PREFIX (e.g. emb=emb_; repeatable).")
@click.option("--embed-text", "embed_text", metavar="COLUMNS",
              help="Text columns to embed and monitor by topic mix, comma-separated "
                   "(default: none; other text columns are watched through their descriptors).")
@click.option("--text-model", "text_model", type=click.Choice(["minilm"]), default=None,
              help="Embed the --embed-text columns with a pretrained model (minilm: "
                   "all-MiniLM-L6-v2, needs the text-model extra) instead of a projection "
                   "fitted on the reference.")
@click.option("--multivariate", is_flag=True,
              help="Add multivariate_drift: a broken correlation no single column shows "
                   "(profiling several times slower).")
@click.option("--multivariate-group", "group_texts", multiple=True, metavar="NAME=C1,C2,...",
              help="Columns whose joint change is judged on its own by a multivariate_drift "
                   "monitor of the group NAME (repeatable).")
@click.option("--name", help="Suite name (default: the reference file name).")
@click.option("--force", is_flag=True, help="Overwrite an existing suite file.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars (default: when stderr is a terminal).")
@click.option("--deploy", "deploy_to", is_flag=True,
              help="Also deploy the suite (needs --model and --server).")
@click.option("--model", help="Model name on the server, with --deploy.")
@click.option("--server", help="Server URL, with --deploy (token: $WATCHKEEPER_WRITE_TOKEN).")
@click.option("--memory", help="Memory budget, e.g. 2GB: a Parquet/CSV reference an in-memory "
                               "init would not fit in is read batch by batch (so is one of "
                               "more than 2M rows, whatever the budget).")
@click.option("--stream/--no-stream", "stream", default=None,
              help="Read the reference batch by batch (bins from a quantile sketch, models "
                   "on a 200,000-row sample), or whole (default: by size and --memory).")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Batches profiled at once by a streamed init (default: every core).")
@_ENGINE_OPTIONS[0]
@_ENGINE_OPTIONS[1]
@_ENGINE_OPTIONS[2]
@_csv_options
def init_command(reference: Path, output: Path, target: str | None, prediction: str | None,
                 proba: str | None, id_: str | None, timestamp: str | None, client: str | None,
                 sensitive: str | None, segments: tuple[str, ...], ignore: str | None,
                 pii: tuple[str, ...], not_pii: tuple[str, ...], positive: str | None,
                 allow_inverted_score: bool, budget: float, weights_text: str | None,
                 serving: bool, rule_texts: tuple[str, ...], rules_file: Path | None,
                 monitor_names: tuple[str, ...], embedding_texts: tuple[str, ...],
                 embed_text: str | None, text_model: str | None, multivariate: bool,
                 group_texts: tuple[str, ...], name: str | None,
                 force: bool,
                 progress: bool | None, deploy_to: bool, model: str | None,
                 server: str | None, memory: str | None, stream: bool | None,
                 jobs: int | None, engine: str, spark_master: str,
                 spark_conf: tuple[str, ...], layout: CsvLayout) -> None:
    """Infer the schema of REFERENCE, generate and calibrate every monitor, write the suite.

    REFERENCE is a file, or a directory or glob of Parquet/CSV files; a big one is read
    batch by batch (see --memory), or by Spark (--engine spark)."""
    if output.exists() and not force:
        raise WatchkeeperError(f"{output} exists; pass --force to overwrite it")
    if deploy_to and not (model and server):
        raise WatchkeeperError("--deploy needs --model and --server")
    from watchkeeper.run.stream import parse_memory
    from watchkeeper.suite.streamed import should_stream

    data: Any = reference
    if engine == "spark":
        if memory is not None or jobs is not None or stream is not None \
                or layout != CsvLayout():
            raise WatchkeeperError("--memory, --jobs, --stream and the CSV layout options "
                                   "apply to the local engine; size Spark with --spark-conf")
        from watchkeeper import spark

        session = _spark_session(spark_master, spark_conf)
        data = spark.SparkReference(spark.read(session, reference, "reference"),
                                    source=str(reference))
    else:
        if stream is None:
            stream = should_stream(reference, parse_memory(memory))
        if not stream:  # read whole here; a streamed reference is read by init itself
            data, read_notes = _read_input(reference, layout)
            for note in read_notes:
                click.echo(f"{reference}: {cli_text(note)}")
    suite = init(data, target=target, prediction=prediction, proba=proba, id=id_,
                 timestamp=timestamp, client=client, sensitive=sensitive, ignore=ignore,
                 pii=_split_names(pii), not_pii=_split_names(not_pii),
                 positive_class=positive, allow_inverted_score=allow_inverted_score,
                 budget=budget, budget_weights=_weights(weights_text), serving=serving,
                 rules=_rules(rule_texts, rules_file), monitors=list(monitor_names),
                 segments=list(segments), name=name or reference.stem, progress=progress,
                 memory=memory,
                 stream=stream, jobs=jobs, layout=layout if stream else None,
                 notes=lambda path, text: click.echo(f"{path}: {cli_text(text)}"),
                 embeddings=_embeddings(embedding_texts), embed_text=embed_text,
                 text_model=text_model,
                 multivariate=multivariate,
                 multivariate_groups=_named_columns(group_texts, "--multivariate-group"))
    suite.source = str(reference)
    suite.save(output)
    click.echo(_summary(suite, output))
    if deploy_to:
        assert model and server
        _print_deployed(deploy(suite, model=model, server=server, note=f"init {reference}"))


def _embeddings(texts: tuple[str, ...]) -> dict[str, str] | None:
    """``--embedding NAME=C1,C2,…`` (or ``NAME=PREFIX``) as a mapping (checked by init)."""
    return _named_columns(texts, "--embedding", " or NAME=PREFIX")


def _named_columns(texts: tuple[str, ...], option: str,
                   also: str = "") -> dict[str, str] | None:
    """``NAME=C1,C2,…`` options as a mapping of name to columns (checked by init)."""
    out: dict[str, str] = {}
    for text in texts:
        name, sep, columns = text.partition("=")
        if not sep or not name.strip() or not columns.strip():
            raise SuiteError(option, f"expected NAME=C1,C2,...{also}, got {text!r}")
        out[name.strip()] = columns.strip()
    return out or None


def _rules(texts: tuple[str, ...], path: Path | None) -> list[dict[str, Any]]:
    """Rules from ``--rules FILE`` (its ``rules:`` list), then ``--rule NAME=EXPR``."""
    out: list[dict[str, Any]] = []
    if path is not None:
        document = _read_yaml(path)
        listed = document.get("rules") if isinstance(document, dict) else None
        if not isinstance(listed, list):
            raise SuiteError("--rules", f"{path}: expected a rules: list of name and expr")
        out += listed
    for text in texts:
        name, sep, expr = text.partition("=")
        if not sep or not name.strip():
            raise SuiteError("--rule", f"expected NAME=EXPR, got {text!r}")
        out.append({"name": name.strip(), "expr": expr.strip()})
    return out


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SuiteError("--rules", f"{path}: not valid YAML ({exc})") from None


def _weights(text: str | None) -> dict[str, float] | None:
    """``performance=0.4,fairness=0.2`` as a mapping (checked by init)."""
    if not text:
        return None
    out: dict[str, float] = {}
    for item in text.split(","):
        family, sep, value = item.partition("=")
        try:
            out[family.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise WatchkeeperError(f"--budget-weights {item!r}: expected family=weight")
    return out


def _print_deployed(answer: dict[str, Any]) -> None:
    click.echo(f"deployed {answer['model']} version {answer['version']} "
               f"(previous: {answer.get('previous') or 'none'}); in service from the next window")
    if answer.get("summary"):
        click.echo(answer["summary"])


@main.command("deploy")
@click.argument("suite_path", type=click.Path(path_type=Path))
@click.option("--model", required=True, help="Model name on the server.")
@click.option("--server", help="Server URL, e.g. http://127.0.0.1:8000.")
@click.option("--store", "store_url",
              help="Or a store URL, for SDKs in embedded mode (they pick it up at next flush).")
@click.option("--token", help="Write token (default: $WATCHKEEPER_WRITE_TOKEN).")
@click.option("--note", help="Why this version (kept with it).")
def deploy_command(suite_path: Path, model: str, server: str | None, store_url: str | None,
                   token: str | None, note: str | None) -> None:
    """Register SUITE_PATH as the model's new active version (validated first; an invalid
    suite changes nothing) and print what it changes."""
    if (server is None) == (store_url is None):
        raise WatchkeeperError("give either --server or --store")
    suite = Suite.load(suite_path)  # fails here, with the field named
    if server is not None:
        _print_deployed(deploy(suite_path, model=model, server=server, token=token,
                               note=note))
        return
    from watchkeeper.store import Store
    from watchkeeper.suite import file as suitefile

    assert store_url is not None  # one of the two, checked above
    with Store(store_url) as store:
        previous = store.active_suite(model)
        version = store.add_suite(model, suite_path.read_text(encoding="utf-8"),
                                  created_by="watchkeeper deploy", note=note)
    answer: dict[str, Any] = {"model": model, "version": version.version,
                              "previous": previous.version if previous else None}
    if previous is not None:
        old = Suite.from_dict(suitefile.parse(previous.text, "previous"))
        answer["summary"] = diff(old, suite).to_text()
    _print_deployed(answer)


@main.command("rollback")
@click.option("--model", required=True)
@click.option("--to", "version", type=click.IntRange(min=1), required=True,
              help="The version to make active again.")
@click.option("--server", required=True)
@click.option("--token", help="Write token (default: $WATCHKEEPER_WRITE_TOKEN).")
def rollback_command(model: str, version: int, server: str, token: str | None) -> None:
    """Make an earlier suite version of a model active again (from the next window on)."""
    rollback(model=model, version=version, server=server, token=token)
    click.echo(f"{model}: version {version} is active from the next window on")


def _model_url(server: str, model: str, path: str = "") -> str:
    from urllib.parse import quote

    return f"{server.rstrip('/')}/v1/models/{quote(model)}{path}"


@main.command("incidents")
@click.option("--server", help="Server URL (token: $WATCHKEEPER_READ_TOKEN).")
@click.option("--store", "store_url",
              help="Or read the store directly, e.g. the one an EmbeddedSink writes to.")
@click.option("--model", required=True)
@click.option("--all", "show_all", is_flag=True, help="Resolved ones too.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def incidents_command(server: str | None, store_url: str | None, model: str, show_all: bool,
                      fmt: str) -> None:
    """List a model's incidents with their diagnosis, from a server or from its store."""
    if (server is None) == (store_url is None):
        raise WatchkeeperError("give one of --server or --store")
    if store_url is not None:
        doc = _stored_incidents(store_url, model, open_only=not show_all)
    else:
        assert server is not None  # one of the two, checked above
        url = _model_url(server, model, "/incidents" + ("" if show_all else "?status=open"))
        doc = call("GET", url, token_env="WATCHKEEPER_READ_TOKEN")
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    if not doc["incidents"]:
        click.echo("no incidents" if show_all else "no open incidents")
    for i in doc["incidents"]:
        click.echo(f"{i['id']}  {i['status']:<8} {i['severity']:<8} opened {i['opened']}  "
                   f"{i['advice']['diagnosis']}: {i['title']}")


def _stored_incidents(url: str, model: str, *, open_only: bool) -> dict[str, Any]:
    """A model's incidents as its last saved alert state in the store holds them, each with
    its advice: what ``GET /v1/models/{model}/incidents`` answers."""
    from watchkeeper.alerts import AlertManager
    from watchkeeper.alerts.advice import incident_views
    from watchkeeper.store import Store
    from watchkeeper.suite import file as suitefile

    with Store(url) as store:
        active = store.active_suite(model)
        state, _ = store.load_alert_state(model)
    if active is None:
        raise WatchkeeperError(f"model {model!r} has no suite in the store")
    suite = Suite.from_dict(suitefile.parse(active.text, f"{model} v{active.version}"))
    manager = AlertManager.from_dict(state) if state is not None else None
    found = manager.incidents.values() if manager is not None else ()
    return {"model": model, "incidents": incident_views(found, suite.importance,
                                                        is_open=True if open_only else None)}


@main.command("quarantine")
@click.option("--server", required=True)
@click.option("--model", required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def quarantine_command(server: str, model: str, fmt: str) -> None:
    """List the batches the server set aside because folding them failed again and again
    (kept in the store, not in any window; token: $WATCHKEEPER_READ_TOKEN)."""
    doc = call("GET", _model_url(server, model, "/quarantine"),
               token_env="WATCHKEEPER_READ_TOKEN")
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    if not doc["batches"]:
        click.echo("no batches set aside")
    for b in doc["batches"]:
        click.echo(f"batch {b['seq']}  {b['kind']}  {b['rows']} rows  received "
                   f"{b['received_at']}  set aside {b['quarantined_at']}: {b['error']}")


@main.command("incident")
@click.argument("incident_id")
@click.option("--server", required=True)
@click.option("--model", required=True)
def incident_command(incident_id: str, server: str, model: str) -> None:
    """Show one incident: its alerts, likely causes and recommended actions."""
    i = call("GET", _model_url(server, model, f"/incidents/{incident_id}"),
             token_env="WATCHKEEPER_READ_TOKEN")
    click.echo(f"{i['id']}  {i['status']}  {i['severity']}  opened {i['opened']}"
               f"{'  acknowledged by ' + str(i['acknowledged_by']) if i['acknowledged'] else ''}")
    click.echo(i["title"])
    for a in i["alerts"]:
        click.echo(f"  - {a['state']:<8} {a['message']}")
    advice = i["advice"]
    click.echo(f"diagnosis: {advice['diagnosis']} (since {advice['began']})")
    for n, cause in enumerate(advice["causes"][:5], 1):
        click.echo(f"  {n}. {cause['name']}: {cause['detail']}")
    for action in advice["actions"]:
        click.echo(f"  → {action}")


@main.command("ack")
@click.argument("incident_id")
@click.option("--server", required=True)
@click.option("--model", required=True)
@click.option("--by", help="Who takes it.")
def ack_command(incident_id: str, server: str, model: str, by: str | None) -> None:
    """Acknowledge an incident (no more repeat notifications)."""
    query = f"?by={by}" if by else ""
    call("POST", _model_url(server, model, f"/incidents/{incident_id}/ack{query}"), b"")
    click.echo(f"{incident_id} acknowledged")


@main.command("silence")
@click.option("--server", required=True)
@click.option("--model", required=True)
@click.option("--match", "matches", multiple=True, required=True,
              help="label=value or label=~regex (monitor, family, column, segment, metric).")
@click.option("--hours", type=float, default=2.0, show_default=True)
@click.option("--comment")
def silence_command(server: str, model: str, matches: tuple[str, ...], hours: float,
                    comment: str | None) -> None:
    """Silence matching alerts for a while: still tracked, not notified."""
    matchers = {}
    for m in matches:
        key, sep, value = m.partition("=")
        if not sep:
            raise WatchkeeperError(f"--match {m!r}: expected label=value or label=~regex")
        matchers[key] = value if not value.startswith("~") else "=" + value
    body = json.dumps({"matchers": matchers, "hours": hours, "comment": comment}).encode()
    made = call("POST", _model_url(server, model, "/silences"), body,
                content_type="application/json")
    click.echo(f"silence {made.get('id')} until {made.get('until')}")


@main.command("unsilence")
@click.argument("silence_id")
@click.option("--server", required=True)
@click.option("--model", required=True)
def unsilence_command(silence_id: str, server: str, model: str) -> None:
    """End a silence now (its alerts are notified again from the next window)."""
    call("DELETE", _model_url(server, model, f"/silences/{silence_id}"))
    click.echo(f"silence {silence_id} removed")


@main.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def diff_command(old: Path, new: Path, fmt: str) -> None:
    """What NEW changes compared with OLD: columns, roles, monitors, thresholds and why."""
    change = diff(Suite.load(old), Suite.load(new))
    click.echo(json.dumps(change.to_dict(), indent=2) if fmt == "json" else change.to_text())


@main.command("grafana")
@click.option("--model", required=True, help="The model the dashboard opens on (a variable: "
              "the server's other models are one click away).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              default="grafana", show_default=True,
              help="Folder to write the dashboard JSON and the provisioning file to.")
@click.option("--folder", help="Where Grafana will read the dashboard JSON (the provisioning "
              "file's path; default: the output folder).")
def grafana_command(model: str, output: Path, folder: str | None) -> None:
    """Write a Grafana dashboard over the server's /metrics, and its provisioning file."""
    from watchkeeper.report import grafana

    board, provider = grafana.write(model, output, folder)
    click.echo(f"wrote {board} and {provider}; see docs/grafana.md to load them")


def _by_reason(idle: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for monitor, reason in idle.items():
        out.setdefault(reason, []).append(monitor)
    return out


def _column_notes(suite: Suite) -> list[str]:
    """Why columns got a role other than feature, were taken (or not) for personal data,
    or are monitored on part of their levels only: what a user should review."""
    from watchkeeper.baseline.schema import Kind, Role

    lines = []
    for c in suite.schema:
        if not c.note:
            continue
        if c.pii:
            lines.append(f"    {c.name}: {c.note} (not it? --not-pii {c.name})")
        elif "not personal data" in c.note:
            lines.append(f"    {c.name}: {c.note}; monitored (personal? --pii {c.name})")
        elif c.truncated or c.kind == Kind.TEXT or (
                c.role != Role.FEATURE and ("named like" in c.note or "time index" in c.note)):
            lines.append(f"    {c.name}: {c.role.value}, {c.note}")
    return ["  why", *lines] if lines else []


def _summary(suite: Suite, output: Path) -> str:
    roles: dict[str, list[str]] = {}
    for c in suite.schema:
        label = f"{c.name} ({c.kind.value}{', sensitive' if c.sensitive else ''})"
        roles.setdefault(c.role.value, []).append(label)
    kinds = Counter(m.type for m in suite.monitors)
    calibrated = [m for m in suite.monitors if m.calibrated]
    lines = [f"wrote {output}: {len(suite.schema.columns)} columns, "
             f"{len(suite.monitors)} monitors from {suite.reference.rows} reference rows"]
    for role, cols in roles.items():
        lines.append(f"  {role:<11} {', '.join(cols)}")
    lines += _column_notes(suite)
    lines.append("  monitors    " + ", ".join(f"{k} ×{v}" for k, v in kinds.items()))
    task = suite.schema.task
    if task is not None:
        lines.append(f"  task        {task.type}" + (f": classes {task.classes}"
                                                     if task.classification else ""))
        lines += [f"              {note}" for note in task.notes]
    for monitor, why in not_generated(suite.schema).items():
        lines.append(f"  left out    {monitor}: {cli_text(why)}")
    if calibrated:
        shares = ", ".join(f"{family} {alpha:.2g}" + (f" ({n} monitors)" if n > 1 else "")
                           for family, (alpha, n) in suite.family_alpha().items())
        lines.append(f"  thresholds  calibrated from the reference; alert budget {suite.budget:g} "
                     f"false alerts per window, α per family: {shares}")
    if suite.segments is not None:
        judged = suite.segments.judged(suite.reference)
        lines.append(f"  segments    {', '.join(s.name for s in suite.segments.by)}: "
                     f"{len(judged)} values with ≥ {suite.segments.min_rows} reference rows "
                     f"judged on their own, {suite.segments.share:.0%} of the α of drift, "
                     "quality and performance monitors split over them")
    idle = suite.idle()
    if idle:
        lines.append(f"  no share    {len(idle)} monitors cannot run on the reference's columns "
                     "and take no share of the budget:")
        for reason, ids in _by_reason(idle).items():
            lines.append(f"              {', '.join(ids)}: {cli_text(reason)}")
    lines.append(f"Review roles in {output}, then: watchkeeper check DATA --suite {output}")
    return "\n".join(lines)


@main.command("serve")
@click.option("--store", "store_url", default="sqlite:///watchkeeper.db", show_default=True,
              help="Store URL: sqlite:///file.db or postgresql+psycopg://user@host/db.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--suite", "suite_paths", multiple=True, type=click.Path(path_type=Path),
              help="MODEL=FILE: deploy this suite for a model that has none yet (repeatable).")
@click.option("--window", "window_text", default="5m", show_default=True,
              help="Window length, e.g. 1m, 5m, 1h.")
@click.option("--grace", "grace_text", default="1m", show_default=True,
              help="How long after its end a window waits for late events before closing.")
@click.option("--retention", "retention_text", default="7d", show_default=True,
              help="How long prediction records are kept for joining late labels.")
@click.option("--no-auth", is_flag=True,
              help="Serve without tokens (only sensible on a loopback address).")
@click.option("--webhook", "webhooks", multiple=True,
              help="Send incident notifications here (Alertmanager-compatible JSON).")
@click.option("--slack", "slack_urls", multiple=True, help="Slack incoming-webhook URL.")
@click.option("--notify-log", is_flag=True, help="Print incident notifications on stdout.")
@click.option("--teams", "teams_urls", multiple=True,
              help="Microsoft Teams Workflows webhook URL (an Adaptive Card per notification).")
@click.option("--pagerduty", "pagerduty_keys", multiple=True, metavar="env:VAR|file:PATH",
              help="Page through PagerDuty (Events API v2): where to read the integration's "
                   "routing key (never the key itself).")
@click.option("--pagerduty-url", default=PAGERDUTY_URL, show_default=True,
              help="PagerDuty Events API endpoint (EU: https://events.eu.pagerduty.com/v2/"
                   "enqueue).")
@click.option("--opsgenie", "opsgenie_keys", multiple=True, metavar="env:VAR|file:PATH",
              help="Alert through Opsgenie (Alert API): where to read the API integration's "
                   "key (GenieKey).")
@click.option("--opsgenie-url", default=OPSGENIE_URL, show_default=True,
              help="Opsgenie API (EU: https://api.eu.opsgenie.com).")
@click.option("--notify", "routes", multiple=True, metavar="SELECTOR=TARGET[+TARGET],...",
              help="Route notifications by severity or family, e.g. "
                   "critical=pagerduty,warning=slack,drift=teams (targets: pagerduty, opsgenie, "
                   "slack, teams, webhook, log). A notifier named in no route gets every "
                   "notification.")
@click.option("--otlp", "otlp_url", metavar="URL",
              help="Export window metrics, findings and incident transitions over OTLP/HTTP "
                   "(protobuf) to this OpenTelemetry collector, e.g. http://127.0.0.1:4318 "
                   "(needs the otel extra).")
@click.option("--otlp-interval", "otlp_interval_text", default="60s", show_default=True,
              help="How often --otlp also sends the server's own metrics (those of /metrics).")
@click.option("--lease-ttl", "lease_text", default="15s", show_default=True,
              help="Several servers may share a store: the one holding its fold lease folds "
                   "the events (renewed every third of this); another takes over within "
                   "this long when it dies. 0: fold without a lease (the only server).")
@click.option("--own-event-log", is_flag=True,
              help="SQLite: append ingested batches to an event-log file of this server's "
                   "own next to the store's (STORE-logs/), which the folding server copies "
                   "into the store, so that a server frozen inside a write (a VM pause, "
                   "SIGSTOP) holds up no other server's ingest. For several servers on one "
                   "SQLite file.")
@click.option("--fold-mib", type=click.IntRange(min=1), default=64, show_default=True,
              help="Event bodies read per fold step, at most (at least one batch): bounds "
                   "the server's memory whatever the batch size.")
@click.option("--ingest-mib", type=click.IntRange(min=1), default=256, show_default=True,
              help="Request bodies ingested at once, at most (each held about 6 times while "
                   "ingested): beyond it, 503 with Retry-After; a larger body is refused (413).")
@click.option("--login-failures", type=click.IntRange(min=0), default=5, show_default=True,
              help="Failed dashboard logins from one address within --login-window before "
                   "it is refused (429) until the window has passed; 0: no limit.")
@click.option("--login-window", "login_window_text", default="1m", show_default=True,
              help="The window of --login-failures.")
@click.option("--forwarded-allow-ips", default="127.0.0.1,::1", show_default=True,
              help="Proxies trusted to name the client (X-Forwarded-For), comma-separated "
                   "addresses or networks, '*' for any, '' for none: the address whose "
                   "failed logins and tokens are counted is the forwarded one behind these, "
                   "the connection's otherwise.")
@click.option("--show-clients", is_flag=True,
              help="Keep _client ids as sent (by default they are stored and shown as a "
                   "keyed hash).")
@click.option("--metrics-open", is_flag=True,
              help="Serve /metrics without a token (by default it needs the read, write or "
                   "WATCHKEEPER_METRICS_TOKEN token).")
@click.option("--body-timeout", "body_timeout_text", default="10s", show_default=True,
              help="A request body that stops arriving for this long is answered 408.")
@click.option("--max-columns", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Columns a batch may have besides its suite's and the reserved ones; "
                   "a wider one is refused (422).")
def serve_command(store_url: str, host: str, port: int, suite_paths: tuple[Path, ...],
                  window_text: str, grace_text: str, retention_text: str, no_auth: bool,
                  webhooks: tuple[str, ...], slack_urls: tuple[str, ...],
                  notify_log: bool, teams_urls: tuple[str, ...],
                  pagerduty_keys: tuple[str, ...], pagerduty_url: str,
                  opsgenie_keys: tuple[str, ...], opsgenie_url: str, routes: tuple[str, ...],
                  otlp_url: str | None, otlp_interval_text: str, lease_text: str,
                  own_event_log: bool, fold_mib: int, ingest_mib: int,
                  login_failures: int, login_window_text: str, forwarded_allow_ips: str,
                  show_clients: bool, metrics_open: bool, body_timeout_text: str,
                  max_columns: int) -> None:
    """Run the ingestion and query server. Tokens come from WATCHKEEPER_WRITE_TOKEN and
    WATCHKEEPER_READ_TOKEN (and WATCHKEEPER_METRICS_TOKEN, for /metrics only). Any number
    of servers may share one store: each ingests and answers reads; one at a time folds
    (see --lease-ttl)."""
    import os

    from watchkeeper.run.check import parse_duration

    try:
        import uvicorn

        from watchkeeper.server import Tokens, create_app
    except ImportError as exc:
        raise WatchkeeperError(f"the server needs extra packages ({exc.name}): "
                               "pip install 'watchkeeper[server]'") from None
    write, read = os.environ.get("WATCHKEEPER_WRITE_TOKEN"), os.environ.get(
        "WATCHKEEPER_READ_TOKEN")
    if not no_auth and not (write and read):
        raise WatchkeeperError("set WATCHKEEPER_WRITE_TOKEN and WATCHKEEPER_READ_TOKEN "
                               "(or pass --no-auth on a loopback address)")
    suites = {}
    for item in suite_paths:
        model, sep, path = str(item).partition("=")
        if not sep:
            model, path = Path(item).stem, str(item)
        suites[model] = Path(path).read_text(encoding="utf-8")
    from watchkeeper.alerts import notifiers as n

    notifiers = n.route({
        "webhook": [n.WebhookNotifier(u) for u in webhooks],
        "slack": [n.SlackNotifier(u) for u in slack_urls],
        "teams": [n.TeamsNotifier(u) for u in teams_urls],
        "pagerduty": [n.PagerDutyNotifier(n.read_secret(k, "--pagerduty"), pagerduty_url)
                      for k in pagerduty_keys],
        "opsgenie": [n.OpsgenieNotifier(n.read_secret(k, "--opsgenie"), opsgenie_url)
                     for k in opsgenie_keys],
        "log": [n.LogNotifier()] if notify_log else []}, routes)
    exporter = _otlp_exporter(otlp_url)
    lease_ttl = (parse_duration(lease_text, "lease_ttl").total_seconds()
                 if lease_text.strip() not in ("0", "0s") else None)
    login_window = parse_duration(login_window_text, "login_window")
    metrics = os.environ.get("WATCHKEEPER_METRICS_TOKEN") or None
    app = create_app(store_url, tokens=Tokens() if no_auth else Tokens(write, read, metrics),
                     window=parse_duration(window_text),
                     grace=parse_duration(grace_text, "grace"),
                     retention=parse_duration(retention_text, "retention"), suites=suites,
                     notifiers=notifiers, lease_ttl=lease_ttl, own_log=own_event_log,
                     fold_bytes=fold_mib * 2**20,
                     ingest_bytes=ingest_mib * 2**20, login_failures=login_failures,
                     login_window=login_window.total_seconds(), show_clients=show_clients,
                     metrics_open=metrics_open,
                     body_timeout=parse_duration(body_timeout_text, "body_timeout").total_seconds(),
                     max_columns=max_columns, exporter=exporter,
                     export_interval=parse_duration(otlp_interval_text,
                                                    "otlp_interval").total_seconds())
    uvicorn.run(app, host=host, port=port, log_level="warning",
                proxy_headers=bool(forwarded_allow_ips.strip()),
                forwarded_allow_ips=forwarded_allow_ips.strip() or None)


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
