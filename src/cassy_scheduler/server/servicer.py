"""rpc.Cassy handlers: validate each request, answer with Cassy's statuses, hand work on.

Every invalid request is refused with a gRPC status and a message that says what is wrong and
what to send instead, before anything is written.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from typing import NoReturn, Protocol, TypeVar

import grpc

from cassy_scheduler.node.datadir import is_plain_id
from cassy_scheduler.node.discovery import ClusterFacts
from cassy_scheduler.node.executor import DiscoveryError, NodeUnavailable
from cassy_scheduler.protocol.echo import echo, echo_list
from cassy_scheduler.protocol.generated import cassy_pb2, cassy_pb2_grpc
from cassy_scheduler.protocol.reasons import REASONS_KEY, encode_reasons
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from cassy_scheduler.server.metadata import (
    BackupRecord,
    ClusterRecord,
    InvalidQueryError,
    MetadataStore,
    RestoreRecord,
)
from cassy_scheduler.server.operations import (
    ApplicationsUnavailableError,
    BackupOperations,
    NodesNotLiveError,
)
from cassy_scheduler.server.reservations import NodesBusyError
from cassy_scheduler.server.restore import NodesNotRestorableError, RestoreOperations

log = logging.getLogger(__name__)

_TYPE_NAMES = ", ".join(f"{t.value} ({t.name})" for t in BackupType)
_RESTORE_TYPE_NAMES = ", ".join(f"{t.value} ({t.name})" for t in RestoreType)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    log.info("request refused code=%s message=%s", code.name, message)
    context.abort(code, message)
    raise AssertionError("context.abort returns only by raising")  # pragma: no cover


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$", re.ASCII)
_MAX_HOST_NAME = 253


def is_host(text: str) -> bool:
    """An IP address or a DNS name (labels of letters, digits, '-' and '_'): nothing a CQL
    driver or a resolver would choke on, and nothing that reads as a path."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return True
    name = text.removesuffix(".")
    return 0 < len(name) <= _MAX_HOST_NAME and all(
        _HOST_LABEL.fullmatch(label) for label in name.split(".")
    )


def _check_limit(limit: int, context: grpc.ServicerContext) -> None:
    if limit < 0:
        _abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"limit must be 0 (no limit) or positive, got {limit}",
        )


_Row = TypeVar("_Row")


class _HistoryQuery(Protocol):
    cluster_id: str
    target_ip: str
    snapshot_id: str
    limit: int


def _history_rows(
    lister: Callable[..., list[_Row]], request: _HistoryQuery, context: grpc.ServicerContext
) -> list[_Row]:
    """Backup or restore history with Cassy's filter rules; a query without one is refused."""
    _check_limit(request.limit, context)
    try:
        return lister(
            cluster_id=request.cluster_id or None,
            target_ip=request.target_ip or None,
            snapshot_id=request.snapshot_id or None,
            limit=request.limit,
        )
    except InvalidQueryError as exc:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def _send_reasons(
    rows: Sequence[BackupRecord | RestoreRecord], context: grpc.ServicerContext
) -> None:
    """Why the listed rows FAILED, beside the answer (see protocol/reasons)."""
    reasons = encode_reasons(
        ((r.target_ip, r.snapshot_id, r.created_at), r.reason)
        for r in rows
        if r.status is OperationStatus.FAILED and r.reason
    )
    if reasons is not None:
        context.set_trailing_metadata(((REASONS_KEY, reasons),))


