"""`cassy-scheduler import`: bring the backups Scalar's Cassy wrote into the built-in server,
so they are listed, verified and restored like its own."""

from __future__ import annotations

from pathlib import Path

import typer

from cassy_scheduler.commands.common import fail


def import_(
    server_config: Path = typer.Option(
        ...,
        "--server-config",
        metavar="FILE",
        help="The built-in server's config: its [storage] (pointed at Cassy's bucket or "
        "directory) and its metadata database, where the rows are added.",
    ),
    cluster_id: str | None = typer.Option(
        None, "--cluster-id", metavar="ID", help="Only this cluster's backups."
    ),
    data_dir: str = typer.Option(
        "/var/lib/cassandra/data",
        "--data-dir",
        metavar="DIR",
        help="The nodes' data directory, recorded for a cluster the server does not know yet "
        "(Cassy's bucket does not say it).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check every node's files and report; write nothing."
    ),
) -> None:
    """Import backups written by Scalar's Cassy (its key layout, no manifests).

    Each node's files are checked by their SSTables' own digests (every component in
    TOC.txt, Data.db against Digest.crc32, the snapshot's manifest.json) and hashed once;
    then its manifests are written and its rows added to the server's metadata, COMPLETED.
    A node whose files fail the check is reported and left out. Importing again changes
    nothing. Exit codes: 0 every node imported (or already), 1 a node refused, 2 usage.
    """
    from cassy_scheduler.cassyimport import NodeImport, import_cassy_backups
    from cassy_scheduler.configfile.errors import ConfigError
    from cassy_scheduler.server.metadata import SqliteMetadataStore
    from cassy_scheduler.server.settings import load_server_settings
    from cassy_scheduler.storage import StorageError, open_storage

    try:
        settings = load_server_settings(server_config)
    except ConfigError as exc:
        fail(str(exc), 2)

    def show(node: NodeImport) -> None:
        kind = "cluster-wide" if node.root.startswith("cluster") else "node"
        extra = f" ({node.incremental_files} incremental)" if node.incremental_files else ""
        detail = f": {node.detail}" if node.detail else ""
        typer.echo(
            f"{node.outcome:<12} {kind} snapshot {node.snapshot_id} of {node.cluster_id} on "
            f"{node.node_ip}: {node.files} files{extra}, {node.bytes} bytes{detail}"
        )

    metadata = SqliteMetadataStore(settings.metadata_path)
    try:
        results = import_cassy_backups(
            open_storage(settings.storage),
            metadata,
            data_dir=data_dir,
            cluster_id=cluster_id,
            dry_run=dry_run,
            progress=show,
        )
    except StorageError as exc:
        fail(str(exc), 1)
    finally:
        metadata.close()
    if not results:
        fail(f"no backup in Cassy's layout under {settings.storage_uri}", 1)
    refused = [r for r in results if not r.ok]
    typer.echo(
        f"{len(results) - len(refused)} of {len(results)} node backups "
        f"{'would be ' if dry_run else ''}imported or already known"
    )
    raise typer.Exit(1 if refused else 0)
