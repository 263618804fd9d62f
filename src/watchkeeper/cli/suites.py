"""Commands that build and compare suite files: ``init`` and ``diff``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import click
import yaml

from watchkeeper.cli.common import (
    _ENGINE_OPTIONS,
    _csv_options,
    _print_deployed,
    _read_input,
    _spark_session,
    _split_names,
    cli_text,
    main,
)
from watchkeeper.errors import DataError, SuiteError, WatchkeeperError
from watchkeeper.io.delimited import CsvLayout
from watchkeeper.suite.build import init
from watchkeeper.suite.core import Suite
from watchkeeper.suite.deploy import deploy
from watchkeeper.suite.diff import diff
from watchkeeper.suite.generate import DEFAULT_BUDGET, not_generated


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


@main.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def diff_command(old: Path, new: Path, fmt: str) -> None:
    """What NEW changes compared with OLD: columns, roles, monitors, thresholds and why."""
    change = diff(Suite.load(old), Suite.load(new))
    click.echo(json.dumps(change.to_dict(), indent=2) if fmt == "json" else change.to_text())


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