class CassyServicer(cassy_pb2_grpc.CassyServicer):
    """The built-in server's rpc.Cassy."""

    def __init__(
        self,
        metadata: MetadataStore,
        operations: BackupOperations,
        discover: Callable[[str], ClusterFacts],
        *,
        restores: RestoreOperations | None = None,
    ) -> None:
        self._metadata = metadata
        self._operations = operations
        self._discover = discover
        self._restores = restores

    # ------------------------------------------------------------- clusters
    def RegisterCluster(
        self, request: cassy_pb2.ClusterRegistrationRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.ClusterRegistrationResponse:
        host = request.cassandra_host.strip()
        if not host:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "cassandra_host must be specified: the address of any node of the cluster",
            )
        if not is_host(host):
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"cassandra_host {echo(host)} is not a host name or an IP address: give the "
                "address of any node of the cluster, e.g. 10.0.0.1 or cassandra-1.example.com",
            )
        try:
            facts = self._discover(host)
        except NodeUnavailable as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        except DiscoveryError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        record = self._metadata.add_cluster(
            cluster_id=f"{facts.cluster_name}-{uuid.uuid4()}",
            cluster_name=facts.cluster_name,
            target_ips=facts.nodes,
            keyspaces=facts.keyspaces,
            data_dir=facts.data_dir,
        )
        log.info(
            "cluster registered cluster_id=%s nodes=%s",
            record.cluster_id,
            ",".join(record.target_ips),
        )
        return cassy_pb2.ClusterRegistrationResponse(
            cluster_id=record.cluster_id,
            cluster_name=record.cluster_name,
            target_ips=record.target_ips,
            keyspaces=record.keyspaces,
            data_dir=record.data_dir,
        )

    def ListClusters(
        self, request: cassy_pb2.ClusterListingRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.ClusterListingResponse:
        _check_limit(request.limit, context)
        records = self._metadata.list_clusters(request.cluster_id or None, request.limit)
        return cassy_pb2.ClusterListingResponse(
            entries=[
                cassy_pb2.ClusterListingResponse.Entry(
                    cluster_id=r.cluster_id,
                    cluster_name=r.cluster_name,
                    target_ips=r.target_ips,
                    keyspaces=r.keyspaces,
                    data_dir=r.data_dir,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                )
                for r in records
            ]
        )

    # -------------------------------------------------------------- backups
    def TakeBackup(
        self, request: cassy_pb2.BackupRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.BackupResponse:
        cluster, backup_type, snapshot_id, targets = self._valid_backup(request, context)
        try:
            started = self._operations.start_backup(cluster, backup_type, snapshot_id, targets)
        except NodesBusyError as exc:
            _abort(context, grpc.StatusCode.ABORTED, str(exc))
        except NodesNotLiveError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        except ApplicationsUnavailableError as exc:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return cassy_pb2.BackupResponse(
            status=cassy_pb2.OperationStatus.Value(OperationStatus.STARTED.name),
            cluster_id=started.cluster_id,
            target_ips=started.targets,
            snapshot_id=started.snapshot_id,
            created_at=started.created_at_ms,
            backup_type=int(started.backup_type),
        )

    def _valid_backup(
        self, request: cassy_pb2.BackupRequest, context: grpc.ServicerContext
    ) -> tuple[ClusterRecord, BackupType, str | None, tuple[str, ...]]:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if not request.cluster_id:
            _abort(context, invalid, "cluster_id must be specified (ListClusters shows the ids)")
        try:
            backup_type = BackupType(request.backup_type)
        except ValueError:
            _abort(
                context, invalid, f"unknown backup_type {request.backup_type}: use {_TYPE_NAMES}"
            )
        snapshot_id = request.snapshot_id
        if backup_type is BackupType.NODE_INCREMENTAL and not snapshot_id:
            _abort(
                context, invalid, "snapshot_id must be specified when taking incremental backups"
            )
        if backup_type.is_snapshot and snapshot_id:
            _abort(
                context,
                invalid,
                "snapshot_id must not be specified when taking snapshots: "
                "each snapshot gets a new id, returned in the reply",
            )
        if snapshot_id and not is_plain_id(snapshot_id):
            _abort(
                context,
                invalid,
                f"snapshot_id {echo(snapshot_id)} is not a plain id: use the id "
                "a snapshot reply returned (letters, digits, '-', '_', '.')",
            )
        cluster = self._metadata.get_cluster(request.cluster_id)
        if cluster is None:
            _abort(
                context,
                invalid,
                f"no cluster {echo(request.cluster_id)} is registered: "
                "register it with RegisterCluster, or pick an id from ListClusters",
            )
        targets = tuple(dict.fromkeys(request.target_ips))
        strangers = [ip for ip in targets if ip not in cluster.target_ips]
        if strangers:
            _abort(
                context,
                invalid,
                f"target_ips {echo_list(strangers)} are not nodes of "
                f"{cluster.cluster_id} ({', '.join(cluster.target_ips)})",
            )
        if backup_type is BackupType.CLUSTER_SNAPSHOT and set(targets) not in (
            set(),
            set(cluster.target_ips),
        ):
            _abort(
                context,
                invalid,
                "a cluster-wide snapshot (backup_type 1) covers every node: leave target_ips "
                "empty, or take node snapshots (backup_type 2) of some nodes",
            )
        if backup_type is BackupType.NODE_INCREMENTAL:
            self._check_base_snapshot(cluster, snapshot_id, targets, context)
        return cluster, backup_type, snapshot_id or None, targets

    def _check_base_snapshot(
        self,
        cluster: ClusterRecord,
        snapshot_id: str,
        targets: tuple[str, ...],
        context: grpc.ServicerContext,
    ) -> None:
        """An incremental extends a snapshot that exists for that cluster."""
        rows = self._metadata.list_backups(snapshot_id=snapshot_id)
        snapshots = [
            r for r in rows if r.cluster_id == cluster.cluster_id and r.backup_type.is_snapshot
        ]
        if not snapshots:
            _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"cluster {cluster.cluster_id} has no snapshot {snapshot_id}: take a node "
                "snapshot first and extend the id it returns",
            )

    def ListBackups(
        self, request: cassy_pb2.BackupListingRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.BackupListingResponse:
        rows = _history_rows(self._metadata.list_backups, request, context)
        _send_reasons(rows, context)
        return cassy_pb2.BackupListingResponse(
            entries=[
                cassy_pb2.BackupListingResponse.Entry(
                    cluster_id=r.cluster_id,
                    target_ip=r.target_ip,
                    snapshot_id=r.snapshot_id,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                    backup_type=int(r.backup_type),
                    status=cassy_pb2.OperationStatus.Value(r.status.name),
                )
                for r in rows
            ]
        )

    # ------------------------------------------------------------- restores
    def RestoreBackup(
        self, request: cassy_pb2.RestoreRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.RestoreResponse:
        if self._restores is None:
            _abort(context, grpc.StatusCode.UNIMPLEMENTED, "this server does not restore")
        cluster, snapshot_type, targets = self._valid_restore(request, context)
        try:
            started = self._restores.start_restore(
                cluster,
                request.snapshot_id,
                targets,
                snapshot_only=request.snapshot_only,
                snapshot_type=snapshot_type,
                restore_type=RestoreType(request.restore_type),
            )
        except NodesBusyError as exc:
            _abort(context, grpc.StatusCode.ABORTED, str(exc))
        except NodesNotRestorableError as exc:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return cassy_pb2.RestoreResponse(
            status=cassy_pb2.OperationStatus.Value(OperationStatus.STARTED.name),
            cluster_id=started.cluster_id,
            target_ips=started.targets,
            snapshot_id=started.snapshot_id,
            restore_type=int(started.restore_type),
            snapshot_only=started.snapshot_only,
        )

    def _valid_restore(
        self, request: cassy_pb2.RestoreRequest, context: grpc.ServicerContext
    ) -> tuple[ClusterRecord, BackupType, tuple[str, ...]]:
        """The cluster, the snapshot's backup type and the targets; refusals as Cassy's."""
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if not request.cluster_id:
            _abort(context, invalid, "cluster_id must be specified (ListClusters shows the ids)")
        try:
            restore_type = RestoreType(request.restore_type)
        except ValueError:
            _abort(
                context,
                invalid,
                f"unknown restore_type {request.restore_type}: use {_RESTORE_TYPE_NAMES}",
            )
        sid = request.snapshot_id
        if not sid or not is_plain_id(sid):
            _abort(
                context,
                invalid,
                f"snapshot_id {echo(sid)} is not a snapshot id: give the id a snapshot reply or "
                "ListBackups returned",
            )
        cluster = self._metadata.get_cluster(request.cluster_id)
        if cluster is None:
            _abort(
                context,
                invalid,
                f"no cluster {echo(request.cluster_id)} is registered: pick an id from "
                "ListClusters",
            )
        targets = tuple(dict.fromkeys(request.target_ips))
        strangers = [ip for ip in targets if ip not in cluster.target_ips]
        if strangers:
            _abort(
                context,
                invalid,
                f"target_ips {echo_list(strangers)} are not nodes of "
                f"{cluster.cluster_id} ({', '.join(cluster.target_ips)})",
            )
        rows = [
            r
            for r in self._metadata.list_backups(snapshot_id=sid)
            if r.cluster_id == cluster.cluster_id
        ]
        if not rows:
            _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"cluster {cluster.cluster_id} has no backup {sid}: pick a snapshot id "
                "from ListBackups",
            )
        snapshot_type = rows[-1].backup_type  # the oldest row is the snapshot's own
        if restore_type is RestoreType.CLUSTER:
            if snapshot_type is not BackupType.CLUSTER_SNAPSHOT:
                _abort(
                    context,
                    invalid,
                    f"snapshot {sid} is a node-level backup, not a cluster-wide backup: "
                    "restore it node by node (restore_type 2)",
                )
            if set(targets) not in (set(), set(cluster.target_ips)):
                _abort(
                    context,
                    invalid,
                    "a cluster restore (restore_type 1) restores every node: leave target_ips "
                    "empty, or restore some nodes with restore_type 2",
                )
        done = {
            r.target_ip
            for r in rows
            if r.backup_type.is_snapshot and r.status is OperationStatus.COMPLETED
        }
        lacking = [ip for ip in targets or cluster.target_ips if ip not in done]
        if lacking:
            _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"snapshot {sid} did not complete on {', '.join(lacking)}: restore the other "
                "nodes (target_ips) or pick another snapshot",
            )
        return cluster, snapshot_type, targets

    def ListRestoreStatuses(
        self, request: cassy_pb2.RestoreStatusListingRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.RestoreStatusListingResponse:
        rows = _history_rows(self._metadata.list_restores, request, context)
        _send_reasons(rows, context)
        return cassy_pb2.RestoreStatusListingResponse(
            cluster_id=request.cluster_id or (rows[0].cluster_id if rows else ""),
            entries=[
                cassy_pb2.RestoreStatusListingResponse.Entry(
                    target_ip=r.target_ip,
                    snapshot_id=r.snapshot_id,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                    restore_type=int(r.restore_type),
                    status=cassy_pb2.OperationStatus.Value(r.status.name),
                )
                for r in rows
            ],
        )
