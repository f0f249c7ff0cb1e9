"""A backup across the nodes of a cluster: checked, recorded, then one task per node.

The request is answered as soon as every node's row says STARTED; the work goes on in a
background pool, and each row ends COMPLETED (only once its manifest is stored) or FAILED
with a reason. A cluster-wide snapshot first takes a consistent cut with the applications
paused (clustersnapshot.py), then uploads each node's part. Nodes never run two operations at
once (nodejobs.py).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from dataclasses import dataclass, replace
from pathlib import Path

from cassy_scheduler.clock import SYSTEM_CLOCK, Clock
from cassy_scheduler.node.discovery import unanswering_nodes
from cassy_scheduler.node.liveness import LivenessUnknownError, cassandra_running
from cassy_scheduler.node.manifest import BackupIdentity
from cassy_scheduler.node.work import NodeFacts
from cassy_scheduler.protocol.pause_report import PauseReport
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.server.applications import AppInstance, ApplicationsError
from cassy_scheduler.server.clustersnapshot import (
    ClusterWideSetup,
    PreparedNode,
    TagOnNodes,
    take_consistent_cut,
)
from cassy_scheduler.server.errors import (
    SERVER_STOPPED,
    ApplicationsUnavailableError,
    NodePreparationError,
    NodesNotLiveError,
    ServerStoppingError,
    reason_of,
)
from cassy_scheduler.server.nodebackup import NodeBackups
from cassy_scheduler.server.nodejobs import NodeAccess, NodeJobs, shut_down
from cassy_scheduler.server.pause import PauseWindow
from cassy_scheduler.server.requests import BackupAsk, checked_backup
from cassy_scheduler.server.rows import ClusterRecord, HistoryKey, MetadataStore
from cassy_scheduler.storage import Storage
from cassy_scheduler.storage.layout import metadata_backup_key, pause_report_key

log = logging.getLogger(__name__)


_LIVENESS_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StartedBackup:
    """What TakeBackup replies: the rows it created are STARTED."""

    cluster_id: str
    snapshot_id: str
    targets: tuple[str, ...]
    created_at_ms: int
    backup_type: BackupType

    def identity(self, node: str) -> BackupIdentity:
        """Which backup a node's upload belongs to (its manifest records it)."""
        return BackupIdentity(
            self.cluster_id, self.snapshot_id, node, self.backup_type, self.created_at_ms
        )


