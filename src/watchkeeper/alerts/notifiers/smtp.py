"""E-mail through an SMTP server (plain, STARTTLS or TLS)."""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

from watchkeeper.alerts.notifiers.base import MASK
from watchkeeper.errors import DeliveryError

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification


_ATOM = re.compile(r"[0-9A-Za-z-]+")


def message_id(key: str) -> str:
    """The ``Message-ID`` of the notification with this
    :attr:`~watchkeeper.alerts.notification.Notification.key`: the same key gives the same
    one (RFC 5322 ``<id-left@id-right>``), so a mail system that drops a message it already
    has drops the copy sent again after a crash between sending and recording it. A key
    that is not plain letters, digits and dashes is hashed.

    >>> message_id("3f9a0c12be47/2")
    '<3f9a0c12be47.2@watchkeeper>'
    """
    incident, _, number = key.rpartition("/")
    left = f"{incident}.{number}" if _ATOM.fullmatch(incident) and number.isdigit() else \
        hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{left}@watchkeeper>"


class EmailNotifier:
    """Sends each notification as a plain-text e-mail, with a ``Message-ID`` made from the
    notification's key (:func:`message_id`) and the key itself as ``X-Watchkeeper-Key``.

    >>> EmailNotifier("smtp.example.com", 587, "wk@example.com", ["oncall@example.com"],
    ...               username="wk", password="hunter2", starttls=True)
    EmailNotifier('smtp.example.com', 587, 'wk@example.com', ['oncall@example.com'], \
username='wk', password='***', starttls=True)
    """

    def __init__(self, host: str, port: int, sender: str, recipients: list[str],
                 username: str | None = None, password: str | None = None,
                 starttls: bool = False, *, use_ssl: bool = False, timeout: float = 10.0) -> None:
        if not recipients:
            raise ValueError("recipients: EmailNotifier needs at least one address")
        self.host, self.port, self.sender = host, port, sender
        self.recipients = list(recipients)
        self.username, self.password = username, password
        self.starttls, self.use_ssl, self.timeout = starttls, use_ssl, timeout

    def message(self, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = n.subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["X-Watchkeeper-Incident"] = n.incident
        msg["X-Watchkeeper-Key"] = n.key
        msg["Message-ID"] = message_id(n.key)
        msg.set_content(n.text())
        return msg

    def send(self, notification: Notification) -> None:
        context = ssl.create_default_context()
        try:
            smtp = (smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
                    if self.use_ssl else smtplib.SMTP(self.host, self.port, timeout=self.timeout))
            with smtp:
                if self.starttls and not self.use_ssl:
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(self.message(notification), self.sender, self.recipients)
        except smtplib.SMTPAuthenticationError as e:
            raise DeliveryError(f"SMTP authentication failed ({e.smtp_code})", True) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("SMTP server refused every recipient", True) from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"SMTP: {type(e).__name__}: {e}") from None

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    def __repr__(self) -> str:
        auth = f", username={self.username!r}" if self.username else ""
        auth += f", password={MASK!r}" if self.password else ""
        tls = ", starttls=True" if self.starttls else ""
        tls += ", use_ssl=True" if self.use_ssl else ""
        return (f"EmailNotifier({self.host!r}, {self.port}, {self.sender!r}, "
                f"{self.recipients!r}{auth}{tls})")
