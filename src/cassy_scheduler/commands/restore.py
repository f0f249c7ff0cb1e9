"""`restore`, `restores` and `verify`: put a snapshot back on nodes, follow it, and prove a
snapshot restorable before it is needed.

The server is named by --server ADDRESS, or by the scheduler's config (--config). `verify`
also reads storage itself, since Cassy's API offers no way to read stored objects: give the
storage URI (--storage), or the server's own config file (--server-config) to use its URI.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cassy_scheduler.commands.common import (
    CONFIG_ENV,
    fail,
    json_option,
    load,
    out,
    print_json,
    server_errors,
    storage_from,
    when,
)
from cassy_scheduler.commands.tables import Column, print_table
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType

if TYPE_CHECKING:
    from cassy_scheduler.client import BackupEntry, CassyClient, RestoreEntry
    from cassy_scheduler.verify import NodeReport, VerifyReport

SERVER_ENV = "CASSY_SERVER"
#: The caller's token for a server named with --server (a config names its own token_file).
TOKEN_ENV = "CASSY_SCHEDULER_TOKEN"
PLAINTEXT_TOKEN_ENV = "CASSY_SCHEDULER_ALLOW_PLAINTEXT_TOKEN"


class RestoreExit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    TIMED_OUT = 3
    UNREACHABLE = 5


EXIT_HELP = (
    "Exit codes: 0 done; 1 refused, failed or (verify) damaged; 2 usage or config error; "
    "3 timed out waiting; 5 server unreachable."
)


def server_option() -> Any:
    return typer.Option(
        None,
        "--server",
        "-s",
        metavar="HOST:PORT",
        envvar=SERVER_ENV,
        help="The Cassy server; else the one in --config.",
        show_default=False,
    )


def config_option() -> Any:
    return typer.Option(
        None,
        "--config",
        "-c",
        metavar="FILE",
        envvar=CONFIG_ENV,
        help="The scheduler's TOML config, for its server.",
        show_default=False,
    )


def _plaintext_allowed(server: str) -> bool:
    from cassy_scheduler.addresses import host_of, is_loopback

    return is_loopback(host_of(server)) or os.environ.get(PLAINTEXT_TOKEN_ENV) == "1"


def client_for(server: str | None, config: Path | None) -> CassyClient:
    from cassy_scheduler.client import CassyClient

    if server:
        token = os.environ.get(TOKEN_ENV) or None
        if token is not None and not _plaintext_allowed(server):
            fail(
                f"{TOKEN_ENV} would travel in plaintext to {server} (--server has no TLS): "
                f"give a scheduler config with [server.tls] (--config) instead, or set "
                f"{PLAINTEXT_TOKEN_ENV}=1 when TLS ends in front of the server",
                2,
            )
        return CassyClient(server, timeout_s=120, token=token)
    if config is not None:
        from cassy_scheduler.runtime import open_client

        return open_client(load(config).server)
    fail("name the server with --server HOST:PORT or a scheduler config with --config", 2)


# ------------------------------------------------------------------------------- restore


def restore(  # noqa: PLR0917 (typer reads options from parameters)
    cluster_id: str = typer.Argument(
        ..., metavar="CLUSTER_ID", help="The cluster the snapshot belongs to."
    ),
    snapshot_id: str = typer.Argument(..., metavar="SNAPSHOT_ID", help="The snapshot to restore."),
    nodes: list[str] = typer.Option(
        [],
        "--node",
        "-n",
        metavar="IP",
        help="Restore only this node (repeat); default every node.",
    ),
    snapshot_only: bool = typer.Option(
        False, "--snapshot-only", help="Leave out the incremental backups of the snapshot."
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for every node's outcome."),
    timeout: float = typer.Option(
        3600, "--timeout", min=1, metavar="SECONDS", help="Seconds to wait at most."
    ),
    server: str | None = server_option(),
    config: Path | None = config_option(),
    as_json: bool = json_option(),
) -> None:
    """Restore a node-level snapshot onto stopped nodes.

    Each node's Cassandra must be stopped and its data, commit log and hints directories
    empty; the server refuses otherwise and writes nothing. Start the nodes once every node
    says COMPLETED.
    """
    with server_errors(), client_for(server, config) as client:
        before = _row_keys(client.list_restore_statuses(cluster_id, snapshot_id))
        ack = client.restore_backup(
            cluster_id, snapshot_id, RestoreType.NODE, nodes, snapshot_only=snapshot_only
        )
        if not as_json:
            out().print(
                f"restore of {snapshot_id} {ack.status.name} on {', '.join(ack.target_ips)}"
            )
        if not wait:
            if as_json:
                print_json({"status": ack.status.name, "target_ips": list(ack.target_ips)})
            return
        rows, finished = _wait(client, cluster_id, snapshot_id, before, timeout)
    if as_json:
        print_json([_entry_dict(r) for r in rows])
    else:
        _print_restores(rows)
    if not finished:
        fail(f"not every node finished within {timeout:g} s; follow with `restores`", 3)
    failed = [r for r in rows if r.status is not OperationStatus.COMPLETED]
    if failed:
        causes = [f"{r.target_ip}: {r.reason}" for r in failed if r.reason]
        why = "; ".join(causes) or "the server's log says why (search for 'node restore failed')"
        fail(
            f"the restore FAILED on {', '.join(r.target_ip for r in failed)}; {why}",
            RestoreExit.FAILED,
        )


def _row_keys(rows: list[RestoreEntry]) -> set[tuple[str, int]]:
    return {(r.target_ip, r.created_at_ms) for r in rows}


def _wait(
    client: CassyClient,
    cluster_id: str,
    snapshot_id: str,
    before: set[tuple[str, int]],
    timeout_s: float,
) -> tuple[list[RestoreEntry], bool]:
    """The rows this request created (those not listed before it), once all are final."""
    from cassy_scheduler.outcome import poll

    def rows() -> list[RestoreEntry]:
        return [
            r
            for r in client.list_restore_statuses(cluster_id, snapshot_id)
            if (r.target_ip, r.created_at_ms) not in before
        ]

    def final(found: list[RestoreEntry]) -> bool:
        return bool(found) and all(r.status.is_final for r in found)

    none: list[RestoreEntry] = []
    # The server gone away ends the wait at once: the command says so (exit 5).
    polled = poll(
        rows, final, none, timeout_s, 1.0, f"restore of {snapshot_id}", retry_errors=False
    )
    if polled.error is not None:
        raise polled.error
    return polled.value, not polled.timed_out


def restores(  # noqa: PLR0917 (typer reads options from parameters)
    cluster_id: str = typer.Argument(..., metavar="CLUSTER_ID", help="The cluster."),
    snapshot_id: str = typer.Argument(
        ..., metavar="SNAPSHOT_ID", help="The snapshot whose restores to list."
    ),
    node: str | None = typer.Option(
        None, "--node", "-n", metavar="IP", help="Only this node's restores."
    ),
    limit: int = typer.Option(
        0, "--limit", min=0, metavar="N", help="At most this many rows (0: all)."
    ),
    server: str | None = server_option(),
    config: Path | None = config_option(),
    as_json: bool = json_option(),
) -> None:
    """A snapshot's restores, node by node, newest first.

    Each node's status and, from the built-in server, why it failed (ListRestoreStatuses).
    """
    with server_errors(), client_for(server, config) as client:
        rows = client.list_restore_statuses(cluster_id, snapshot_id, node, limit)
    # With a node, Cassy lists that node's restores of every snapshot.
    rows = [r for r in rows if r.snapshot_id == snapshot_id]
    if as_json:
        print_json([_entry_dict(r) for r in rows])
    elif not rows:
        out().print(f"no restores of {snapshot_id}")
    else:
        _print_restores(rows)


def _print_restores(rows: list[RestoreEntry]) -> None:
    table = [
        (
            when(row.created_at),
            row.target_ip,
            row.snapshot_id,
            row.restore_type.name,
            row.status.name + (f": {row.reason}" if row.reason else ""),
            when(row.updated_at),
        )
        for row in rows
    ]
    columns = [Column("started"), Column("node"), Column("snapshot id", shorten=True)]
    columns += [Column("type"), Column("status", prose=True), Column("updated")]
    print_table(out(), columns, table)


def _entry_dict(row: RestoreEntry) -> dict[str, object]:
    return {
        "cluster_id": row.cluster_id,
        "target_ip": row.target_ip,
        "snapshot_id": row.snapshot_id,
        "created_at": row.created_at,
        "created_at_ms": row.created_at_ms,
        "updated_at": row.updated_at,
        "restore_type": row.restore_type.name,
        "status": row.status.name,
        "reason": row.reason,
    }


# -------------------------------------------------------------------------------- verify


def verify(  # noqa: PLR0917 (typer reads options from parameters)
    snapshot_id: str = typer.Argument(..., metavar="SNAPSHOT_ID", help="The snapshot to check."),
    cluster_id: str | None = typer.Option(
        None,
        "--cluster",
        metavar="CLUSTER_ID",
        help="The snapshot's cluster, when the server knows the id twice.",
    ),
    storage_uri: str | None = typer.Option(
        None,
        "--storage",
        metavar="URI",
        help="Where the server stores backups, e.g. file:///var/backups.",
    ),
    server_config: Path | None = typer.Option(
        None,
        "--server-config",
        metavar="FILE",
        help="The server's TOML config, to read its storage URI.",
    ),
    server: str | None = server_option(),
    config: Path | None = config_option(),
    as_json: bool = json_option(),
) -> None:
    """Prove a snapshot restorable, reading its stored files.

    Every node of the backup must have stored it: each file present, of the size and SHA-256
    its upload manifest records (or, for backups written without manifests, as Scalar's Cassy
    writes them, every SSTable whole by its own TOC.txt and Digest.crc32), and the whole
    restorable. Reports per node; exits 1 on any problem.
    """
    from cassy_scheduler.verify import VerifyError, verify_snapshot

    storage = storage_from(
        storage_uri,
        server_config,
        "verify reads storage itself (Cassy's API does not serve stored files)",
    )
    with server_errors(), client_for(server, config) as client:
        rows = client.list_backups(snapshot_id=snapshot_id)
    facts = _snapshot_facts(rows, snapshot_id, cluster_id)
    try:
        report = verify_snapshot(
            storage,
            facts.cluster_id,
            snapshot_id,
            facts.nodes,
            backup_type=facts.backup_type,
            not_completed=facts.not_completed,
        )
    except VerifyError as exc:
        fail(str(exc), RestoreExit.FAILED)
    if as_json:
        print_json(_report_dict(report))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(RestoreExit.FAILED)


@dataclass(frozen=True)
class _SnapshotFacts:
    """What the server recorded of a snapshot: its cluster, type and node list, and the nodes
    whose row did not end COMPLETED (with why)."""

    cluster_id: str
    backup_type: BackupType
    nodes: tuple[str, ...]
    not_completed: dict[str, str]


def _snapshot_facts(
    rows: list[BackupEntry], snapshot_id: str, cluster_id: str | None
) -> _SnapshotFacts:
    if cluster_id is not None:
        rows = [r for r in rows if r.cluster_id == cluster_id]
    clusters = sorted({r.cluster_id for r in rows})
    if not clusters:
        fail(f"the server knows no backup {snapshot_id}: check the id (`backups`)", 1)
    if len(clusters) > 1:
        fail(f"{snapshot_id} belongs to {', '.join(clusters)}: pick one with --cluster", 2)
    snapshot_rows = [r for r in rows if r.backup_type.is_snapshot]
    if not snapshot_rows:
        fail(f"{snapshot_id} has incremental rows but no snapshot request: check the id", 1)
    first = min(r.created_at_ms for r in snapshot_rows)  # the snapshot itself, not a retake
    request = [r for r in snapshot_rows if r.created_at_ms == first]
    not_completed = {
        r.target_ip: r.status.name + (f" ({r.reason})" if r.reason else "")
        for r in request
        if r.status is not OperationStatus.COMPLETED
    }
    return _SnapshotFacts(
        clusters[0],
        request[0].backup_type,
        tuple(sorted(r.target_ip for r in request)),
        not_completed,
    )


def _print_report(report: VerifyReport) -> None:
    rows = [
        (
            node.node_ip,
            node.method.value,
            str(node.manifests),
            str(node.files),
            str(node.bytes),
            "restorable" if node.ok else f"NOT restorable: {len(node.problems)} problem(s)",
        )
        for node in report.nodes
    ]
    columns = [Column("node"), Column("checked by"), Column("uploads"), Column("files")]
    columns += [Column("bytes"), Column("result")]
    print_table(out(), columns, rows, title=f"snapshot {report.snapshot_id} of {report.cluster_id}")
    for node in report.nodes:
        for problem in node.problems:
            where = f" {problem.path}" if problem.path else ""
            out().print(f"{node.node_ip} {problem.kind.value}{where}: {problem.detail}")
    for key in sorted({key for node in report.nodes for key in node.key_ids}):
        nodes = ", ".join(n.node_ip for n in report.nodes if key in n.key_ids)
        out().print(f"sealed with key {key} on {nodes}: keep that key while this backup is kept")
    if not report.nodes:
        out().print(f"nothing stored for {report.snapshot_id}")
    elif report.ok:
        out().print(f"verified: every file present and whole on {', '.join(report.restorable)}")
    else:
        good = ", ".join(report.restorable) or "none"
        out().print(f"NOT restorable on every node; restorable nodes: {good}")


def _node_dict(node: NodeReport) -> dict[str, object]:
    return {
        "node_ip": node.node_ip,
        "prefix": node.prefix,
        "manifests": node.manifests,
        "files": node.files,
        "bytes": node.bytes,
        "checked_by": node.method.value,
        "key_ids": list(node.key_ids),
        "ok": node.ok,
        "problems": [
            {"kind": p.kind.value, "path": p.path, "detail": p.detail} for p in node.problems
        ],
    }


def _report_dict(report: VerifyReport) -> dict[str, object]:
    return {
        "cluster_id": report.cluster_id,
        "snapshot_id": report.snapshot_id,
        "ok": report.ok,
        "restorable_nodes": list(report.restorable),
        "nodes": [_node_dict(n) for n in report.nodes],
    }


for _verb in (restore, restores, verify):
    _verb.__doc__ = f"{inspect.cleandoc(_verb.__doc__ or '')}\n\n{EXIT_HELP}"
