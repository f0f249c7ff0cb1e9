"""Notification targets as the rest of the program sees them: plain frozen values.

A target is a named place to send run notices (an SMTP mailbox, apprise URLs, a local
command) with the policy that decides when it hears about a job's runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from cassy_scheduler.configfile.secrets import Secret


class NotifyWhen(StrEnum):
    """Which runs a target hears about."""

    ALWAYS = "always"
    FAILURE = "failure"  # failed, timed out, interrupted, a repeated overlap (notify/policy)
    CHANGE = "change"  # the first failure after a success, and the first success after it


class SmtpSecurity(StrEnum):
    """How the SMTP connection is protected."""

    PLAIN = "plain"
    STARTTLS = "starttls"
    TLS = "tls"

    @property
    def default_port(self) -> int:
        return {SmtpSecurity.PLAIN: 25, SmtpSecurity.STARTTLS: 587, SmtpSecurity.TLS: 465}[self]


@dataclass(frozen=True)
class EmailChannel:
    """Mail through one SMTP server to several recipients."""

    host: str
    port: int
    security: SmtpSecurity
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: Secret | None = None
    timeout: timedelta = timedelta(seconds=30)
    ca_file: Path | None = None


@dataclass(frozen=True)
class AppriseChannel:
    """Chat and webhook services, each named by an apprise URL (slack://, json://, ntfy://)."""

    urls: tuple[str, ...]


@dataclass(frozen=True)
class CommandChannel:
    """A local program given the run's facts in CASSY_* variables and as JSON on stdin."""

    argv: tuple[str, ...]
    timeout: timedelta = timedelta(seconds=60)
    passed_env: tuple[str, ...] = ()  # the scheduler's variables it gets beside the basics


Channel = EmailChannel | AppriseChannel | CommandChannel


@dataclass(frozen=True)
class NotifyTarget:
    """A named notification target and how hard delivery to it is tried."""

    name: str
    channel: Channel
    when: NotifyWhen
    file: str
    line: int | None
    retries: int = 3
    retry_backoff: timedelta = timedelta(seconds=10)

    @property
    def kind(self) -> str:
        if isinstance(self.channel, EmailChannel):
            return "email"
        return "apprise" if isinstance(self.channel, AppriseChannel) else "command"


@dataclass(frozen=True)
class NotifyUse:
    """A job's use of a target; `when` overrides the target's own policy for this job."""

    target: str
    when: NotifyWhen | None = None
