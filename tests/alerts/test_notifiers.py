"""Notifiers against real receivers on 127.0.0.1: HTTP (webhook, Slack) and SMTP."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Receiver
from watchkeeper.alerts import AlertManager, Notification
from watchkeeper.alerts.notifiers import (
    Dispatcher,
    EmailNotifier,
    LogNotifier,
    Notifier,
    SlackNotifier,
    WebhookNotifier,
    mask_url,
)
from watchkeeper.alerts.notifiers.smtp import message_id
from watchkeeper.errors import DeliveryError
from watchkeeper.monitors.base import Finding, Severity

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SLACK_TOKEN = "T0AAAAAAA/B0BBBBBBB/xoxbSECRETsecretSECRET24"
BEARER = "Bearer very-secret-bearer-token"


def notifications() -> list[Notification]:
    """An open and a resolve notification from a real AlertManager run."""
    am = AlertManager("income", external_url="https://wk.example.com")
    drift = Finding("feature_drift", "drift", "AGEP", 0.21, 0.06, Severity.CRITICAL,
                    "AGEP distribution changed (JS distance 0.210 > 0.060)", {"psi": 0.18})
    out = []
    for i, found in enumerate([[drift], [drift], [], []]):
        out += am.process(f"w{i + 1}", T0 + timedelta(days=i), found)
    assert [n.kind for n in out] == ["open", "resolve"]
    return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- webhook ---------------------------------------------------------------------------


def test_webhook_posts_alertmanager_json(receiver: Receiver, tmp_path: Path):
    hook = WebhookNotifier(f"{receiver.url}/alerts?token=abc123secret",
                           headers={"Authorization": BEARER, "X-Team": "ml"})
    assert isinstance(hook, Notifier)
    log = tmp_path / "notifications.jsonl"
    deliveries = Dispatcher([hook], log_path=log).send_all(notifications())
    assert [d.outcome for d in deliveries] == ["sent", "sent"]
    assert len(receiver.requests) == 2
    first, last = (r["json"] for r in receiver.requests)
    assert receiver.requests[0]["headers"]["Authorization"] == BEARER
    assert receiver.requests[0]["path"] == "/alerts?token=abc123secret"
    # a notification sent again after a crash carries the same key: receivers can drop it
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.requests]
    assert keys == [n.key for n in notifications()] and len(set(keys)) == 2
    for body in (first, last):
        assert {"version", "groupKey", "status", "receiver", "groupLabels", "commonLabels",
                "commonAnnotations", "externalURL", "alerts"} <= set(body)
        assert body["version"] == "4"
        (alert,) = body["alerts"]
        assert {"status", "labels", "annotations", "startsAt", "endsAt",
                "fingerprint"} <= set(alert)
        assert alert["labels"]["alertname"] == "feature_drift"
        assert alert["labels"]["column"] == "AGEP"
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["summary"].startswith("AGEP distribution changed")
    assert first["status"] == "firing" and first["alerts"][0]["endsAt"].startswith("0001")
    assert last["status"] == "resolved" and last["alerts"][0]["endsAt"].startswith("2024")
    assert first["groupKey"] == last["groupKey"]
    entries = read_log(log)
    assert [(e["kind"], e["status"], e["outcome"], e["attempts"]) for e in entries] == [
        ("open", "firing", "sent", 1), ("resolve", "resolved", "sent", 1)]
    assert {"time", "incident", "notifier", "outcome", "attempts", "error"} <= set(entries[0])
    text = log.read_text()
    assert "abc123secret" not in text and "very-secret" not in text
    assert "very-secret" not in repr(hook) and "abc123secret" not in repr(hook)


def test_webhook_retries_with_backoff_then_succeeds(tmp_path: Path):
    waits: list[float] = []
    log = tmp_path / "log.jsonl"
    with Receiver([503, 500]) as r:
        d = Dispatcher([WebhookNotifier(r.url)], retries=3, backoff=0.05, log_path=log,
                       sleep=waits.append)
        (delivery,) = d.send(notifications()[0])
    assert delivery.outcome == "sent" and delivery.attempts == 3 and delivery.error is None
    assert waits == [0.05, 0.1]  # exponential backoff
    assert len(r.requests) == 3
    (entry,) = read_log(log)
    assert entry["outcome"] == "sent" and entry["attempts"] == 3


def test_real_backoff_sleeps(receiver: Receiver):
    import time

    receiver.statuses = [500]
    start = time.monotonic()
    (delivery,) = Dispatcher([WebhookNotifier(receiver.url)], retries=1,
                             backoff=0.2).send(notifications()[0])
    assert delivery.attempts == 2 and delivery.outcome == "sent"
    assert 0.2 <= time.monotonic() - start < 5


def test_always_failing_receiver_is_logged_not_raised(tmp_path: Path, caplog):
    log = tmp_path / "log.jsonl"
    with Receiver([500] * 10) as r:
        d = Dispatcher([WebhookNotifier(f"{r.url}/hook/s3cr3tT0ken99")], retries=3,
                       backoff=0.001, log_path=log)
        (delivery,) = d.send(notifications()[0])
    assert delivery.outcome == "failed" and delivery.attempts == 4
    assert delivery.error == "HTTP 500 Internal Server Error"
    assert len(r.requests) == 4
    (entry,) = read_log(log)
    assert entry["outcome"] == "failed" and entry["attempts"] == 4 and entry["error"]
    assert "s3cr3tT0ken99" not in log.read_text()
    assert "s3cr3tT0ken99" not in caplog.text and "failed after 4 attempt" in caplog.text


def test_permanent_errors_are_not_retried(tmp_path: Path):
    with Receiver([404, 404]) as r:
        (delivery,) = Dispatcher([WebhookNotifier(r.url)], backoff=0.001).send(
            notifications()[0])
    assert delivery.outcome == "failed" and delivery.attempts == 1
    assert delivery.error == "HTTP 404 Not Found"


def test_unreachable_receiver_and_broken_notifier_never_raise(tmp_path: Path):
    with Receiver() as r:
        url = r.url  # closed after this block: connection refused
    secret = "pw-in-an-exception"

    class Broken:
        def send(self, notification: Notification) -> None:
            raise RuntimeError(f"boom with {secret}")

        def secrets(self) -> list[str]:
            return [secret]

    log = tmp_path / "log.jsonl"
    d = Dispatcher([WebhookNotifier(url, timeout=2), Broken()], retries=1, backoff=0.001,
                   log_path=log)
    deliveries = d.send(notifications()[0])
    assert [x.outcome for x in deliveries] == ["failed", "failed"]
    assert deliveries[0].error.startswith("connection failed")
    assert deliveries[1].error == "RuntimeError: boom with ***"
    assert secret not in log.read_text()


# -- Slack -----------------------------------------------------------------------------


def test_slack_message_format(receiver: Receiver, tmp_path: Path):
    url = f"{receiver.url}/services/{SLACK_TOKEN}"
    slack = SlackNotifier(url)
    log = tmp_path / "log.jsonl"
    deliveries = Dispatcher([slack], log_path=log).send_all(notifications())
    assert [d.outcome for d in deliveries] == ["sent", "sent"]
    assert receiver.requests[0]["path"] == f"/services/{SLACK_TOKEN}"
    body = receiver.requests[0]["json"]
    assert set(body) == {"text", "blocks"}
    assert "[FIRING] income: feature_drift on AGEP (critical)" in body["text"]
    header, section, context = body["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert section["type"] == "section" and "`feature_drift` AGEP" in section["text"]["text"]
    assert context["type"] == "context" and "wk.example.com" in context["elements"][0]["text"]
    # the notification's key, the same when sent again after a crash (#19)
    keys = [n.key for n in notifications()]
    assert [r["json"]["blocks"][2]["block_id"] for r in receiver.requests] == [
        f"watchkeeper:{k}" for k in keys]
    assert f"key `{keys[0]}`" in context["elements"][0]["text"]
    assert "RESOLVED" in receiver.requests[1]["json"]["text"]
    assert "SECRET" not in log.read_text() and "SECRET" not in repr(slack)


def test_slack_url_masking():
    assert repr(SlackNotifier(f"https://hooks.slack.com/services/{SLACK_TOKEN}")) == \
        "SlackNotifier('https://hooks.slack.com/services/***')"
    assert mask_url("http://127.0.0.1:9000/hook") == "http://127.0.0.1:9000/hook"
    assert mask_url("not a url at all") == "not a url at all"


# -- e-mail ----------------------------------------------------------------------------


class SMTPServer:
    """aiosmtpd on 127.0.0.1 at a free port, optionally requiring a login."""

    def __init__(self, password: str | None = None) -> None:
        pytest.importorskip("aiosmtpd")  # in the dev extra
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[Any] = []
        server = self

        class Handler:
            async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
                server.messages.append(envelope)
                return "250 OK"

        def authenticator(srv: Any, session: Any, envelope: Any, mechanism: str,
                          data: Any) -> AuthResult:
            ok = data.login == b"watchkeeper" and data.password == (password or "").encode()
            return AuthResult(success=ok, handled=False, auth_data=data)

        class LoopbackController(Controller):
            def _trigger_server(self) -> None:  # learn the port the OS chose for port 0
                self.port = self.server.sockets[0].getsockname()[1]
                super()._trigger_server()

        kwargs: dict[str, Any] = {}
        if password is not None:
            kwargs = {"authenticator": authenticator, "auth_require_tls": False,
                      "auth_exclude_mechanism": ["LOGIN"]}
        self.controller = LoopbackController(Handler(), hostname="127.0.0.1", port=0,
                                             ready_timeout=10, **kwargs)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        self.port = self.controller.port
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()


def test_email_is_received():
    with SMTPServer() as smtp:
        mail = EmailNotifier("127.0.0.1", smtp.port, "wk@example.com",
                             ["oncall@example.com", "ml@example.com"], timeout=5)
        deliveries = Dispatcher([mail]).send_all(notifications())
    assert [d.outcome for d in deliveries] == ["sent", "sent"]
    assert len(smtp.messages) == 2
    envelope = smtp.messages[0]
    assert envelope.mail_from == "wk@example.com"
    assert envelope.rcpt_tos == ["oncall@example.com", "ml@example.com"]
    msg = message_from_bytes(envelope.content)
    assert msg["Subject"] == "[FIRING] income: feature_drift on AGEP (critical)"
    body = msg.get_payload(decode=True).decode()
    assert "AGEP distribution changed" in body and "https://wk.example.com/incidents/" in body
    assert message_from_bytes(smtp.messages[1].content)["Subject"].startswith("[RESOLVED]")


def test_email_message_id_is_the_same_for_the_same_notification():
    """A notification sent again (after a crash between a send and its record) has the
    same Message-ID, so mail systems drop the copy, and names its key (#19)."""
    with SMTPServer() as smtp:
        mail = EmailNotifier("127.0.0.1", smtp.port, "wk@example.com", ["a@example.com"],
                             timeout=5)
        Dispatcher([mail]).send_all(notifications())
        Dispatcher([mail]).send_all(notifications())  # the same two, sent again
    received = [message_from_bytes(m.content) for m in smtp.messages]
    ids = [m["Message-ID"] for m in received]
    keys = [n.key for n in notifications()]
    assert [m["X-Watchkeeper-Key"] for m in received] == keys * 2
    assert ids[:2] == ids[2:] and ids[0] != ids[1]
    incident, number = keys[0].split("/")
    assert ids[0] == f"<{incident}.{number}@watchkeeper>"
    assert message_id("odd id/with spaces/3") == message_id("odd id/with spaces/3")
    assert re.fullmatch(r"<[0-9a-f]{32}@watchkeeper>", message_id("odd id/with spaces/3"))


def test_email_login_and_password_never_logged(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    with SMTPServer(password="right-horse-battery") as smtp:
        good = EmailNotifier("127.0.0.1", smtp.port, "wk@example.com", ["a@example.com"],
                             username="watchkeeper", password="right-horse-battery",
                             timeout=5)
        bad = EmailNotifier("127.0.0.1", smtp.port, "wk@example.com", ["a@example.com"],
                            username="watchkeeper", password="wrong-staple-horse", timeout=5)
        deliveries = Dispatcher([good, bad], backoff=0.001, log_path=log).send(
            notifications()[0])
    assert [d.outcome for d in deliveries] == ["sent", "failed"]
    assert deliveries[1].attempts == 1 and "authentication failed" in deliveries[1].error
    assert len(smtp.messages) == 1
    text = log.read_text()
    assert "right-horse" not in text and "wrong-staple" not in text
    assert "right-horse" not in repr(good) and "password='***'" in repr(good)


def test_email_unreachable_is_a_delivery_error():
    with SMTPServer() as smtp:
        port = smtp.port
    with pytest.raises(DeliveryError, match="SMTP"):
        EmailNotifier("127.0.0.1", port, "wk@example.com", ["a@example.com"],
                      timeout=2).send(notifications()[0])
    with pytest.raises(ValueError, match="recipient"):
        EmailNotifier("127.0.0.1", port, "wk@example.com", [])


# -- log -------------------------------------------------------------------------------


def test_log_notifier_lines():
    out = io.StringIO()
    Dispatcher([LogNotifier(out), LogNotifier(out, as_json=True)]).send_all(notifications())
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert "[FIRING] income: feature_drift on AGEP (critical)" in lines[0]
    assert json.loads(lines[1])["status"] == "firing"
    assert "[RESOLVED]" in lines[2] and json.loads(lines[3])["status"] == "resolved"
