"""PagerDuty, Opsgenie and Teams against loopback receivers: payloads field by field against
each service's documented schema, one incident's lifecycle, retries; routing; secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import Receiver, run
from watchkeeper.alerts import AlertManager, Notification
from watchkeeper.alerts.notifiers import (
    Dispatcher,
    OpsgenieNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    TeamsNotifier,
    WebhookNotifier,
    read_secret,
    route,
)
from watchkeeper.errors import ConfigError
from watchkeeper.monitors.base import Finding, Severity

T0 = datetime(2024, 1, 1, tzinfo=UTC)
KEY = "R0UTINGkey0123456789abcdef012345"
GENIE = "0123abcd-0123-abcd-0123-0123456789ab"


def lifecycle(severity: Severity = Severity.CRITICAL, model: str = "income"
              ) -> list[Notification]:
    """One incident from a real AlertManager: open, acknowledge (from its outbox), resolve."""
    am = AlertManager(model, external_url="https://wk.example.com")
    drift = Finding("feature_drift", "drift", "AGEP", 0.21, 0.06, severity,
                    "AGEP distribution changed (JS distance 0.210 > 0.060)")
    out = am.process("w1", T0, [drift]) + am.process("w2", T0 + timedelta(days=1), [drift])
    am.acknowledge(out[0].incident, by="ops")
    out += am.take_outbox()
    for i in (2, 3):
        out += am.process(f"w{i + 1}", T0 + timedelta(days=i), [])
    assert [n.kind for n in out] == ["open", "acknowledge", "resolve"]
    return out


def no_sleep(seconds: float) -> None:
    pass


def test_pagerduty_trigger_acknowledge_resolve_share_one_dedup_key(tmp_path: Path):
    with Receiver([202, 202, 202]) as r:
        d = Dispatcher([PagerDutyNotifier(KEY, f"{r.url}/v2/enqueue")],
                       log_path=tmp_path / "n.log")
        deliveries = d.send_all(lifecycle())
    assert [x.outcome for x in deliveries] == ["sent"] * 3
    assert [q["path"] for q in r.requests] == ["/v2/enqueue"] * 3
    trigger, ack, resolve = (q["json"] for q in r.requests)
    incident = lifecycle()[0].incident
    key = f"watchkeeper/income/{incident}"
    assert set(trigger) == {"routing_key", "event_action", "dedup_key", "payload", "links"}
    assert (trigger["routing_key"], trigger["event_action"], trigger["dedup_key"]) == (
        KEY, "trigger", key)
    p = trigger["payload"]
    assert set(p) == {"summary", "source", "severity", "timestamp", "component", "group",
                      "class", "custom_details"}
    assert p["summary"] == "[FIRING] income: feature_drift on AGEP (critical)"
    assert len(p["summary"]) <= 1024 and p["severity"] in ("critical", "error", "warning", "info")
    assert p["severity"] == "critical" and p["source"] == "watchkeeper"
    assert datetime.fromisoformat(p["timestamp"]) == T0 + timedelta(days=1)
    assert (p["component"], p["group"], p["class"]) == ("income", "drift", "feature_drift")
    details = p["custom_details"]
    assert (details["incident"], details["window"], details["kind"]) == (incident, "w2", "open")
    assert details["alerts"] == [{"monitor": "feature_drift", "family": "drift",
                                  "severity": "critical", "state": "firing", "value": "0.21",
                                  "threshold": "0.06", "column": "AGEP", "message":
                                  "AGEP distribution changed (JS distance 0.210 > 0.060)"}]
    assert trigger["links"] == [{"href": f"https://wk.example.com/incidents/{incident}",
                                 "text": "watchkeeper incident"}]
    assert ack == {"routing_key": KEY, "event_action": "acknowledge", "dedup_key": key}
    assert resolve == {"routing_key": KEY, "event_action": "resolve", "dedup_key": key}
    logged = (tmp_path / "n.log").read_text()
    assert KEY not in logged and "routing_key='***'" in logged


def test_pagerduty_retries_after_429_and_500_with_the_same_event(tmp_path: Path):
    with Receiver([429, 500, 202]) as r:
        d = Dispatcher([PagerDutyNotifier(KEY, f"{r.url}/v2/enqueue")], retries=3,
                       sleep=no_sleep)
        (delivery,) = d.send(lifecycle()[0])
    assert (delivery.outcome, delivery.attempts) == ("sent", 3)
    bodies = [q["json"] for q in r.requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]  # same dedup key


def test_pagerduty_400_is_not_retried_and_the_key_never_logged(tmp_path: Path, caplog):
    with Receiver([400]) as r:
        d = Dispatcher([PagerDutyNotifier(KEY, f"{r.url}/v2/enqueue")], retries=3,
                       sleep=no_sleep, log_path=tmp_path / "n.log")
        (delivery,) = d.send(lifecycle()[0])
    assert (delivery.outcome, delivery.attempts, delivery.error) == (
        "failed", 1, "HTTP 400 Bad Request")
    assert KEY not in caplog.text + (tmp_path / "n.log").read_text() + repr(d)


def test_opsgenie_create_acknowledge_close_by_alias():
    long_model = "m" * 200
    with Receiver([202, 202, 202]) as r:
        d = Dispatcher([OpsgenieNotifier(GENIE, r.url)])
        notes = lifecycle(model=long_model)
        assert [x.outcome for x in d.send_all(notes)] == ["sent"] * 3
    create, ack, close = r.requests
    alias = f"watchkeeper/{long_model}/{notes[0].incident}"
    for q in r.requests:
        assert q["headers"]["Authorization"] == f"GenieKey {GENIE}"
        assert q["headers"]["Content-Type"] == "application/json"
    assert create["path"] == "/v2/alerts"
    body = create["json"]
    assert set(body) == {"message", "alias", "description", "priority", "source", "entity",
                         "tags", "details"}
    assert len(body["message"]) == 130 and body["message"].startswith("[FIRING] mmm")
    assert body["alias"] == alias and len(alias) <= 512
    assert body["priority"] == "P1" and body["priority"] in ("P1", "P2", "P3", "P4", "P5")
    assert body["source"] == "watchkeeper" and body["entity"] == long_model
    assert body["tags"] == sorted(["watchkeeper", f"model:{long_model}", "family:drift"])
    assert all(isinstance(v, str) for v in body["details"].values())
    assert body["details"]["incident"] == notes[0].incident
    assert json.loads(body["details"]["alerts"])[0]["column"] == "AGEP"
    assert body["description"] == notes[0].text()
    assert ack["path"] == f"/v2/alerts/{quote(alias, safe='')}/acknowledge?identifierType=alias"
    assert ack["json"] == {"source": "watchkeeper", "user": "ops", "note": notes[1].subject}
    assert close["path"] == f"/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias"
    assert close["json"] == {"source": "watchkeeper", "note": notes[2].subject}


def test_opsgenie_priority_of_a_warning_and_a_retry_after_500():
    with Receiver([500, 202]) as r:
        d = Dispatcher([OpsgenieNotifier(GENIE, r.url)], sleep=no_sleep)
        (delivery,) = d.send(lifecycle(Severity.WARNING)[0])
    assert delivery.attempts == 2 and delivery.outcome == "sent"
    assert [q["json"]["priority"] for q in r.requests] == ["P3", "P3"]


def test_teams_posts_an_adaptive_card():
    with Receiver([202, 202, 202]) as r:
        d = Dispatcher([TeamsNotifier(f"{r.url}/workflows/abc/triggers/manual?sig=s3cretsig")])
        notes = lifecycle()
        d.send_all(notes)
    bodies = [q["json"] for q in r.requests]
    assert len(bodies) == 3
    for body, n in zip(bodies, notes, strict=True):
        assert body["type"] == "message" and len(body["attachments"]) == 1
        att = body["attachments"][0]
        assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert att["contentUrl"] is None
        card = att["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
        assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
        title, lines, facts = card["body"]
        assert (title["type"], title["text"], title["wrap"]) == ("TextBlock", n.subject, True)
        assert lines["type"] == "TextBlock" and "feature_drift AGEP" in lines["text"]
        assert facts["type"] == "FactSet"
        assert {"title": "Incident", "value": n.incident} in facts["facts"]
        assert {"title": "Key", "value": n.key} in facts["facts"]  # the same sent again
        assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open incident",
                                    "url": f"https://wk.example.com/incidents/{n.incident}"}]
    assert [b["attachments"][0]["content"]["body"][0]["color"] for b in bodies] == [
        "Attention", "Accent", "Good"]
    assert {"title": "Acknowledged by", "value": "ops"} in \
        bodies[1]["attachments"][0]["content"]["body"][2]["facts"]


def test_routing_by_severity_and_family_and_acknowledgements_only_to_pagers():
    with Receiver() as pd, Receiver() as slack, Receiver() as hook:
        notifiers = route({"pagerduty": [PagerDutyNotifier(KEY, pd.url)],
                           "slack": [SlackNotifier(slack.url)],
                           "webhook": [WebhookNotifier(hook.url)]},
                          ["critical=pagerduty,warning=slack", "drift:critical=slack"])
        d = Dispatcher(notifiers)
        critical, warning = lifecycle(Severity.CRITICAL), lifecycle(Severity.WARNING)
        d.send_all(critical + warning)
    assert [q["json"]["event_action"] for q in pd.requests] == [
        "trigger", "acknowledge", "resolve"]  # the critical incident only
    assert [q["json"]["text"].split("]")[0] for q in slack.requests] == [
        ":red_circle: [FIRING", ":red_circle: [ACKNOWLEDGED", ":large_green_circle: [RESOLVED",
        ":large_orange_circle: [FIRING", ":large_orange_circle: [ACKNOWLEDGED",
        ":large_green_circle: [RESOLVED"]  # drift:critical and warning
    # named in no route: everything, except acknowledgements (Alertmanager has none)
    assert [q["json"]["status"] for q in hook.requests] == ["firing", "resolved"] * 2


@pytest.mark.parametrize(("spec", "message"), [
    ("critical=pagerdty", "no 'pagerdty' notifier is configured (configured: pagerduty, "
                          "slack); did you mean 'pagerduty'?"),
    ("critcal=slack", "'critcal' is neither a severity (critical, warning) nor a family"),
    ("drift:fatal=slack", "'fatal' is not a severity (one of critical, warning)"),
    ("critical", "'critical' is not SELECTOR=TARGET"),
])
def test_bad_routes_are_clear_errors(spec: str, message: str):
    with pytest.raises(ConfigError, match=r"^--notify: ") as e:
        route({"pagerduty": [PagerDutyNotifier(KEY)], "slack": [SlackNotifier("http://x")],
               "teams": []}, [spec])
    assert message in str(e.value)


def test_secrets_come_from_env_or_a_file_and_errors_never_show_them(tmp_path: Path,
                                                                    monkeypatch: Any):
    monkeypatch.setenv("PD_KEY", f"  {KEY}\n")
    assert read_secret("env:PD_KEY", "--pagerduty") == KEY
    (tmp_path / "key").write_text(GENIE + "\n")
    assert read_secret(f"file:{tmp_path / 'key'}", "--opsgenie") == GENIE
    for source, message in [("env:NOPE_UNSET", "environment variable NOPE_UNSET is not set"),
                            (f"file:{tmp_path / 'missing'}", "cannot read"),
                            (KEY, "give env:VARIABLE or file:PATH")]:
        with pytest.raises(ConfigError, match=message) as e:
            read_secret(source, "--pagerduty")
        assert KEY not in str(e.value)
    assert KEY not in repr(PagerDutyNotifier(KEY)) and GENIE not in repr(OpsgenieNotifier(GENIE))


def test_serve_refuses_a_bad_route_or_a_literal_key_in_one_line(tmp_path: Path):
    bad_route = run("serve", "--no-auth", "--store", f"sqlite:///{tmp_path / 'wk.db'}",
                    "--slack", "http://127.0.0.1:9/hook", "--notify", "critical=pagerduty",
                    cwd=tmp_path)
    assert bad_route.returncode == 2
    assert bad_route.stderr.strip() == (
        "error: --notify: no 'pagerduty' notifier is configured (configured: slack)")
    literal = run("serve", "--no-auth", "--store", f"sqlite:///{tmp_path / 'wk.db'}",
                  "--pagerduty", KEY, cwd=tmp_path)
    assert literal.returncode == 2 and KEY not in literal.stderr + literal.stdout
    assert "give env:VARIABLE or file:PATH" in literal.stderr
