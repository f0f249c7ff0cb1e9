"""The `cassy-scheduler` command: one thin verb per use, the work lives in the packages."""

from __future__ import annotations

import typer

from cassy_scheduler import __version__

app = typer.Typer(
    name="cassy-scheduler",
    help=(
        "Schedule Apache Cassandra backups through a Cassy-compatible gRPC server, wait for "
        "their real outcome on every node, and tell people when one fails."
    ),
    no_args_is_help=True,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"cassy-scheduler {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_show_version,
        is_eager=True,
    ),
) -> None:
    """Backups of Cassandra clusters, on time, of the right kind, with their outcome told."""


def main() -> None:
    """Console-script entry point."""
    app()
