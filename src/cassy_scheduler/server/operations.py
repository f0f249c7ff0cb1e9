"""A backup across the nodes of a cluster: one task per node, each node's status persisted.

The request is answered as soon as every node's row says STARTED; the work goes on in a
background pool, and each row ends COMPLETED (only once its manifest is stored) or FAILED
with a reason. Nodes never run two operations at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from cassy_scheduler.node.datadir import (
    DataFile,
    backup_files,
    covered_backup_files,
    delete_files,
    snapshot_files,
    snapshot_tags,
)
from cassy_scheduler.node.discovery import CqlAccess, live_keyspaces, node_data_dir
from cassy_scheduler.node.executor import DiscoveryError, NodeEndpoint, NodeExecutor
from cassy_scheduler.node.nodetool import Nodetool
from cassy_scheduler.node.transfer import BackupIdentity, LocalFile, upload_files
from cassy_scheduler.protocol.pause_report import PauseReport, pause_report_key
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.server.apps import AppInstance, ApplicationsError
from cassy_scheduler.server.clustersnapshot import (
    ClusterWideSetup,
    PreparedNode,
    TagOnNodes,
    take_consistent_cut,
)
from cassy_scheduler.server.metadata import ClusterRecord, HistoryKey, MetadataStore
from cassy_scheduler.server.pause import PauseWindow
from cassy_scheduler.server.reservations import NodeReservations, NodesBusyError
from cassy_scheduler.storage import Storage
from cassy_scheduler.storage.layout import backup_prefix, metadata_backup_key

log = logging.getLogger(__name__)

ABANDON_WAIT_S = 5.0
SERVER_STOPPED = "server stopped during the operation"
NODE_LOCAL_KEYSPACE = "system"


class OperationError(Exception):
    """A request the operations layer refuses; the servicer maps the subclass to a status."""


class NodesNotLiveError(OperationError):
    """Some target nodes are not Up/Normal, so the backup was recorded as FAILED."""


class ApplicationsUnavailableError(OperationError):
    """A cluster-wide snapshot cannot start: no application instances are configured or found."""


@dataclass(frozen=True)
class StartedBackup:
    """What TakeBackup replies: the rows it created are STARTED."""

    cluster_id: str
    snapshot_id: str
    targets: tuple[str, ...]
    created_at_ms: int
    backup_type: BackupType


@dataclass(frozen=True)
class NodeAccess:
    """How operations reach nodes: endpoints by address, the executor, CQL access, timeouts."""

    executor: NodeExecutor
    endpoint: Callable[[str], NodeEndpoint]
    cql: CqlAccess = field(default_factory=CqlAccess)
    nodetool_timeout_s: float = 1800.0
    reservations: NodeReservations = field(default_factory=NodeReservations)


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
        clock: Callable[[], float] = time.time,
        cluster_wide: ClusterWideSetup | None = None,
    ) -> None:
        self._metadata = metadata
        self._metadata_file_name = metadata_file_name
        self._storage = storage
        self._nodes = nodes
        self._clock = clock
        self._pool = ThreadPoolExecutor(parallel_nodes, thread_name_prefix="node-work")
        self._lock = threading.Lock()
        self._coordinators: list[threading.Thread] = []
        self._data_dirs: dict[str, Path] = {}
        self._stopping = threading.Event()
        self._abandoned = threading.Event()  # grace is over: running uploads stop too
        self._cluster_wide = cluster_wide
        self._pause_windows: set[PauseWindow] = set()

    # ------------------------------------------------------------------ start
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
        self._reserve(nodes, f"backup of snapshot {sid}")
        try:
            rows = self._metadata.insert_backups(
                cluster_id=cluster.cluster_id,
                target_ips=nodes,
                snapshot_id=sid,
                backup_type=backup_type,
                created_at=int(self._clock() * 1000),
            )
            keys = [row.key for row in rows]
            created_at = rows[0].created_at
            self._check_live(keys, nodes)
            for key in keys:
                self._metadata.update_backup_status(key, OperationStatus.STARTED)
        except BaseException:
            self._release(nodes)
            raise
        started = StartedBackup(cluster.cluster_id, sid, nodes, created_at, backup_type)
        run = partial(self._run_cluster_backup, instances=instances)
        worker = threading.Thread(
            target=run if instances else self._run_backup,
            args=(cluster, started, keys),
            name=f"backup-{sid[:8]}",
            daemon=True,
        )
        with self._lock:
            self._coordinators = [t for t in self._coordinators if t.is_alive()]
            self._coordinators.append(worker)
        worker.start()
        log.info(
            "backup started cluster_id=%s snapshot_id=%s type=%s nodes=%s created_at=%d",
            cluster.cluster_id,
            sid,
            backup_type.name,
            ",".join(nodes),
            created_at,
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

    def _reserve(self, nodes: Iterable[str], what: str) -> None:
        if self._stopping.is_set():
            raise NodesBusyError("the server is shutting down; try again once it is back")
        self._nodes.reservations.reserve(nodes, what)

    def _release(self, nodes: Iterable[str]) -> None:
        self._nodes.reservations.release(nodes)

    def _check_live(self, keys: Sequence[HistoryKey], nodes: Sequence[str]) -> None:
        """Every target must be UN as its peers see it; otherwise record FAILED and refuse."""
        reason = None
        try:
            ring = {row.address: row for row in self._nodetool(nodes[0]).status()}
            down = [
                f"{n} ({ring[n].code})" if n in ring else f"{n} (not in ring)"
                for n in nodes
                if n not in ring or not ring[n].is_up_normal
            ]
            if down:
                reason = "target nodes not live: " + ", ".join(down)
        except Exception as exc:  # any failure to ask means we cannot promise a backup
            reason = f"could not check that the nodes are live through {nodes[0]}: {exc}"
        if reason is not None:
            for key in keys:
                self._metadata.update_backup_status(key, OperationStatus.FAILED, reason)
            raise NodesNotLiveError(reason)

    # ------------------------------------------------------------- background
    def _run_backup(
        self, cluster: ClusterRecord, started: StartedBackup, keys: Sequence[HistoryKey]
    ) -> None:
        try:
            futures = [self._pool.submit(self._backup_node, cluster, started, key) for key in keys]
            wait(futures)
            self._dump_metadata()
        finally:
            self._release(started.targets)

    def _backup_node(self, cluster: ClusterRecord, started: StartedBackup, key: HistoryKey) -> None:
        if started.backup_type is BackupType.NODE_INCREMENTAL:
            self._finish_node(key, lambda: self._incremental(cluster, started, key.target_ip))
        else:
            self._finish_node(key, lambda: self._snapshot(cluster, started, key.target_ip))

    def _run_cluster_backup(
        self,
        cluster: ClusterRecord,
        started: StartedBackup,
        keys: Sequence[HistoryKey],
        *,
        instances: Sequence[AppInstance],
    ) -> None:
        """Prepare every node, take the consistent cut, then upload each node's part."""
        assert self._cluster_wide is not None  # start_backup found instances through it
        try:
            if self._stopping.is_set():
                raise RuntimeError(SERVER_STOPPED)
            prepared = self._prepare_nodes(cluster, started.targets)
            cut = take_consistent_cut(
                started.targets,
                instances,
                self._cluster_wide.pauser,
                TagOnNodes(started.snapshot_id, prepared, self._nodetool),
                self._pool,
                opened=self._track_window,
                closed=self._untrack_window,
            )
        except Exception as exc:
            self._fail_all(keys, reason_of(exc))
            self._release(started.targets)
            return
        try:
            if not cut.succeeded:
                for key in keys:
                    self._metadata.update_backup_status(
                        key, OperationStatus.FAILED, cut.failures[key.target_ip]
                    )
                return
            self._store_pause_report(started, cut.report)
            futures = [
                self._pool.submit(
                    self._finish_node,
                    key,
                    partial(self._upload_cut, cluster, started, prepared[key.target_ip]),
                )
                for key in keys
            ]
            wait(futures)
            self._dump_metadata()
        finally:
            self._release(started.targets)

    def _prepare_nodes(
        self, cluster: ClusterRecord, nodes: Sequence[str]
    ) -> dict[str, PreparedNode]:
        """Before pausing anyone: each node's data dir and keyspaces, old snapshots gone."""

        def prepare(node: str) -> PreparedNode:
            data_dir = self._data_dir(node)
            keyspaces = tuple(self._present_keyspaces(cluster, data_dir, node))
            self._clear_earlier_snapshots(node, data_dir, keyspaces)
            return PreparedNode(node, data_dir, keyspaces)

        futures = {node: self._pool.submit(prepare, node) for node in nodes}
        wait(futures.values())
        for node, future in futures.items():
            error = future.exception()
            if error is not None:
                raise RuntimeError(
                    f"could not prepare {node} ({reason_of(error)}); nothing was paused"
                )
        return {node: future.result() for node, future in futures.items()}

    def _track_window(self, window: PauseWindow) -> None:
        with self._lock:
            self._pause_windows.add(window)
        if self._stopping.is_set():
            window.interrupt(SERVER_STOPPED)

    def _untrack_window(self, window: PauseWindow) -> None:
        with self._lock:
            self._pause_windows.discard(window)

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

    def _finish_node(self, key: HistoryKey, work: Callable[[], str]) -> None:
        """Run one node's remaining work and record its outcome."""
        try:
            if self._stopping.is_set():
                raise RuntimeError(SERVER_STOPPED)
            summary = work()
        except Exception as exc:
            reason = reason_of(exc)
            log.warning(
                "node backup failed cluster_id=%s node=%s snapshot_id=%s reason=%s",
                key.cluster_id,
                key.target_ip,
                key.snapshot_id,
                reason,
            )
            self._metadata.update_backup_status(key, OperationStatus.FAILED, reason)
            return
        self._metadata.update_backup_status(key, OperationStatus.COMPLETED)
        log.info(
            "node backup completed cluster_id=%s node=%s snapshot_id=%s %s",
            key.cluster_id,
            key.target_ip,
            key.snapshot_id,
            summary,
        )

    def _upload_cut(
        self, cluster: ClusterRecord, started: StartedBackup, node: PreparedNode
    ) -> str:
        """Upload one node's part of a cut.

        Its incremental-backup files are left in place: they belong to the node snapshot
        that incrementals extend, so a cluster can take all three kinds of backup.
        """
        taken = snapshot_files(node.data_dir, started.snapshot_id, node.keyspaces)
        return self._upload(cluster, started, node.address, taken)

    def _fail_all(self, keys: Sequence[HistoryKey], reason: str) -> None:
        log.warning("backup failed snapshot_id=%s reason=%s", keys[0].snapshot_id, reason)
        for key in keys:
            self._metadata.update_backup_status(key, OperationStatus.FAILED, reason)

    def _snapshot(self, cluster: ClusterRecord, started: StartedBackup, node: str) -> str:
        nodetool = self._nodetool(node)
        data_dir = self._data_dir(node)
        keyspaces = self._present_keyspaces(cluster, data_dir, node)
        before = backup_files(data_dir, keyspaces)
        self._clear_earlier_snapshots(node, data_dir, keyspaces)
        nodetool.snapshot(started.snapshot_id, keyspaces)
        taken = snapshot_files(data_dir, started.snapshot_id, keyspaces)
        summary = self._upload(cluster, started, node, taken)
        covered = covered_backup_files(before, backup_files(data_dir, keyspaces), taken)
        delete_files(covered)
        return f"{summary} incremental_files_cleared={len(covered)}"

    def _clear_earlier_snapshots(self, node: str, data_dir: Path, keyspaces: Sequence[str]) -> None:
        """Remove the snapshots this server took earlier on the node (uploaded, they only hold
        disk space), under any registration of its cluster; snapshots anyone else took, an
        operator's `pre-upgrade` one included, stay. (Scalar's Cassy clears every one.)"""
        nodetool = self._nodetool(node)
        for tag in sorted(snapshot_tags(data_dir, keyspaces)):
            ours = any(
                row.target_ip == node for row in self._metadata.list_backups(snapshot_id=tag)
            )
            if ours:
                nodetool.clear_snapshot(tag)
            else:
                log.info("snapshot kept, not taken by this server node=%s tag=%s", node, tag)

    def _incremental(self, cluster: ClusterRecord, started: StartedBackup, node: str) -> str:
        nodetool = self._nodetool(node)
        data_dir = self._data_dir(node)
        # The node-local `system` keyspace is Cassandra's own bookkeeping, rewritten all the
        # time (sstable activity, compaction history); the snapshot carries what a restore
        # needs from it (host id, tokens), so incrementals leave it out.
        keyspaces = [
            ks
            for ks in self._present_keyspaces(cluster, data_dir, node)
            if ks != NODE_LOCAL_KEYSPACE
        ]
        nodetool.flush(keyspaces)
        return self._upload(cluster, started, node, backup_files(data_dir, keyspaces))

    def _upload(
        self, cluster: ClusterRecord, started: StartedBackup, node: str, files: Sequence[DataFile]
    ) -> str:
        prefix = backup_prefix(started.backup_type, cluster.cluster_id, started.snapshot_id, node)
        identity = BackupIdentity(
            cluster_id=cluster.cluster_id,
            snapshot_id=started.snapshot_id,
            node_ip=node,
            backup_type=started.backup_type,
            created_at_ms=started.created_at_ms,
        )
        result = upload_files(
            self._storage,
            prefix,
            [LocalFile(f.path, f.relative) for f in files],
            identity,
            cancelled=self._abandoned.is_set,
        )
        return (
            f"files_sent={result.files_sent} bytes_sent={result.bytes_sent} "
            f"files_skipped={result.files_skipped} manifest={result.manifest_key}"
        )

    def _present_keyspaces(self, cluster: ClusterRecord, data_dir: Path, node: str) -> list[str]:
        """Registered keyspaces that still exist on the node; a dropped one is only logged."""
        try:
            schema = live_keyspaces(node, self._nodes.cql, 30.0)
        except DiscoveryError as exc:  # the directories alone still tell most of it
            log.warning("schema not readable, using directories node=%s reason=%s", node, exc)
            schema = set(cluster.keyspaces)
        present = [ks for ks in cluster.keyspaces if ks in schema and (data_dir / ks).is_dir()]
        missing = sorted(set(cluster.keyspaces) - set(present))
        if missing:
            log.warning("registered keyspaces absent node=%s keyspaces=%s", node, ",".join(missing))
        if not present:
            raise RuntimeError(
                f"none of the registered keyspaces exists under {data_dir}: "
                "register the cluster again"
            )
        return present

    def _nodetool(self, node: str) -> Nodetool:
        return Nodetool(
            self._nodes.executor, self._nodes.endpoint(node), self._nodes.nodetool_timeout_s
        )

    def _data_dir(self, node: str) -> Path:
        configured = self._nodes.endpoint(node).data_dir
        if configured is not None:
            return configured
        with self._lock:
            known = self._data_dirs.get(node)
        if known is None:
            known = node_data_dir(node, self._nodes.cql, 30.0)
            with self._lock:
                self._data_dirs[node] = known
        return known

    def _dump_metadata(self) -> None:
        """Keep a copy of the metadata next to the backups, as Cassy does after each request."""
        try:
            when = datetime.fromtimestamp(self._clock(), UTC)
            key = metadata_backup_key(when, self._metadata_file_name)
            self._storage.put_bytes(key, self._metadata.dump_sql().encode())
        except Exception:
            log.exception("metadata dump to storage failed")

    # --------------------------------------------------------------- shutdown
    def shutdown(self, grace_s: float) -> None:
        """Stop taking work, let running work finish for `grace_s`, then record the rest FAILED.

        After the grace, running nodetool calls are killed and uploads stop before their next
        file, so the rows are failed by the work itself (with its reason) where it can still
        answer within `ABANDON_WAIT_S`; whatever is left is failed here.
        """
        self._stopping.set()
        with self._lock:
            windows = list(self._pause_windows)
        for window in windows:  # applications must not wait out the grace period
            window.interrupt(SERVER_STOPPED)
        with self._lock:
            coordinators = list(self._coordinators)
        _join_all(coordinators, grace_s)
        if any(thread.is_alive() for thread in coordinators):
            self._abandoned.set()
            stopped = self._nodes.executor.stop_running()
            log.warning("grace period over: stopping running work nodetool_calls=%d", stopped)
            _join_all(coordinators, ABANDON_WAIT_S)
        self._pool.shutdown(wait=False, cancel_futures=True)
        failed = self._metadata.fail_unfinished(SERVER_STOPPED)
        if failed:
            log.warning("operations left unfinished at shutdown marked FAILED rows=%d", failed)
        # Calls made outside backups too (discovery, liveness checks of requests cut off).
        self._nodes.executor.stop_running()


def _join_all(threads: Sequence[threading.Thread], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def reason_of(error: BaseException | None) -> str:
    """The first line of an error, short enough for a history row, with the operating
    system's cause first ("No space left on device: writing ..."), since a reason is cut
    short on its way to people and a key or a path can fill what is left."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else repr(error)
    cause = _os_cause(error)
    if cause and cause not in line[: len(cause) + 20]:  # "[Errno 28] No space ..." is fine
        line = f"{cause}: {line}"
    return line[:500]


def _os_cause(error: BaseException | None) -> str | None:
    """The strerror of the first OSError behind `error`, if any."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.strerror:
            return str(error.strerror)
        error = error.__cause__ or error.__context__
        seen += 1
    return None
