"""Webhook: POST Alertmanager's webhook JSON, so existing receivers and routing work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from watchkeeper.alerts.notifiers.base import MASK, SECRET_HEADER, mask_url, post_json, url_secrets

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification


class WebhookNotifier:
    """POSTs :meth:`Notification.to_alertmanager` to ``url``, with the notification's
    :attr:`~watchkeeper.alerts.notification.Notification.key` as ``Idempotency-Key``: the
    same both times when one is sent again after a crash between sending it and recording
    it, so a receiver that keeps keys can drop the second.

    >>> WebhookNotifier("https://am.example.com/hook?token=s3cret",
    ...                 headers={"Authorization": "Bearer s3cret"})
    WebhookNotifier('https://am.example.com/hook?***', headers={'Authorization': '***'})
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = timeout

    def send(self, notification: Notification) -> None:
        post_json(self.url, notification.to_alertmanager(),
                  {"Idempotency-Key": notification.key, **self.headers}, self.timeout)

    def secrets(self) -> list[str]:
        """Strings never to print or log."""
        return [*url_secrets(self.url), *(v for k, v in self.headers.items()
                                          if SECRET_HEADER.search(k))]

    def __repr__(self) -> str:
        headers = {k: MASK for k in self.headers}
        extra = f", headers={headers}" if headers else ""
        return f"WebhookNotifier({mask_url(self.url)!r}{extra})"
