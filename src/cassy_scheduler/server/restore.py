"""A node-level restore across the nodes of a cluster: refuse early, then one task per node.

Before anything is written, every target node must be stopped (its JMX does not answer) and
its data, commit log and hints directories empty; otherwise the request is refused naming
each node and why. Then each node's row goes INITIALIZED → STARTED, the reply is sent, and
in the background each node's snapshot (and, unless `snapshot_only`, its later incremental
uploads) is downloaded, checked and placed; its row ends COMPLETED or FAILED with a reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cassy_scheduler.clock import SYSTEM_CLOCK, Clock
from cassy_scheduler.node.executor import NodeError
from cassy_scheduler.node.manifest import find_manifests
from cassy_scheduler.node.placement import NodeDirectories, plan_restore
from cassy_scheduler.node.work import RestoreOrder
from cassy_scheduler.protocol.types import BackupType, RestoreType
from cassy_scheduler.server.errors import NodesNotRestorableError
from cassy_scheduler.server.nodejobs import NodeAccess, NodeJobs, shut_down
from cassy_scheduler.server.requests import RestoreAsk, checked_restore
from cassy_scheduler.server.rows import ClusterRecord, HistoryKey, MetadataStore
from cassy_scheduler.server.settings import ServerSettings
from cassy_scheduler.storage import Storage
from cassy_scheduler.storage.layout import backup_prefix

log = logging.getLogger(__name__)


DirectoriesOf = Callable[[str, ClusterRecord], NodeDirectories | None]
"""A node's directories, given its address and its cluster (whose data_dir is the default);
None: the node's own cassandra.yaml says, read on its host."""


@dataclass(frozen=True)
class StartedRestore:
    """What RestoreBackup replies: the rows it created are STARTED."""

    cluster_id: str
    snapshot_id: str
    targets: tuple[str, ...]
    created_at_ms: int
    restore_type: RestoreType
    snapshot_only: bool
    snapshot_type: BackupType


class RestoreOperations:
    """Starts node restores and carries each node to a recorded outcome."""

    def __init__(
        self,
        metadata: MetadataStore,
        storage: Storage,
        nodes: NodeAccess,
        directories: DirectoriesOf,
        *,
        parallel_nodes: int = 8,
        download_workers: int = 4,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._metadata = metadata
        self._storage = storage
        self._nodes = nodes
        self._directories = directories
        self._download_workers = download_workers
        self.jobs = NodeJobs(
            "restore",
            nodes,
            metadata.update_restore_status,
            metadata.fail_unfinished_restores,
            parallel_nodes=parallel_nodes,
            clock=clock,
        )

    # ------------------------------------------------------------------ start
    def restore(self, ask: RestoreAsk) -> StartedRestore:
        """RestoreBackup: check the request, then start it."""
        checked = checked_restore(self._metadata, ask)
        return self.start_restore(
            checked.cluster,
            ask.snapshot_id,
            checked.targets,
            snapshot_only=ask.snapshot_only,
            snapshot_type=checked.snapshot_type,
            restore_type=checked.restore_type,
        )

    def start_restore(
        self,
        cluster: ClusterRecord,
        snapshot_id: str,
        targets: Sequence[str],
        *,
        snapshot_only: bool,
        snapshot_type: BackupType = BackupType.NODE_SNAPSHOT,
        restore_type: RestoreType = RestoreType.NODE,
    ) -> StartedRestore:
        """Refuse unless every target is stopped and empty; else record STARTED rows and go."""
        nodes = tuple(targets) or tuple(cluster.target_ips)

        def record(created_at: int) -> list[HistoryKey]:
            rows = self._metadata.insert_restores(
                cluster_id=cluster.cluster_id,
                target_ips=nodes,
                snapshot_id=snapshot_id,
                restore_type=restore_type,
                snapshot_only=snapshot_only,
                created_at=created_at,
            )
            return [row.key for row in rows]

        keys = self.jobs.begin(
            nodes,
            f"restore of snapshot {snapshot_id}",
            record,
            ready=lambda: self._check_restorable(cluster, nodes),
        )
        started = StartedRestore(
            cluster.cluster_id,
            snapshot_id,
            nodes,
            keys[0].created_at,
            restore_type,
            snapshot_only,
            snapshot_type,
        )
        self.jobs.run(
            f"restore-{snapshot_id[:8]}",
            nodes,
            lambda: self.jobs.each_node(
                keys, lambda key: lambda: self._place(cluster, started, key.target_ip)
            ),
        )
        log.info(
            "restore started cluster_id=%s snapshot_id=%s nodes=%s snapshot_only=%s created_at=%d",
            cluster.cluster_id,
            snapshot_id,
            ",".join(nodes),
            snapshot_only,
            started.created_at_ms,
        )
        return started

    def _check_restorable(self, cluster: ClusterRecord, nodes: Sequence[str]) -> None:
        """Every node stopped, with empty directories (each asked where it lives); else
        refuse all."""
        with ThreadPoolExecutor(min(len(nodes), 8), thread_name_prefix="restore-check") as pool:
            found = list(pool.map(lambda node: self._why_not(cluster, node), nodes))
        problems = [f"{node}: {why}" for node, why in zip(nodes, found, strict=True) if why]
        if problems:
            raise NodesNotRestorableError(
                "cannot restore onto " + "; ".join(problems) + ". Nothing was written"
            )

    def _why_not(self, cluster: ClusterRecord, node: str) -> str | None:
        side = self._nodes.side(node, self._storage)
        try:
            return side.restore_problems(self._directories(node, cluster), self._nodes.cql.port)
        except NodeError as exc:
            return f"cannot check it ({exc})"

    # ------------------------------------------------------------- background
    def _place(self, cluster: ClusterRecord, started: StartedRestore, node: str) -> str:
        prefix = backup_prefix(started.snapshot_type, cluster.cluster_id, started.snapshot_id, node)
        manifests = find_manifests(self._storage, prefix)
        plan = plan_restore(manifests, started.snapshot_id, snapshot_only=started.snapshot_only)
        order = RestoreOrder(
            plan,
            self._directories(node, cluster),
            f"{started.snapshot_id}-{started.created_at_ms}",
            workers=self._download_workers,
        )
        began = time.monotonic()
        placed = self._nodes.side(node, self._storage).restore(order, self.jobs.stopping.is_set)
        return (
            f"files={placed.files} bytes={placed.bytes} keyspaces={len(placed.keyspaces)} "
            f"uploads={','.join(plan.manifests)} seconds={time.monotonic() - began:.1f}"
        )

    def shutdown(self, grace_s: float) -> None:
        """Stop taking restores, let running ones finish for `grace_s`, then fail the rest."""
        shut_down([self.jobs], self._nodes.executor, grace_s)


def node_directories(settings: ServerSettings) -> DirectoriesOf:
    """A node's directories as configured, else Cassandra's layout beside its data dir.

    A stopped node cannot be asked for its data dir, so an unconfigured one is the
    cluster's, as registered; a node reached over SSH reads its own cassandra.yaml instead.
    """

    def directories(node: str, cluster: ClusterRecord) -> NodeDirectories | None:
        paths = settings.paths(node)
        endpoint = settings.endpoint(node)
        if endpoint.ssh is not None and endpoint.data_dir is None:
            return None
        return NodeDirectories.beside(
            endpoint.data_dir or Path(cluster.data_dir),
            commitlog_dir=paths.commitlog_dir,
            hints_dir=paths.hints_dir,
            saved_caches_dir=paths.saved_caches_dir,
            staging_parent=paths.restore_staging_dir,
        )

    return directories
