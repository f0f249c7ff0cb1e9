"""Notices by mail through one SMTP server: plain, STARTTLS or TLS, with optional auth.

Each notice is one multipart message (plain text and HTML) to every recipient at once.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from cassy_scheduler.config.targets import EmailChannel, SmtpSecurity
from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.notify import DeliveryError
from cassy_scheduler.notify.notice import Notice


def build_message(channel: EmailChannel, notice: Notice) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = notice.subject
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=channel.sender.rpartition("@")[2] or None)
    message["X-Cassy-Job"] = notice.job_name
    message["X-Cassy-Event"] = notice.event.value
    message.set_content(notice.text)
    message.add_alternative(notice.html, subtype="html")
    return message


class EmailSender:
    """Sends notices through the channel's SMTP server; a new connection per notice."""

    def __init__(self, channel: EmailChannel, environ: Mapping[str, str] | None = None) -> None:
        self._channel = channel
        self._environ = environ

    def describe(self) -> str:
        c = self._channel
        return f"smtp {c.security.value}://{c.host}:{c.port} to {', '.join(c.recipients)}"

    def send(self, notice: Notice) -> None:
        channel = self._channel
        message = build_message(channel, notice)
        timeout = channel.timeout.total_seconds()
        try:
            password = channel.password.resolve(self._environ) if channel.password else None
        except ConfigError as exc:
            raise DeliveryError(str(exc.problems[0])) from None
        try:
            if channel.security is SmtpSecurity.TLS:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    channel.host, channel.port, timeout=timeout, context=self._tls()
                )
            else:
                smtp = smtplib.SMTP(channel.host, channel.port, timeout=timeout)
            with smtp:
                if channel.security is SmtpSecurity.STARTTLS:
                    smtp.starttls(context=self._tls())
                if channel.username is not None:
                    smtp.login(channel.username, password or "")
                refused = smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"mail to {', '.join(channel.recipients)} through {channel.host}:{channel.port} "
                f"({channel.security.value}) failed: {exc}"
            ) from None
        if refused:
            raise DeliveryError(
                "the SMTP server refused recipient(s) "
                + ", ".join(f"{who} ({code} {text!r})" for who, (code, text) in refused.items())
            )

    def _tls(self) -> ssl.SSLContext:
        ca = self._channel.ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)
