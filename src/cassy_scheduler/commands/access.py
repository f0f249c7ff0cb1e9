"""`audit`, `token` and `key`: what the built-in server recorded of the calls that change
something, a new token for one of its identities, and a new key for client-side encryption
(docs/access.md)."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cassy_scheduler.commands.common import json_option, out, print_json, server_errors, when
from cassy_scheduler.commands.restore import client_for, config_option, server_option
from cassy_scheduler.commands.tables import Column, print_table

if TYPE_CHECKING:
    from cassy_scheduler.client import AuditEntry

#: 32 random bytes: as hard to guess as an AES-256 key.
TOKEN_BYTES = 32


def audit(  # noqa: PLR0917 (typer reads options from parameters)
    identity: str = typer.Option(
        "", "--identity", "-i", metavar="NAME", help="Only this identity's calls."
    ),
    limit: int = typer.Option(
        100, "--limit", min=1, max=10_000, metavar="N", help="At most this many calls."
    ),
    before_id: int = typer.Option(
        0,
        "--before-id",
        min=0,
        metavar="ID",
        help="Only calls older than the one with this id (page back from a listing's last).",
    ),
    server: str | None = server_option(),
    config: Path | None = config_option(),
    as_json: bool = json_option(),
) -> None:
    """The calls that changed something on the built-in server, newest first.

    Who (the identity), from where, what (the request's fields) and how it ended, refusals
    included. Reading it needs the admin role.
    """
    with server_errors(), client_for(server, config) as client:
        entries = client.list_audit(limit=limit, identity=identity, before_id=before_id)
    if as_json:
        print_json([asdict(e) for e in entries])
    elif not entries:
        out().print("no calls recorded")
    else:
        _print_entries(entries)


def _print_entries(entries: list[AuditEntry]) -> None:
    rows = [
        (
            str(e.id),
            when(e.at),
            e.identity or "-",
            e.peer,
            e.method.rsplit("/", 1)[-1],
            e.code + (f": {e.message}" if e.message else ""),
            e.request,
        )
        for e in entries
    ]
    columns = [Column("id"), Column("at"), Column("identity"), Column("from"), Column("call")]
    columns += [Column("outcome", prose=True), Column("request", prose=True)]
    print_table(out(), columns, rows)


def token(
    write: Path | None = typer.Option(
        None,
        "--write",
        metavar="FILE",
        help="Write the token to FILE (mode 0600) instead of printing it.",
    ),
) -> None:
    """A new random token, and the token_sha256 line that admits it in the server's config.

    Give the token to the caller (its [server] token_file); the server needs only the digest.
    """
    from cassy_scheduler.privatefiles import private_file
    from cassy_scheduler.server.access import token_digest

    new = secrets.token_urlsafe(TOKEN_BYTES)
    if write is not None:
        private_file(write)
        write.chmod(0o600)  # an older file too: the token is a secret
        write.write_text(new + "\n", encoding="utf-8")
        out().print(f"token written to {write}")
    else:
        out().print(f"token: {new}")
    out().print(f'token_sha256 = "{token_digest(new)}"')


def key(
    write: Path = typer.Option(
        ..., "--write", metavar="FILE", help="Write the key to FILE (mode 0600); never printed."
    ),
) -> None:
    """A new key-encryption key for [storage.client_encryption], and its id.

    Keep a copy where a lost server cannot take it: without the key, no backup sealed with
    it can be read, by anyone.
    """
    from cassy_scheduler.privatefiles import private_file
    from cassy_scheduler.storage.envelope import KEY_BYTES, key_id

    if write.exists() and write.stat().st_size:
        from cassy_scheduler.commands.common import fail

        fail(f"{write} exists: a key is never overwritten (backups sealed with it need it)", 2)
    new = secrets.token_bytes(KEY_BYTES)
    private_file(write)
    write.chmod(0o600)
    write.write_text(new.hex() + "\n", encoding="utf-8")
    out().print(f"key written to {write}")
    out().print(f"key id: {key_id(new)}")
