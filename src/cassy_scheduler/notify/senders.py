"""One sender per kind of target, behind one small interface."""

from __future__ import annotations

from typing import Protocol

from cassy_scheduler.config.targets import AppriseChannel, EmailChannel, NotifyTarget
from cassy_scheduler.notify.apprise_target import AppriseSender
from cassy_scheduler.notify.command import CommandSender
from cassy_scheduler.notify.email import EmailSender
from cassy_scheduler.notify.notice import Notice


class Sender(Protocol):
    """Hands one notice to one target; raises DeliveryError when that fails."""

    def describe(self) -> str: ...

    def send(self, notice: Notice) -> None: ...


def make_sender(target: NotifyTarget) -> Sender:
    channel = target.channel
    if isinstance(channel, EmailChannel):
        return EmailSender(channel)
    if isinstance(channel, AppriseChannel):
        return AppriseSender(channel)
    return CommandSender(channel)
