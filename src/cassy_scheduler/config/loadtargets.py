"""Turning a validated [notify.NAME] table into a NotifyTarget, secrets left unread."""

from __future__ import annotations

from pathlib import Path

from cassy_scheduler.config.model import SourceLocation
from cassy_scheduler.config.schema import AppriseTable, CommandTable, EmailTable
from cassy_scheduler.config.targets import (
    AppriseChannel,
    Channel,
    CommandChannel,
    EmailChannel,
    NotifyTarget,
    NotifyWhen,
    SmtpSecurity,
)
from cassy_scheduler.configfile.secrets import Secret


def notify_target(
    name: str,
    table: EmailTable | AppriseTable | CommandTable,
    where: SourceLocation,
    base_dir: Path,
) -> NotifyTarget:
    """The target a table describes; relative files are anchored at the config's directory."""
    channel: Channel
    if isinstance(table, EmailTable):
        security = SmtpSecurity(table.security)
        fields = {k: v for k, v in table.model_dump().items() if v is not None}
        password = Secret.from_table(
            fields, "password", where=f"notify.{name}", origin=where.file, base_dir=base_dir
        )
        ca_file = None
        if table.ca_file is not None:
            ca = Path(table.ca_file).expanduser()
            ca_file = ca if ca.is_absolute() else base_dir / ca
        channel = EmailChannel(
            host=table.host,
            port=table.port or security.default_port,
            security=security,
            sender=table.sender,
            recipients=tuple(table.to),
            username=table.username,
            password=password,
            timeout=table.timeout,
            ca_file=ca_file,
        )
    elif isinstance(table, AppriseTable):
        channel = AppriseChannel(tuple(table.urls))
    else:
        channel = CommandChannel(tuple(table.command), table.timeout, tuple(table.env))
    return NotifyTarget(
        name=name,
        channel=channel,
        when=NotifyWhen(table.when),
        file=where.file,
        line=where.line,
        retries=table.retries,
        retry_backoff=table.retry_backoff,
    )
