"""The backup work on one node: snapshot it, or collect its incremental files, and upload.

A node snapshot first clears the snapshots this server took there earlier, snapshots every
registered keyspace the node still has, uploads the files (manifest last) and deletes the
incremental-backup files the snapshot covers. An incremental flushes and uploads the files of
each table's backups/ directory. Each returns a summary for the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cassy_scheduler.node.datadir import (
    DataFile,
    backup_files,
    covered_backup_files,
    delete_files,
    keyspace_dirs,
    remove_snapshot,
    snapshot_files,
    snapshot_tags,
)
from cassy_scheduler.node.discovery import live_keyspaces, node_data_dir
from cassy_scheduler.node.executor import DiscoveryError
from cassy_scheduler.node.manifest import BackupIdentity, Manifest, find_manifests
from cassy_scheduler.node.transfer import LocalFile, upload_files
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.server.errors import PreconditionError
from cassy_scheduler.server.nodejobs import NodeAccess
from cassy_scheduler.server.rows import ClusterRecord, MetadataStore
from cassy_scheduler.storage import Storage, StorageError
from cassy_scheduler.storage.layout import backup_prefix

log = logging.getLogger(__name__)

NODE_LOCAL_KEYSPACE = "system"
_EARLIER_ROWS = 1000  # newest first: weeks of hourly incrementals back to their snapshot
_CQL_TIMEOUT_S = 30.0


class NodeBackups:
    """Backs up single nodes into storage; data dirs found over CQL are remembered."""

    def __init__(
        self,
        metadata: MetadataStore,
        storage: Storage,
        nodes: NodeAccess,
        cancelled: Callable[[], bool],
    ) -> None:
        self._metadata = metadata
        self._storage = storage
        self._nodes = nodes
        self._cancelled = cancelled
        self._lock = threading.Lock()
        self._data_dirs: dict[str, Path] = {}

    def snapshot(self, cluster: ClusterRecord, identity: BackupIdentity) -> str:
        node = identity.node_ip
        data_dir = self.data_dir(node)
        keyspaces = self.present_keyspaces(cluster, data_dir, node)
        before = backup_files(data_dir, keyspaces)
        self.clear_earlier_snapshots(node, data_dir)
        self._nodes.nodetool(node).snapshot(identity.snapshot_id, keyspaces)
        taken = snapshot_files(data_dir, identity.snapshot_id, keyspaces)
        summary = self.upload(identity, taken)
        covered = covered_backup_files(before, backup_files(data_dir, keyspaces), taken)
        delete_files(covered)
        return f"{summary} incremental_files_cleared={len(covered)}"

    def incremental(self, cluster: ClusterRecord, identity: BackupIdentity) -> str:
        node = identity.node_ip
        data_dir = self.data_dir(node)
        # The node-local `system` keyspace is Cassandra's own bookkeeping, rewritten all the
        # time (sstable activity, compaction history); the snapshot carries what a restore
        # needs from it (host id, tokens), so incrementals leave it out.
        keyspaces = [
            ks
            for ks in self.present_keyspaces(cluster, data_dir, node)
            if ks != NODE_LOCAL_KEYSPACE
        ]
        self._nodes.nodetool(node).flush(keyspaces)
        return self.upload(identity, backup_files(data_dir, keyspaces))

    def clear_earlier_snapshots(self, node: str, data_dir: Path) -> None:
        """Remove the snapshots this server took earlier on the node (uploaded, they only hold
        disk space), under any registration of its cluster, from every keyspace (a dropped
        or unregistered one too); snapshots anyone else took, an operator's `pre-upgrade` one
        included, stay. (Scalar's Cassy clears every one.) Removed from the data directory
        directly: no nodetool JVM for it."""
        for tag in sorted(snapshot_tags(data_dir, keyspace_dirs(data_dir))):
            ours = any(
                row.target_ip == node for row in self._metadata.list_backups(snapshot_id=tag)
            )
            if ours:
                remove_snapshot(data_dir, tag)
            else:
                log.info("snapshot kept, not taken by this server node=%s tag=%s", node, tag)

    def upload(self, identity: BackupIdentity, files: Sequence[DataFile]) -> str:
        prefix = backup_prefix(
            identity.backup_type, identity.cluster_id, identity.snapshot_id, identity.node_ip
        )
        result = upload_files(
            self._storage,
            prefix,
            [LocalFile(f.path, f.relative) for f in files],
            identity,
            cancelled=self._cancelled,
            earlier=self.earlier_uploads(identity) if identity.backup_type.is_snapshot else (),
        )
        return (
            f"files_sent={result.files_sent} bytes_sent={result.bytes_sent} "
            f"files_copied={result.files_copied} bytes_copied={result.bytes_copied} "
            f"files_skipped={result.files_skipped} manifest={result.manifest_key}"
        )

    def earlier_uploads(self, identity: BackupIdentity) -> list[Manifest]:
        """The uploads of the node's newest completed snapshot before this one, with its
        incrementals: what a new snapshot of unchanged SSTables can be stored from."""
        rows = self._metadata.list_backups(
            cluster_id=identity.cluster_id, target_ip=identity.node_ip, limit=_EARLIER_ROWS
        )
        previous = next(
            (
                row
                for row in rows
                if row.backup_type.is_snapshot
                and row.status is OperationStatus.COMPLETED
                and row.snapshot_id != identity.snapshot_id
            ),
            None,
        )
        if previous is None:
            return []
        prefix = backup_prefix(
            previous.backup_type, identity.cluster_id, previous.snapshot_id, identity.node_ip
        )
        try:
            return find_manifests(self._storage, prefix, skip_unreadable=True)
        except StorageError as exc:  # then everything is sent, as without it
            log.warning("earlier uploads not readable prefix=%s error=%s", prefix, exc)
            return []

    def present_keyspaces(self, cluster: ClusterRecord, data_dir: Path, node: str) -> list[str]:
        """Registered keyspaces that still exist on the node; a dropped one is only logged."""
        try:
            schema = live_keyspaces(node, self._nodes.cql, _CQL_TIMEOUT_S)
        except DiscoveryError as exc:  # the directories alone still tell most of it
            log.warning("schema not readable, using directories node=%s reason=%s", node, exc)
            schema = set(cluster.keyspaces)
        present = [ks for ks in cluster.keyspaces if ks in schema and (data_dir / ks).is_dir()]
        missing = sorted(set(cluster.keyspaces) - set(present))
        if missing:
            log.warning("registered keyspaces absent node=%s keyspaces=%s", node, ",".join(missing))
        if not present:
            raise PreconditionError(
                f"none of the registered keyspaces exists under {data_dir}: "
                "register the cluster again"
            )
        return present

    def data_dir(self, node: str) -> Path:
        configured = self._nodes.endpoint(node).data_dir
        if configured is not None:
            return configured
        with self._lock:
            known = self._data_dirs.get(node)
        if known is None:
            known = node_data_dir(node, self._nodes.cql, _CQL_TIMEOUT_S)
            with self._lock:
                self._data_dirs[node] = known
        return known
