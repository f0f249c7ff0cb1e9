"""The `cassy-scheduler` command: one thin verb per use, the work lives in the packages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from cassy_scheduler import version as installed_version
from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.logs import configure_logging

app = typer.Typer(
    name="cassy-scheduler",
    help=(
        "Schedule Apache Cassandra backups through a Cassy-compatible gRPC server, wait for "
        "their real outcome on every node, and tell people when one fails."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"cassy-scheduler {installed_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_show_version,
        is_eager=True,
    ),
) -> None:
    """Backups of Cassandra clusters, on time, of the right kind, with their outcome told."""


@app.command()
def serve(
    config: Path = typer.Option(
        ..., "--config", "-c", metavar="FILE", help="The server's TOML config file."
    ),
    host: str | None = typer.Option(
        None, metavar="ADDRESS", help="Listen on this address instead."
    ),
    port: int | None = typer.Option(
        None, metavar="PORT", help="Listen on this port instead (0: any free)."
    ),
    log_level: str = typer.Option("INFO", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Run the built-in Cassy-compatible server (rpc.Cassy over gRPC)."""
    from cassy_scheduler.node.nodetooljvm import NodetoolJvmError
    from cassy_scheduler.server.app import serve as run_server
    from cassy_scheduler.server.settings import load_server_settings
    from cassy_scheduler.storage.errors import StorageProbeError

    configure_logging(log_level)
    try:
        settings = load_server_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if host is not None:
        settings = dataclasses.replace(settings, host=host)
    if port is not None:
        settings = dataclasses.replace(settings, port=port)
    try:
        run_server(settings)
    except (NodetoolJvmError, StorageProbeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _add_scheduler_commands() -> None:
    from cassy_scheduler.commands import add_commands

    add_commands(app)


_add_scheduler_commands()


def _add_restore_commands() -> None:
    from cassy_scheduler.commands import access, cassyimport, restore

    verbs = (restore.restore, restore.restores, restore.verify, access.audit, access.token)
    for verb in (*verbs, access.key):
        app.command(name=verb.__name__)(verb)
    app.command(name="import")(cassyimport.import_)


_add_restore_commands()


def main() -> None:
    """Console-script entry point."""
    app()
