"""Commands of the server and its models: ``serve``, ``deploy``, ``rollback``, the
incidents (``incidents``, ``incident``, ``ack``), silences, quarantined batches and the
Grafana dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from watchkeeper.cli.common import _otlp_exporter, _print_deployed, main
from watchkeeper.errors import WatchkeeperError
from watchkeeper.suite.core import Suite
from watchkeeper.suite.deploy import call, deploy, rollback
from watchkeeper.suite.diff import diff

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"  # as alerts.notifiers.pagerduty
OPSGENIE_URL = "https://api.opsgenie.com"  # (not imported: the CLI starts light)


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
