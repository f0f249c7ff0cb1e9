"""Reading a stored backup back: load one table's SSTables into a scratch keyspace.

For checks of what a backup really holds, without a restore: each node's snapshot files are
taken from storage (a file:// backend's directory), copied to a work directory and handed to
that node's `nodetool import` for a scratch table with the same columns. Reading the scratch
table at consistency ALL then sees what a cluster restored from the backup would see.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.localcluster import LocalCluster

_NOT_SSTABLE = {"manifest.json", "schema.cql"}


def snapshot_table_files(
    node_prefix: Path, keyspace: str, table: str, snapshot_id: str
) -> list[Path]:
    """The SSTable components of `keyspace.table` under one node's backup prefix."""
    files: list[Path] = []
    for table_dir in sorted(node_prefix.glob(f"{keyspace}/{table}-*")):
        snapshot_dir = table_dir / "snapshots" / snapshot_id
        if snapshot_dir.is_dir():
            files += [
                p
                for p in sorted(snapshot_dir.iterdir())
                if p.is_file() and p.name not in _NOT_SSTABLE
            ]
    return files


def import_backup(
    cluster: LocalCluster,
    backup_dir: Path,
    *,
    keyspace: str,
    table: str,
    snapshot_id: str,
    scratch_keyspace: str,
    work: Path,
) -> dict[str, int]:
    """Import every node's snapshot files of `keyspace.table` (below `backup_dir`, i.e.
    `<storage>/<root>/<cluster>/<snapshot>`) into `scratch_keyspace.table` on the same node.

    The scratch table must exist. Returns the number of files imported per node.
    """
    imported: dict[str, int] = {}
    for spec in cluster.specs:
        files = snapshot_table_files(backup_dir / spec.address, keyspace, table, snapshot_id)
        # The importer reads the keyspace and table from the two directory names above the files.
        target = work / spec.address / scratch_keyspace / table
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in files:
            shutil.copy2(path, target / path.name)
        if files:
            cluster.nodetool(spec.number, "import", scratch_keyspace, table, str(target))
        imported[spec.address] = len(files)
    return imported
