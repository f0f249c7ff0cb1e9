"""`register`, `clusters` and `backups`: the Cassy calls operators made with grpcurl."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cassy_scheduler.commands.common import (
    config_option,
    json_option,
    load,
    out,
    print_json,
    server_errors,
    when,
)
from cassy_scheduler.commands.tables import Column, print_table

if TYPE_CHECKING:
    from cassy_scheduler.client import BackupEntry, Cluster, StoredBackup

HELP_CODES = "Exit codes: 0 done, 1 the server refused, 2 config error, 5 server unreachable."


def register(
    host: str = typer.Argument(..., metavar="HOST", help="Any Cassandra node of the cluster."),
    config: Path = config_option(),
    as_json: bool = json_option(),
) -> None:
    """Register a cluster with the server through one of its nodes.

    Calls RegisterCluster and prints the new cluster id.
    """
    from cassy_scheduler.runtime import open_client

    settings = load(config)
    with server_errors(), open_client(settings.server) as client:
        cluster = client.register_cluster(host)
    if as_json:
        print_json(_cluster_dict(cluster))
        return
    out().print(f"registered {cluster.cluster_id}")
    _print_clusters([cluster])


def clusters(config: Path = config_option(), as_json: bool = json_option()) -> None:
    """The clusters registered with the server.

    Most recently registered first (ListClusters).
    """
    from cassy_scheduler.runtime import open_client

    settings = load(config)
    with server_errors(), open_client(settings.server) as client:
        found = client.list_clusters()
    if as_json:
        print_json([_cluster_dict(c) for c in found])
    elif not found:
        out().print("no clusters registered; add one with `cassy-scheduler register HOST`")
    else:
        _print_clusters(found)


def backups(
    cluster_id: str = typer.Argument(
        ..., metavar="CLUSTER_ID", help="The cluster whose backups to list."
    ),
    config: Path = config_option(),
    limit: int = typer.Option(
        0, "--limit", "-n", min=0, metavar="N", help="At most this many rows (0: all)."
    ),
    as_json: bool = json_option(),
) -> None:
    """A cluster's backups, newest first.

    One line per request, with every node's status and, from the built-in server, why a
    node failed and what each node's part holds in storage (ListBackups, DescribeBackups).
    """
    from cassy_scheduler.configfile.sizes import format_size
    from cassy_scheduler.runtime import open_client

    settings = load(config)
    with server_errors(), open_client(settings.server) as client:
        rows = client.list_backups(cluster_id=cluster_id, limit=limit)
        sizes = (
            {
                (s.target_ip, s.snapshot_id, s.created_at_ms): s
                for s in client.describe_backups(cluster_id)
            }
            if rows and client.is_builtin_server()
            else {}
        )
    if as_json:
        print_json([_row_dict(r, sizes.get(_key(r))) for r in rows])
        return
    if not rows:
        out().print(f"no backups of {cluster_id}")
        return
    groups: dict[tuple[str, int], list[BackupEntry]] = {}
    for row in rows:
        groups.setdefault((row.snapshot_id, row.created_at_ms), []).append(row)
    table = [
        (
            when(members[0].created_at),
            members[0].backup_type.name,
            snapshot_id,
            _total(members, sizes),
            "\n".join(
                f"{r.target_ip} {r.status.name}"
                + (f" {format_size(b)}" if (b := _bytes(sizes.get(_key(r)))) is not None else "")
                + (f": {r.reason}" if r.reason else "")
                for r in sorted(members, key=_ip)
            ),
        )
        for (snapshot_id, _), members in groups.items()
    ]
    columns = [Column("created"), Column("type"), Column("snapshot id", shorten=True)]
    columns += [Column("stored"), Column("nodes", prose=True)]
    print_table(out(), columns, table, title=f"backups of {cluster_id}")


for _verb in (register, clusters, backups):
    _verb.__doc__ = f"{inspect.cleandoc(_verb.__doc__ or '')}\n\n{HELP_CODES}"


def _ip(row: BackupEntry) -> str:
    return row.target_ip


def _key(row: BackupEntry) -> tuple[str, str, int]:
    return (row.target_ip, row.snapshot_id, row.created_at_ms)


def _bytes(size: StoredBackup | None) -> int | None:
    return None if size is None else size.bytes


def _total(members: list[BackupEntry], sizes: dict[tuple[str, str, int], StoredBackup]) -> str:
    """The backup's bytes over its nodes; "-" where the server does not say."""
    from cassy_scheduler.configfile.sizes import format_size

    known = [_bytes(sizes.get(_key(r))) for r in members]
    if not known or any(b is None for b in known):
        return "-"
    return format_size(sum(b or 0 for b in known))


def _print_clusters(found: list[Cluster]) -> None:
    rows = [
        (
            cluster.cluster_id,
            cluster.cluster_name,
            "\n".join(cluster.target_ips),
            ", ".join(cluster.keyspaces),
            when(cluster.created_at),
        )
        for cluster in found
    ]
    columns = [Column("cluster id", shorten=True), Column("name"), Column("nodes")]
    columns += [Column("keyspaces", prose=True), Column("registered")]
    print_table(out(), columns, rows)


def _cluster_dict(cluster: Cluster) -> dict[str, object]:
    return {
        "cluster_id": cluster.cluster_id,
        "cluster_name": cluster.cluster_name,
        "target_ips": list(cluster.target_ips),
        "keyspaces": list(cluster.keyspaces),
        "data_dir": cluster.data_dir,
        "created_at": cluster.created_at,
        "updated_at": cluster.updated_at,
    }


def _row_dict(row: BackupEntry, size: StoredBackup | None) -> dict[str, object]:
    return {
        "files": None if size is None else size.files,
        "bytes": None if size is None else size.bytes,
        "cluster_id": row.cluster_id,
        "target_ip": row.target_ip,
        "snapshot_id": row.snapshot_id,
        "created_at": row.created_at,
        "created_at_ms": row.created_at_ms,
        "updated_at": row.updated_at,
        "backup_type": row.backup_type.name,
        "status": row.status.name,
        "reason": row.reason,
    }
