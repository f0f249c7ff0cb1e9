"""`cassy-scheduler node`: the program a server runs on a node's host over SSH."""

from __future__ import annotations

import typer

HELP = (
    "The node side of a server that reaches its nodes over SSH: run by the server, not by "
    "hand. Reads one JSON request on stdin and writes JSON lines on stdout (docs/ssh.md)."
)


def node(
    operation: str = typer.Argument(..., metavar="OPERATION", help="hello, nodetool, facts, ..."),
    protocol: int = typer.Option(
        ..., "--protocol", metavar="N", help="The protocol version the server speaks."
    ),
) -> None:
    from cassy_scheduler.node.program import main

    raise typer.Exit(main(operation, protocol))