class BackupOperations:
    """Starts backups and carries them to a recorded outcome on every node."""

    def __init__(
        self,
        metadata: MetadataStore,
        storage: Storage,
        nodes: NodeAccess,
        *,
        metadata_file_name: str = "metadata.db",
        parallel_nodes: int = 8,
        clock: Clock = SYSTEM_CLOCK,
        cluster_wide: ClusterWideSetup | None = None,
    ) -> None:
        self._metadata = metadata
        self._metadata_file_name = metadata_file_name
        self._storage = storage
        self._nodes = nodes
        self._clock = clock
        self.jobs = NodeJobs(
            "backup",
            nodes,
            metadata.update_backup_status,
            metadata.fail_unfinished_backups,
            parallel_nodes=parallel_nodes,
            clock=clock,
        )
        self._work = NodeBackups(metadata, storage, nodes, self.jobs.abandoned.is_set)
        self._cluster_wide = cluster_wide
        self._lock = threading.Lock()
        self._pause_windows: set[PauseWindow] = set()

    # ------------------------------------------------------------------ start
    def backup(self, ask: BackupAsk) -> StartedBackup:
        """TakeBackup: check the request, then start it."""
        checked = checked_backup(self._metadata, ask)
        return self.start_backup(
            checked.cluster, checked.backup_type, checked.snapshot_id, checked.targets
        )

    def start_backup(
        self,
        cluster: ClusterRecord,
        backup_type: BackupType,
        snapshot_id: str | None,
        targets: Sequence[str],
    ) -> StartedBackup:
        """Record the rows, check the nodes are live, mark STARTED and go on in the background."""
        instances: tuple[AppInstance, ...] = ()
        if backup_type is BackupType.CLUSTER_SNAPSHOT:
            instances = self._find_applications()
        nodes = tuple(targets) or tuple(cluster.target_ips)
        sid = snapshot_id or str(uuid.uuid4())

        def record(created_at: int) -> list[HistoryKey]:
            rows = self._metadata.insert_backups(
                cluster_id=cluster.cluster_id,
                target_ips=nodes,
                snapshot_id=sid,
                backup_type=backup_type,
                created_at=created_at,
            )
            return [row.key for row in rows]

        keys = self.jobs.begin(nodes, f"backup of snapshot {sid}", record, self._check_live)
        started = StartedBackup(cluster.cluster_id, sid, nodes, keys[0].created_at, backup_type)
        if instances:
            self.jobs.run(
                f"backup-{sid[:8]}",
                nodes,
                lambda: self._run_cluster_backup(cluster, started, keys, instances),
            )
        else:
            self.jobs.run(
                f"backup-{sid[:8]}", nodes, lambda: self._run_backup(cluster, started, keys)
            )
        log.info(
            "backup started cluster_id=%s snapshot_id=%s type=%s nodes=%s created_at=%d",
            cluster.cluster_id,
            sid,
            backup_type.name,
            ",".join(nodes),
            started.created_at_ms,
        )
        return started

    def _find_applications(self) -> tuple[AppInstance, ...]:
        """The instances a cluster-wide snapshot pauses, looked up before anything is written."""
        if self._cluster_wide is None:
            raise ApplicationsUnavailableError(
                "cluster-wide snapshots (backup_type 1) need the application instances to "
                "pause: add an [applications] table (srv_name or instances) to the server "
                "config, or take node snapshots (backup_type 2)"
            )
        try:
            return self._cluster_wide.finder.find()
        except ApplicationsError as exc:
            raise ApplicationsUnavailableError(str(exc)) from None

    def _check_live(self, keys: Sequence[HistoryKey]) -> None:
        """Every target must answer CQL now, have joined, and take JMX connections (each is
        asked, all at once); otherwise record FAILED and refuse. Scalar's Cassy asks one
        node's JMX for the ring instead: a nodetool JVM on every request."""
        nodes = [key.target_ip for key in keys]
        reason = None
        try:
            down = unanswering_nodes(nodes, self._nodes.cql, _LIVENESS_TIMEOUT_S)
            for node in nodes:  # nodetool reaches it over JMX: that port must take a call
                if node not in down and not self._jmx_listens(node):
                    down[node] = "its JMX port refuses connections (nodetool cannot reach it)"
            if down:
                reason = "target nodes not live: " + ", ".join(
                    f"{node} ({why})" for node, why in sorted(down.items())
                )
        except Exception as exc:  # any failure to ask means we cannot promise a backup
            reason = f"could not check that the nodes are live: {exc}"
        if reason is not None:
            for key in keys:
                self._metadata.update_backup_status(key, OperationStatus.FAILED, reason)
            raise NodesNotLiveError(reason)

    def _jmx_listens(self, node: str) -> bool:
        endpoint = self._nodes.endpoint(node)
        if endpoint.ssh is not None:
            return True  # its JMX listens on its own host: the node program reaches it
        try:
            return cassandra_running([(endpoint.jmx_host, endpoint.jmx_port)], 5.0)
        except LivenessUnknownError:
            return True  # a slow answer is not a refusal: the node work will find out

    # ------------------------------------------------------------- background
    def _run_backup(
        self, cluster: ClusterRecord, started: StartedBackup, keys: Sequence[HistoryKey]
    ) -> None:
        work = (
            self._work.incremental
            if started.backup_type is BackupType.NODE_INCREMENTAL
            else self._work.snapshot
        )
        self.jobs.each_node(
            keys, lambda key: lambda: work(cluster, started.identity(key.target_ip))
        )
        self._dump_metadata()

    def _run_cluster_backup(
        self,
        cluster: ClusterRecord,
        started: StartedBackup,
        keys: Sequence[HistoryKey],
        instances: Sequence[AppInstance],
    ) -> None:
        """Prepare every node, take the consistent cut, then upload each node's part."""
        assert self._cluster_wide is not None  # start_backup found instances through it
        try:
            if self.jobs.stopping.is_set():
                raise ServerStoppingError(SERVER_STOPPED)
            prepared = self._prepare_nodes(cluster, started.targets)
            cut = take_consistent_cut(
                started.targets,
                instances,
                self._cluster_wide.pauser,
                TagOnNodes(started.snapshot_id, prepared, self._nodes.nodetool),
                self.jobs.pool,
                opened=self._track_window,
                closed=self._untrack_window,
            )
        except Exception as exc:
            reason = reason_of(exc)
            log.warning("backup failed snapshot_id=%s reason=%s", started.snapshot_id, reason)
            for key in keys:
                self._metadata.update_backup_status(key, OperationStatus.FAILED, reason)
            return
        if not cut.succeeded:
            for key in keys:
                self._metadata.update_backup_status(
                    key, OperationStatus.FAILED, cut.failures[key.target_ip]
                )
            return
        self._store_pause_report(started, cut.report)

        def upload(key: HistoryKey) -> Callable[[], str]:
            # Its incremental-backup files stay in place: they belong to the node snapshot
            # that incrementals extend, so a cluster can take all three kinds of backup.
            node = prepared[key.target_ip]
            facts = NodeFacts(str(node.data_dir), node.keyspaces, ())
            return lambda: self._work.run("upload", started.identity(node.address), facts)

        self.jobs.each_node(keys, upload)
        self._dump_metadata()

    def _prepare_nodes(
        self, cluster: ClusterRecord, nodes: Sequence[str]
    ) -> dict[str, PreparedNode]:
        """Before pausing anyone: each node's data dir and keyspaces, old snapshots gone."""

        def prepare(node: str) -> PreparedNode:
            facts = self._work.prepare(cluster, node, clear=True)
            return PreparedNode(node, Path(facts.data_dir), facts.keyspaces)

        futures = {node: self.jobs.pool.submit(prepare, node) for node in nodes}
        wait(futures.values())
        for node, future in futures.items():
            error = future.exception()
            if error is not None:
                raise NodePreparationError(
                    f"could not prepare {node} ({reason_of(error)}); nothing was paused"
                )
        return {node: future.result() for node, future in futures.items()}

    def _track_window(self, window: PauseWindow) -> None:
        with self._lock:
            self._pause_windows.add(window)
        if self.jobs.stopping.is_set():
            window.interrupt(SERVER_STOPPED)

    def _untrack_window(self, window: PauseWindow) -> None:
        with self._lock:
            self._pause_windows.discard(window)

    def interrupt_pauses(self) -> None:
        """At shutdown: applications must not wait out the grace period paused."""
        with self._lock:
            windows = list(self._pause_windows)
        for window in windows:
            window.interrupt(SERVER_STOPPED)

    def _store_pause_report(self, started: StartedBackup, report: PauseReport) -> None:
        """Keep each instance's paused time beside the snapshot (the protocol has no field)."""
        for instance in report.instances:
            log.info(
                "application paused cluster_id=%s snapshot_id=%s instance=%s "
                "paused_seconds=%.3f pause_ack_seconds=%s",
                started.cluster_id,
                started.snapshot_id,
                instance.instance,
                instance.paused_s,
                "-" if instance.pause_ack_s is None else f"{instance.pause_ack_s:.3f}",
            )
        stored = replace(
            report,
            cluster_id=started.cluster_id,
            snapshot_id=started.snapshot_id,
            created_at_ms=started.created_at_ms,
        )
        try:
            key = pause_report_key(started.cluster_id, started.snapshot_id)
            self._storage.put_bytes(key, stored.to_json().encode())
        except Exception:
            log.exception("pause report not stored snapshot_id=%s", started.snapshot_id)

    def _dump_metadata(self) -> None:
        """Keep a copy of the metadata next to the backups, as Cassy does after each request."""
        try:
            when = self._clock.now()
            key = metadata_backup_key(when, self._metadata_file_name)
            self._storage.put_bytes(key, self._metadata.dump_sql().encode())
        except Exception:
            log.exception("metadata dump to storage failed")

    def shutdown(self, grace_s: float) -> None:
        """Stop taking backups, let running ones finish for `grace_s`, then fail the rest."""
        shut_down([self.jobs], self._nodes.executor, grace_s, on_stop=self.interrupt_pauses)
