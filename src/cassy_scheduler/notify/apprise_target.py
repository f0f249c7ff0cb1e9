"""Notices to chat and webhook services through apprise URLs (Slack, Teams, json://, ntfy)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import apprise

from cassy_scheduler.config.targets import AppriseChannel
from cassy_scheduler.notify import DeliveryError
from cassy_scheduler.notify.notice import Notice


def _scheme(url: str) -> str:
    """Only the scheme and host: the rest of an apprise URL is often a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '...'}"


class AppriseSender:
    """Sends a notice to every URL of the channel; any URL failing fails the attempt."""

    def __init__(self, channel: AppriseChannel) -> None:
        self._channel = channel

    def describe(self) -> str:
        return "apprise " + ", ".join(_scheme(u) for u in self._channel.urls)

    def send(self, notice: Notice) -> None:
        client = apprise.Apprise()
        for url in self._channel.urls:
            if not client.add(url):
                raise DeliveryError(f"apprise does not understand the URL {_scheme(url)}...")
        kind = apprise.NotifyType.FAILURE if notice.failing else apprise.NotifyType.SUCCESS
        with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
            sent = client.notify(
                title=notice.subject,
                body=notice.text,
                body_format=apprise.NotifyFormat.TEXT,
                notify_type=kind,
            )
            detail = " ".join(str(captured.getvalue()).split())
        if not sent:
            raise DeliveryError(
                f"apprise could not deliver to {self.describe()}: {detail or 'no detail given'}"
            )
