"""The backup work on one node, as the server decides it: what the node's side then does.

A node snapshot first clears the snapshots this server took there earlier, snapshots every
registered keyspace the node still has, uploads the files (manifest last) and deletes the
incremental-backup files the snapshot covers. An incremental flushes and uploads the files of
each table's backups/ directory. The server decides from its records (which snapshots are
its own, which earlier uploads can be copied) and the node's side (node/side.py: in this
process, or over SSH) does the work where the files are. Each returns a summary for the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cassy_scheduler.node.discovery import live_keyspaces, node_data_dir
from cassy_scheduler.node.executor import DiscoveryError
from cassy_scheduler.node.manifest import BackupIdentity, Manifest, find_manifests
from cassy_scheduler.node.work import BackupAction, BackupOrder, NodeFacts
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.server.errors import PreconditionError
from cassy_scheduler.server.nodejobs import NodeAccess
from cassy_scheduler.server.rows import ClusterRecord, HistoryKey, MetadataStore
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
        prepared = self.prepare(cluster, identity.node_ip, clear=False)
        return self.run(
            "snapshot",
            identity,
            prepared,
            remove=self.earlier_snapshots(identity.node_ip, prepared),
        )

    def incremental(self, cluster: ClusterRecord, identity: BackupIdentity) -> str:
        # The node-local `system` keyspace is Cassandra's own bookkeeping, rewritten all the
        # time (sstable activity, compaction history); the snapshot carries what a restore
        # needs from it (host id, tokens), so incrementals leave it out.
        prepared = self.prepare(cluster, identity.node_ip, clear=False)
        keyspaces = tuple(ks for ks in prepared.keyspaces if ks != NODE_LOCAL_KEYSPACE)
        return self.run("incremental", identity, NodeFacts(prepared.data_dir, keyspaces, ()))

    def prepare(self, cluster: ClusterRecord, node: str, *, clear: bool) -> NodeFacts:
        """The node's data dir and the registered keyspaces it still has; with `clear`, the
        snapshots this server took there earlier are removed now (before a cluster-wide cut)."""
        data_dir = self.data_dir(node)
        facts = self._nodes.side(node, self._storage).facts(data_dir, cluster.keyspaces)
        keyspaces = self.present_keyspaces(cluster, facts, node)
        if clear:
            ours = self.earlier_snapshots(node, facts)
            self._nodes.side(node, self._storage).remove_snapshots(data_dir, ours)
        return NodeFacts(facts.data_dir, tuple(keyspaces), facts.snapshot_tags)

    def run(
        self,
        action: BackupAction,
        identity: BackupIdentity,
        facts: NodeFacts,
        *,
        remove: Sequence[str] = (),
    ) -> str:
        """Have the node's side carry out the backup; its summary for the log."""
        order = BackupOrder(
            action=action,
            identity=identity,
            data_dir=facts.data_dir,
            keyspaces=facts.keyspaces,
            remove_snapshots=tuple(remove),
            earlier=tuple(self.earlier_uploads(identity)) if action != "incremental" else (),
        )
        done = self._nodes.side(identity.node_ip, self._storage).back_up(order, self._cancelled)
        key = HistoryKey(
            identity.cluster_id, identity.node_ip, identity.snapshot_id, identity.created_at_ms
        )
        self._metadata.record_size(key, done.files, done.bytes)
        return done.summary()

    def earlier_snapshots(self, node: str, facts: NodeFacts) -> list[str]:
        """The snapshots this server took earlier on the node (uploaded, they only hold disk
        space), under any registration of its cluster, from every keyspace (a dropped or
        unregistered one too); snapshots anyone else took, an operator's `pre-upgrade` one
        included, stay. (Scalar's Cassy clears every one.)"""
        ours = []
        for tag in facts.snapshot_tags:
            if any(row.target_ip == node for row in self._metadata.list_backups(snapshot_id=tag)):
                ours.append(tag)
            else:
                log.info("snapshot kept, not taken by this server node=%s tag=%s", node, tag)
        return ours

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

    def present_keyspaces(self, cluster: ClusterRecord, facts: NodeFacts, node: str) -> list[str]:
        """Registered keyspaces that still exist on the node; a dropped one is only logged."""
        try:
            schema = live_keyspaces(node, self._nodes.cql, _CQL_TIMEOUT_S)
        except DiscoveryError as exc:  # the directories alone still tell most of it
            log.warning("schema not readable, using directories node=%s reason=%s", node, exc)
            schema = set(cluster.keyspaces)
        on_disk = set(facts.keyspaces)
        present = [ks for ks in cluster.keyspaces if ks in schema and ks in on_disk]
        missing = sorted(set(cluster.keyspaces) - set(present))
        if missing:
            log.warning("registered keyspaces absent node=%s keyspaces=%s", node, ",".join(missing))
        if not present:
            raise PreconditionError(
                f"none of the registered keyspaces exists under {facts.data_dir}: "
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
