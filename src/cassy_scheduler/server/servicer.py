"""rpc.Cassy handlers: messages in, plain values to the operations, Cassy's messages out.

Nothing is decided here: the operations and request checks refuse with typed errors, and
`STATUS_OF` gives each kind of error its gRPC status, as the client's `_error_class` maps
statuses back. A refusal's message says what is wrong and what to send instead.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn, Protocol, TypeVar

import grpc

from cassy_scheduler.node.discovery import ClusterFacts
from cassy_scheduler.node.executor import DiscoveryError
from cassy_scheduler.protocol.generated import cassy_pb2, cassy_pb2_grpc
from cassy_scheduler.protocol.reasons import REASONS_KEY, encode_reasons
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.server.backup import BackupOperations
from cassy_scheduler.server.errors import (
    HostNotAllowedError,
    InvalidRequestError,
    NodesBusyError,
    NodesNotLiveError,
    NotOfferedError,
    OperationError,
    PreconditionError,
)
from cassy_scheduler.server.requests import BackupAsk, RestoreAsk, checked_host
from cassy_scheduler.server.restore import RestoreOperations
from cassy_scheduler.server.rows import (
    BackupInUseError,
    BackupRecord,
    InvalidQueryError,
    MetadataStore,
    RestoreRecord,
)

log = logging.getLogger(__name__)

#: The gRPC status of each kind of refusal (the most specific class listed wins).
STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidQueryError: grpc.StatusCode.INVALID_ARGUMENT,
    BackupInUseError: grpc.StatusCode.FAILED_PRECONDITION,
    PreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    NodesBusyError: grpc.StatusCode.ABORTED,
    NodesNotLiveError: grpc.StatusCode.UNAVAILABLE,
    DiscoveryError: grpc.StatusCode.UNAVAILABLE,
    HostNotAllowedError: grpc.StatusCode.PERMISSION_DENIED,
    NotOfferedError: grpc.StatusCode.UNIMPLEMENTED,
}
_REFUSALS: tuple[type[Exception], ...] = (*STATUS_OF, OperationError)


def status_of(error: Exception) -> grpc.StatusCode:
    """The status for `error`: its nearest class in STATUS_OF, else INTERNAL."""
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return grpc.StatusCode.INTERNAL


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    log.info("request refused code=%s message=%s", code.name, message)
    context.abort(code, message)
    raise AssertionError("context.abort returns only by raising")  # pragma: no cover


@contextmanager
def answered(context: grpc.ServicerContext) -> Iterator[None]:
    """Refusals raised by the work below become the caller's status and message."""
    try:
        yield
    except _REFUSALS as exc:
        _abort(context, status_of(exc), str(exc))


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise InvalidRequestError(f"limit must be 0 (no limit) or positive, got {limit}")


_Row = TypeVar("_Row")


class _HistoryQuery(Protocol):
    cluster_id: str
    target_ip: str
    snapshot_id: str
    limit: int


def _history_rows(lister: Callable[..., list[_Row]], request: _HistoryQuery) -> list[_Row]:
    """Backup or restore history with Cassy's filter rules; a query without one is refused."""
    _check_limit(request.limit)
    return lister(
        cluster_id=request.cluster_id or None,
        target_ip=request.target_ip or None,
        snapshot_id=request.snapshot_id or None,
        limit=request.limit,
    )


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


def wire_status(status: OperationStatus) -> cassy_pb2.OperationStatus.ValueType:
    return cassy_pb2.OperationStatus.Value(status.name)


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
        with answered(context):
            facts = self._discover(checked_host(request.cassandra_host))
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
        with answered(context):
            _check_limit(request.limit)
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
        ask = BackupAsk(
            request.cluster_id,
            request.backup_type,
            request.snapshot_id,
            tuple(request.target_ips),
        )
        with answered(context):
            started = self._operations.backup(ask)
        return cassy_pb2.BackupResponse(
            status=wire_status(OperationStatus.STARTED),
            cluster_id=started.cluster_id,
            target_ips=started.targets,
            snapshot_id=started.snapshot_id,
            created_at=started.created_at_ms,
            backup_type=int(started.backup_type),
        )

    def ListBackups(
        self, request: cassy_pb2.BackupListingRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.BackupListingResponse:
        with answered(context):
            rows = _history_rows(self._metadata.list_backups, request)
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
                    status=wire_status(r.status),
                )
                for r in rows
            ]
        )

    # ------------------------------------------------------------- restores
    def RestoreBackup(
        self, request: cassy_pb2.RestoreRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.RestoreResponse:
        ask = RestoreAsk(
            request.cluster_id,
            request.snapshot_id,
            request.restore_type,
            tuple(request.target_ips),
            request.snapshot_only,
        )
        with answered(context):
            if self._restores is None:
                raise NotOfferedError("this server does not restore")
            started = self._restores.restore(ask)
        return cassy_pb2.RestoreResponse(
            status=wire_status(OperationStatus.STARTED),
            cluster_id=started.cluster_id,
            target_ips=started.targets,
            snapshot_id=started.snapshot_id,
            restore_type=int(started.restore_type),
            snapshot_only=started.snapshot_only,
        )

    def ListRestoreStatuses(
        self, request: cassy_pb2.RestoreStatusListingRequest, context: grpc.ServicerContext
    ) -> cassy_pb2.RestoreStatusListingResponse:
        with answered(context):
            rows = _history_rows(self._metadata.list_restores, request)
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
                    status=wire_status(r.status),
                )
                for r in rows
            ],
        )
